"""`rp-data build` end to end, run as users run it (the CLI in a subprocess, real Ray, real shards)."""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from buildkit import RP_DATA, local_cluster, rp_data, samples
from PIL import Image

from pipeline.sample import PLANTED

# what the build must say of each planted item: (manifest kind, status, reason)
EXPECTED = {
    "missing file referenced by train_list.txt": ("source", "failed", "missing_media"),
    "missing file referenced by the JSON": ("source", "failed", "missing_media"),
    "malformed annotation line": ("annotation", "failed", "malformed_line"),
    "image with two faces": ("source", "ok", None),  # its wild box names the subject (test_labelled_faces.py)
    "truncated mp4": ("source", "failed", "decode_error"),
    "clip with no face": ("source", "filtered", "no_face"),
    "zero-byte file": ("source", "failed", "empty_file"),
}


def _npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def test_shards_read_back_with_webdataset(sample_build: tuple[Path, str]) -> None:
    out, stdout = sample_build
    assert "build summary" in stdout and "8 work shard(s) built" in stdout
    found = samples(out)
    kinds = {"clip": 0, "image": 0}
    for key, sample in found.items():
        meta = json.loads(sample["json"])
        assert meta["key"] == key
        landmarks, pose, bbox = (_npy(sample[m]) for m in ("landmarks.npy", "pose.npy", "bbox.npy"))
        if meta["kind"] == "clip":
            with av.open(io.BytesIO(sample["mp4"])) as container:
                frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
            assert {f.shape for f in frames} == {(512, 512, 3)}
            count = len(frames)
            assert count == meta["frames"] >= 16
        else:
            image = Image.open(io.BytesIO(sample["jpg"]))
            assert image.size[0] == image.size[1] >= 512
            count = 1
        assert landmarks.shape == (count, 478, 2) and landmarks.dtype == np.float16
        assert pose.shape == (count, 6) and bbox.shape == (count, 4)
        assert np.isfinite(pose[:, :3]).mean() > 0.8 and np.isfinite(bbox).mean() > 0.8
        kinds[meta["kind"]] += 1
    assert kinds["clip"] >= 30 and kinds["image"] >= 15
    manifest = pd.read_parquet(out / "manifest.parquet")
    ok = manifest[(manifest.kind == "sample") & (manifest.status == "ok")]
    assert sorted(ok.key) == sorted(found)


def test_every_planted_item_has_its_status_and_reason(sample_build: tuple[Path, str]) -> None:
    out, _ = sample_build
    manifest = pd.read_parquet(out / "manifest.parquet")
    for planted in PLANTED:
        kind, status, reason = EXPECTED[planted.what]
        rows = manifest[(manifest.dataset == planted.dataset) & (manifest.kind == kind)]
        if kind == "annotation":
            rows = rows[rows.item_id.str.startswith(f"{planted.dataset}/{planted.path}:")]
        else:
            scanned = pd.read_parquet(out / "sources" / "sample.parquet")
            item_id = scanned[(scanned.dataset == planted.dataset) & (scanned.media_path == planted.path)].item_id
            rows = rows[rows.item_id.isin(item_id)]
        assert len(rows) == 1, planted
        found = rows.reason.iloc[0]
        assert (rows.status.iloc[0], None if pd.isna(found) else found) == (status, reason), planted
    sources = pd.read_parquet(out / "sources" / "sample.parquet")
    assert set(manifest[manifest.kind == "source"].item_id) == set(sources.item_id)  # nothing dropped


def test_a_second_run_is_a_no_op(sample_build: tuple[Path, str]) -> None:
    out, _ = sample_build
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "shards").iterdir()}
    result = rp_data("build", "--sample", "--sample-dir", str(out.parent / "sample"), "--out", str(out))
    assert "0 work shard(s) built, 8 already done" in result.stdout
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "shards").iterdir()}
    assert after == before


