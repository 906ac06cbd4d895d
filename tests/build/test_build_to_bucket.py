"""`rp-data build --out s3://...` through the real S3 client stack, against the endpoint on 127.0.0.1: the
bucket gets the very objects a local build writes, a build killed mid-run resumes in the bucket to the
samples of an undisturbed build, and a bucket another build holds is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import s3fs
from buildkit import RP_DATA, rp_data, samples
from s3kit import S3Endpoint


def _objects(url: str) -> dict[str, int]:
    """Every object under the build URL (relative name -> size)."""
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    root = url.removeprefix("s3://")
    return {path[len(root) + 1 :]: info["size"] for path, info in fs.find(root, detail=True).items()}


def _download(url: str, to: Path) -> Path:
    s3fs.S3FileSystem(skip_instance_cache=True).get(url.removeprefix("s3://") + "/", str(to), recursive=True)
    return to


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_the_sample_built_into_a_bucket_is_the_local_build(s3: S3Endpoint, build_dir: Path, tmp_path: Path) -> None:
    url = f"{s3.bucket()}/runs/sample"
    result = rp_data("build", "--sample", "--sample-dir", str(tmp_path / "sample"), "--out", url, "--workers", "2")
    assert f"manifest: {url}/manifest.parquet" in result.stdout
    objects = _objects(url)
    local = _files(build_dir)
    assert sorted(objects) == sorted(local)  # no staged object, marker or lock is left
    tars = [name for name in objects if name.endswith(".tar")]
    assert tars and all(objects[name] == local[name] for name in tars)
    fetched = samples(_download(url, tmp_path / "fetched"))
    assert fetched == samples(build_dir)  # the same samples, byte for byte
    record = json.loads((tmp_path / "fetched" / "build.json").read_text())
    assert record["fingerprint"] == json.loads((build_dir / "build.json").read_text())["fingerprint"]


@pytest.mark.slow
def test_a_build_killed_mid_run_resumes_in_the_bucket(
    s3: S3Endpoint, sample_root: Path, tmp_path: Path, sample_config: str
) -> None:
    mead = tmp_path / "mead"
    shutil.copytree(sample_root / "mead", mead)
    args = ["--source", f"mead={mead}", "--workers", "2", "--set", "videos_per_shard=2", "--config", sample_config]
    rp_data("build", *args, "--out", str(tmp_path / "whole"))
    url = f"{s3.bucket()}/killed"
    process = subprocess.Popen(
        [str(RP_DATA), "build", *args, "--out", url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    committed = lambda: [name for name in _objects(url) if name.endswith(".stats.json")]  # noqa: E731
    deadline = time.monotonic() + 300
    while len(committed()) < 3 and time.monotonic() < deadline:
        assert process.poll() is None, "the build ended before it could be killed"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 3 <= len(committed()) < 12, committed()  # killed part-way
    refused = subprocess.run([str(RP_DATA), "build", *args, "--out", url], capture_output=True, text=True)
    assert refused.returncode == 2 and "--force-unlock" in refused.stdout  # the killed driver left its lock
    rp_data("build", *args, "--out", url, "--force-unlock")
    whole, resumed = samples(tmp_path / "whole"), samples(_download(url, tmp_path / "resumed"))
    assert len(whole) == 22 and sorted(resumed) == sorted(whole)
    assert all(resumed[key] == whole[key] for key in whole)
    assert sorted(_objects(url)) == sorted(_files(tmp_path / "whole"))


def test_a_bucket_another_build_holds_is_refused(s3: S3Endpoint, sample_root: Path, tmp_path: Path) -> None:
    url = f"{s3.bucket()}/held"
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "started": "2026-12-07T10:00:00+00:00"}
    fs.pipe_file(url.removeprefix("s3://") + "/build.lock", json.dumps(holder).encode())
    refused = subprocess.run(
        [str(RP_DATA), "build", "--source", f"ffhq={sample_root / 'ffhq'}", "--out", url],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    message = " ".join(refused.stdout.split())
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message and f"{url}/build.lock" in message
    assert sorted(_objects(url)) == ["build.lock"]  # nothing else was written
