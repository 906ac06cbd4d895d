"""Storage that fails under `rp-data build` (a full disk), on real Ray: the CLI in a subprocess, and a disk
that is full for one work shard's writes (the runner's RP_TEST_DISK_FULL hook raises a real ENOSPC
OSError where the tar is written), once and then always, and in an S3 bucket."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import s3fs
from buildkit import RAY_NO_AUTH, RP_DATA, rp_data, samples
from s3kit import S3Endpoint

from pipeline.runner import DISK_FULL_ENV

FAULTY = "ffhq-00001"  # the second of four one-image work shards; it holds one sample


def _ffhq_build(
    ffhq: Path, out: Path | str, config: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    command = ["build", "--source", f"ffhq={ffhq}", "--out", str(out), "--workers", "2", "--config", config]
    return subprocess.run(
        [str(RP_DATA), *command, "--set", "images_per_shard=1"],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ | RAY_NO_AUTH | (env or {}),
    )


@pytest.fixture(scope="module")
def ffhq(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ffhq") / "ffhq"
    shutil.copytree(sample_root / "ffhq", folder)
    return folder


@pytest.fixture(scope="module")
def undisturbed(ffhq: Path, sample_config: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("undisturbed") / "out"
    result = _ffhq_build(ffhq, out, sample_config)
    assert result.returncode == 0, result.stdout[-3000:]
    return out


def test_a_disk_full_once_is_retried_and_the_samples_are_unchanged(
    ffhq: Path, sample_config: str, undisturbed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _ffhq_build(ffhq, out, sample_config, {DISK_FULL_ENV: f"{FAULTY}:1"})
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 work shard(s) built" in result.stdout and "1 work shard(s) retried, 1 storage fault(s)" in result.stdout
    built, expected = samples(out), samples(undisturbed)
    assert len(expected) == 3 and sorted(built) == sorted(expected)
    assert all(built[key] == expected[key] for key in expected)
    assert not [p.name for p in (out / "shards").iterdir() if p.name.startswith(".")]  # no temporary, no marker


def test_a_disk_that_stays_full_stops_the_build_and_a_rerun_resumes(
    ffhq: Path, sample_config: str, undisturbed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _ffhq_build(ffhq, out, sample_config, {DISK_FULL_ENV: FAULTY})
    assert result.returncode == 1, result.stdout[-3000:]
    message = " ".join(result.stdout.split("error: ", 1)[1].split())
    assert message.startswith(f"work shard {FAULTY} could not be stored on any of its 3 attempt(s)")
    assert "ENOSPC (No space left on device)" in message and "rerun the same command" in message
    assert f"at {out / 'shards' / ('.' + FAULTY)}-00.tar." in message  # the temporary being written
    assert "Traceback" not in result.stdout + result.stderr
    shards = out / "shards"
    assert not (shards / f"{FAULTY}.stats.json").exists() and not list(shards.glob(f".{FAULTY}-00.tar.*"))
    kept = {p.name: p.read_bytes() for p in shards.glob("*.stats.json")}
    rerun = rp_data(
        "build", "--source", f"ffhq={ffhq}", "--out", str(out), "--workers", "2", "--config", sample_config,
        "--set", "images_per_shard=1",
    )  # fmt: skip
    assert f"{len(kept)} already done" in rerun.stdout
    assert all((shards / name).read_bytes() == data for name, data in kept.items())  # committed shards kept
    built, expected = samples(out), samples(undisturbed)
    assert sorted(built) == sorted(expected) and all(built[key] == expected[key] for key in expected)


def test_a_failed_attempt_in_a_bucket_leaves_no_object_and_is_retried(
    ffhq: Path, sample_config: str, undisturbed: Path, tmp_path: Path, s3: S3Endpoint
) -> None:
    """The same fault with --out in an S3 bucket: the failed attempt's staged objects (its tar upload, its
    marker) are deleted, the retry commits, and the bucket ends as the local build."""
    url = f"{s3.bucket()}/out"
    result = _ffhq_build(ffhq, url, sample_config, {DISK_FULL_ENV: f"{FAULTY}:2"})
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 storage fault(s)" in result.stdout
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    root = url.removeprefix("s3://")
    objects = sorted(path[len(root) + 1 :] for path in fs.find(root))
    local = sorted(str(p.relative_to(undisturbed)) for p in undisturbed.rglob("*") if p.is_file())
    assert objects == local  # nothing staged is left
    fs.get(root + "/", str(tmp_path / "fetched"), recursive=True)
    built, expected = samples(tmp_path / "fetched"), samples(undisturbed)
    assert sorted(built) == sorted(expected) and all(built[key] == expected[key] for key in expected)
