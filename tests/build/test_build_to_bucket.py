"""`rp-data build --out s3://...` through the real S3 client stack, against the endpoint on 127.0.0.1: a build
killed mid-run resumes in the bucket to the very objects and samples of an undisturbed local build, and a
bucket another build holds is refused."""

from __future__ import annotations

import json
import os
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
def test_the_sample_built_into_a_bucket_killed_and_resumed_is_the_local_build(
    s3: S3Endpoint, build_dir: Path, tmp_path: Path
) -> None:
    """`rp-data build --sample --out s3://...`, SIGKILLed once some work shards are committed, then rerun: the
    bucket ends with exactly the objects and samples of the undisturbed local build of the sample."""
    url = f"{s3.bucket()}/runs/sample"
    args = ["build", "--sample", "--sample-dir", str(tmp_path / "sample"), "--out", url, "--workers", "2"]
    process = subprocess.Popen([str(RP_DATA), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = lambda: [name for name in _objects(url) if name.endswith(".stats.json")]  # noqa: E731
    deadline = time.monotonic() + 300
    while len(committed()) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, "the build ended before it could be killed"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 2 <= len(committed()) < 8, committed()  # killed part-way
    refused = subprocess.run([str(RP_DATA), *args], capture_output=True, text=True)
    assert refused.returncode == 2 and "--force-unlock" in refused.stdout  # the killed driver left its lock
    result = rp_data(*args, "--force-unlock")
    assert f"manifest: {url}/manifest.parquet" in result.stdout
    objects, local = _objects(url), _files(build_dir)
    assert sorted(objects) == sorted(local)  # no staged object, marker or lock is left
    tars = [name for name in objects if name.endswith(".tar")]
    assert tars and all(objects[name] == local[name] for name in tars)
    fetched = samples(_download(url, tmp_path / "fetched"))
    assert fetched == samples(build_dir)  # the same samples, byte for byte
    record = json.loads((tmp_path / "fetched" / "build.json").read_text())
    assert record["fingerprint"] == json.loads((build_dir / "build.json").read_text())["fingerprint"]


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
