"""Every reader of a build on a bucket over HTTP: the sample build, uploaded object for object as a bucket build
writes it, gives the training loader, validation, the held-out check, `rp-data report` and `rp-data inspect`
what the same build gives them from a local folder; a URL that holds no build is named in the error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from s3kit import S3Endpoint

from pipeline.cli import main
from pipeline.report import write_report
from pipeline.split import SAMPLE_SPLIT
from training.config import ConfigError, DataConfig, StageConfig, ValidationConfig
from training.data import open_loader, read_index
from training.heldout import plan_heldout
from training.validation import load_clips

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bucket_build(s3: S3Endpoint, build_dir: Path) -> str:
    """s3://<new bucket>/run holding the session's sample build, every file under the same name."""
    import s3fs

    url = f"{s3.bucket()}/run"
    s3fs.S3FileSystem(skip_instance_cache=True).put(f"{build_dir}/", url, recursive=True)
    return url


def batches(build: str | Path, workers: int, count: int) -> list[dict]:
    """The first `count` batches of an image-mode loader with the sample split held out, seed 0."""
    data = DataConfig(build_dir=build, heldout_split=SAMPLE_SPLIT, num_workers=workers, shuffle_buffer=8)
    stage = StageConfig(name="s", mode="image", steps=1, global_batch=2, resolution=64)
    loader = open_loader(data, stage, micro_batch=2, seed=[0], pin_memory=False)
    found = []
    for batch in loader:
        found.append(batch)
        if len(found) == count:
            return found
    raise AssertionError(f"the loader of {build} ended after {len(found)} batches")


def test_a_build_folder_setting_keeps_a_url_and_refuses_an_unknown_protocol() -> None:
    assert DataConfig(build_dir="s3://bucket/run/").build_dir == "s3://bucket/run"  # not s3:/bucket/run
    assert ValidationConfig(build_dir="s3://bucket/val").build_dir == "s3://bucket/val"
    assert DataConfig(build_dir="runs/x").build_dir == Path("runs/x")
    with pytest.raises(ValueError, match=r"nosuch://bucket/run: fsspec cannot open nosuch:// URLs"):
        DataConfig(build_dir="nosuch://bucket/run")


def test_the_loader_reads_the_same_batches_from_the_bucket(build_dir: Path, bucket_build: str) -> None:
    remote = read_index(bucket_build)
    local = read_index(build_dir)
    assert [(e.dataset, e.clips, e.images, e.keys) for e in remote] == [
        (e.dataset, e.clips, e.images, e.keys) for e in local
    ]
    assert [str(e.path) for e in remote] == [f"{bucket_build}/shards/{Path(e.path).name}" for e in local]
    # the bucket's tars are streamed in a DataLoader worker process, through fsspec; the same seed, the same draw
    for mine, theirs in zip(batches(bucket_build, 1, 3), batches(build_dir, 0, 3), strict=True):
        assert mine["keys"] == theirs["keys"] and mine["skipped"] == theirs["skipped"]
        assert torch.equal(mine["frames"], theirs["frames"]) and torch.equal(mine["reference"], theirs["reference"])
    remote_plan = plan_heldout(DataConfig(build_dir=bucket_build, heldout_split=SAMPLE_SPLIT))
    local_plan = plan_heldout(DataConfig(build_dir=build_dir, heldout_split=SAMPLE_SPLIT))
    assert remote_plan is not None and local_plan is not None
    assert remote_plan.leaks == local_plan.leaks and remote_plan.leaks
    assert f"the build {bucket_build} holds" in remote_plan.describe()


def test_validation_clips_come_from_the_bucket(build_dir: Path, bucket_build: str) -> None:
    settings = ValidationConfig(pairs=2, frames=2, num_steps=1)
    remote = load_clips(bucket_build, settings, frames=2, stride=1, resolution=32)
    local = load_clips(build_dir, settings, frames=2, stride=1, resolution=32)
    assert [clip.key for clip in remote] == [clip.key for clip in local] and len(remote) == 2
    for mine, theirs in zip(remote, local, strict=True):
        assert np.array_equal(mine.driving, theirs.driving) and mine.fps == theirs.fps


def test_the_report_of_the_bucket_is_the_local_builds(build_dir: Path, bucket_build: str, tmp_path: Path) -> None:
    """`rp-data report s3://...` as a user runs it: the page goes to ./run-report/ (the bucket is no local
    folder), and only the build's name differs from the local build's page; the pictures are the same bytes."""
    command = [sys.executable, "-m", "pipeline.cli", "report", bucket_build, "--samples", "4"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    remote = tmp_path / "run-report"
    local = write_report(build_dir, tmp_path / "local" / "index.html", samples=4).parent
    assert "report: run-report/index.html" in " ".join(result.stdout.split())
    remote_page = (remote / "index.html").read_text()
    local_page = (local / "index.html").read_text()
    assert "<title>build report: run</title>" in remote_page and f"<h1>Build report: {bucket_build}</h1>" in remote_page
    named = local_page.replace(f"report: {build_dir.name}</title>", "report: run</title>")
    assert remote_page == named.replace(f"report: {build_dir}</h1>", f"report: {bucket_build}</h1>")
    assert "4 of " in remote_page  # the contact sheet's samples, drawn from the bucket's tars
    pictures = sorted(path.name for path in local.glob("*.png"))
    assert pictures == sorted(path.name for path in remote.glob("*.png")) and "contact_sheet.png" in pictures
    for name in pictures:
        assert (remote / name).read_bytes() == (local / name).read_bytes(), name


def test_inspect_lists_and_checks_the_bucket(
    build_dir: Path, bucket_build: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(build_dir)]) == 0
    local = capsys.readouterr().out
    assert main(["inspect", bucket_build]) == 0
    remote = capsys.readouterr().out
    assert remote.startswith(f"{bucket_build}: ") and remote.replace(bucket_build, str(build_dir)) == local
    first = read_index(build_dir)[0].path
    assert main(["inspect", f"{bucket_build}/shards/{first.name}", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{bucket_build}/shards/{first.name}: 2 sample(s) read" in out and "OK: all 2 sample(s)" in out


def test_a_url_without_a_build_is_named(s3: S3Endpoint, capsys: pytest.CaptureFixture[str]) -> None:
    empty = s3.bucket()
    with pytest.raises(ConfigError, match=rf"data.build_dir {empty}: no committed shards \({empty}/shards/"):
        read_index(empty)
    assert main(["inspect", empty]) == 2
    assert f"{empty} is not a build folder: it has no shards/" in " ".join(capsys.readouterr().out.split())
    absent = f"{empty}-absent"  # no such bucket
    assert main(["report", absent]) == 2
    assert f"no build directory at {absent}" in " ".join(capsys.readouterr().out.split())