def test_another_config_is_refused(sample_build: tuple[Path, str]) -> None:
    out, _ = sample_build
    result = subprocess.run(
        [
            str(RP_DATA),
            "build",
            "--sample",
            "--sample-dir",
            str(out.parent / "sample"),
            "--out",
            str(out),
            "--set",
            "crf=30",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "fingerprint" in result.stdout and "Traceback" not in result.stderr


def test_retry_failed_touches_only_failed_items(sample_root: Path, tmp_path: Path, sample_config: str) -> None:
    ffhq = tmp_path / "ffhq"
    shutil.copytree(sample_root / "ffhq", ffhq)
    out = tmp_path / "out"
    rp_data("build", "--source", f"ffhq={ffhq}", "--out", str(out), "--workers", "1", "--config", sample_config)
    first = pd.read_parquet(out / "manifest.parquet").set_index(["item_id", "kind"])
    assert first.loc[("ffhq/00002", "source")].status == "failed"
    tar = out / "shards" / "ffhq-00000-00.tar"
    before = tar.read_bytes()
    # the missing image is downloaded at last
    shutil.copy(ffhq / "images1024x1024/00000/00001.png", ffhq / "images1024x1024/00000/00002.png")
    result = rp_data(
        "build",
        "--source",
        f"ffhq={ffhq}",
        "--out",
        str(out),
        "--workers",
        "1",
        "--config",
        sample_config,
        "--retry-failed",
    )
    assert "1 work shard(s) built" in result.stdout
    assert tar.read_bytes() == before
    retry = json.loads((out / "shards" / "ffhq-00000-r1.stats.json").read_text())
    assert retry["samples"] == 1 and retry["status_counts"] == {"sample:ok": 1, "source:ok": 1}
    second = pd.read_parquet(out / "manifest.parquet").set_index(["item_id", "kind"])
    assert second.loc[("ffhq/00002", "source")].status == "ok" and second.loc[("ffhq/00002", "source")].attempt == 1
    unchanged = first.drop(index="ffhq/00002", level=0).sort_index()
    pd.testing.assert_frame_equal(second.drop(index="ffhq/00002", level=0).sort_index(), unchanged, check_dtype=False)


@pytest.mark.slow
def test_a_killed_build_resumes_to_the_same_samples(sample_root: Path, tmp_path: Path, sample_config: str) -> None:
    mead = tmp_path / "mead"
    shutil.copytree(sample_root / "mead", mead)
    args = ["--source", f"mead={mead}", "--workers", "2", "--set", "videos_per_shard=2", "--config", sample_config]
    rp_data("build", *args, "--out", str(tmp_path / "whole"))
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [str(RP_DATA), "build", *args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while len(list((killed / "shards").glob("*.stats.json"))) < 3 and time.monotonic() < deadline:
        assert process.poll() is None, "the build ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list((killed / "shards").glob("*.stats.json")))
    assert 3 <= done < 12, done  # killed part-way
    rp_data("build", *args, "--out", str(killed), "--force-unlock")  # the killed driver left its lock
    whole, resumed = samples(tmp_path / "whole"), samples(killed)
    assert len(whole) == 22 and sorted(resumed) == sorted(whole)
    assert all(resumed[key] == whole[key] for key in whole)
    assert len(list((killed / "shards").glob("*.stats.json"))) == 12


@pytest.mark.slow
def test_a_build_joins_an_existing_ray_cluster(sample_root: Path, tmp_path: Path, sample_config: str) -> None:
    with local_cluster(tmp_path, head_cpus=2) as cluster:
        out = tmp_path / "out"
        rp_data(
            "build",
            "--source",
            f"vfhq={sample_root / 'vfhq'}",
            "--out",
            str(out),
            "--workers",
            "2",
            "--ray-address",
            cluster.address,
            "--config",
            sample_config,
        )
        manifest = pd.read_parquet(out / "manifest.parquet")
        assert (manifest[manifest.kind == "source"].status == "ok").sum() == 3
        # the work ran in that cluster: its workers' logs are in the head's session folder
        sessions = [p for p in cluster.temp_dir.glob("session_*") if p.is_dir() and not p.is_symlink()]
        assert len(sessions) == 1 and list(sessions[0].glob("logs/worker-*"))


def test_the_evaluation_split_stays_out_of_training_shards(
    sample_root: Path, tmp_path: Path, sample_config: str
) -> None:
    split = Path(__file__).resolve().parents[2] / "manifests" / "splits" / "sample.json"
    held = json.loads(split.read_text())["clips"]
    out = tmp_path / "out"
    rp_data(
        "build",
        "--source",
        f"vfhq={sample_root / 'vfhq'}",
        "--source",
        f"celebvhq={sample_root / 'celebvhq'}",
        "--out",
        str(out),
        "--workers",
        "2",
        "--exclude-split",
        str(split),
        "--config",
        sample_config,
    )
    manifest = pd.read_parquet(out / "manifest.parquet")
    excluded = manifest[manifest.reason == "excluded_split"]
    held_ids = {clip["youtube_id"] for clip in held}
    sources = pd.concat([pd.read_parquet(out / "sources" / f"{name}.parquet") for name in ("vfhq", "celebvhq")])
    assert set(excluded.item_id) == set(sources[sources.youtube_id.isin(held_ids)].item_id)
    kept = samples(out)
    assert kept and all(json.loads(s["json"])["youtube_id"] not in held_ids for s in kept.values())
    assert json.loads((out / "build.json").read_text())["excluded_split"] == str(split)
