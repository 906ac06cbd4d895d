"""A worker node that stalls and comes back, on a real multi-node Ray cluster: its work shard is sent again
while the first worker still exists, and the stale worker, resumed, must not change what the build
commits (pipeline/shards.py: only the driver publishes, and only the current dispatch)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from buildkit import RAY_NO_AUTH, RP_DATA, local_cluster, samples

from pipeline.recovery import MARKER_SUFFIX
from pipeline.runner import ITEM_DELAY_ENV

# the GCS declares a silent node dead after about 3 s (Ray's default is about 30 s)
FAST_HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def _vfhq_build(sample_root: Path, out: Path, config: str, *args: str) -> list[str]:
    return [
        str(RP_DATA), "build", "--source", f"vfhq={sample_root / 'vfhq'}", "--out", str(out), "--config", config,
        "--set", "videos_per_shard=1", *args,
    ]  # fmt: skip


def _markers(shard_dir: Path) -> list[dict[str, object]]:
    found = []
    for marker in shard_dir.glob(f".*{MARKER_SUFFIX}"):
        try:
            found.append(json.loads(marker.read_text()))
        except (OSError, ValueError):  # deleted or renamed meanwhile
            continue
    return found


def _wait(build: subprocess.Popen[bytes], log: Path, what: str, until) -> object:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert build.poll() is None, f"the build ended before {what}: " + log.read_text()[-2000:]
        if found := until():
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
def test_a_stalled_node_that_comes_back_changes_nothing(
    sample_root: Path, sample_config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = tmp_path / "reference"
    done = subprocess.run(
        _vfhq_build(sample_root, reference, sample_config, "--workers", "2"),
        capture_output=True,
        text=True,
        env=os.environ | RAY_NO_AUTH,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    for name, value in FAST_HEALTH_CHECKS.items():
        monkeypatch.setenv(name, value)
    out, log = tmp_path / "out", tmp_path / "build.log"
    shard_dir = out / "shards"
    # the first node's workers linger 20 s at the start of each item, so the node is stopped mid-item for sure
    slow = {0: {ITEM_DELAY_ENV: "20"}}
    with local_cluster(tmp_path, head_cpus=0, node_cpus=(1, 2), node_env=slow) as cluster, log.open("w") as stream:
        build = subprocess.Popen(
            _vfhq_build(sample_root, out, sample_config, "--ray-address", cluster.address),
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=os.environ | RAY_NO_AUTH,
        )
        try:
            stalled = cluster.nodes[0]

            def at_an_item_on_the_stalled_node() -> dict[str, object] | None:
                pids = {p.pid for p in psutil.Process(stalled.pid).children(recursive=True)}
                return next((m for m in _markers(shard_dir) if m["item_id"] and m["pid"] in pids), None)

            first = _wait(build, log, "a worker of the first node reached an item", at_an_item_on_the_stalled_node)
            os.killpg(stalled.pid, signal.SIGSTOP)  # the node stalls mid-item: raylet, object store, workers

            def sent_again() -> bool:
                return any(m["work"] == first["work"] and m["token"] != first["token"] for m in _markers(shard_dir))

            _wait(build, log, f"{first['work']} was sent again", sent_again)
            os.killpg(stalled.pid, signal.SIGCONT)  # ... and comes back while the new dispatch builds the shard
            assert build.wait(timeout=600) == 0, log.read_text()[-3000:]
        finally:
            if build.poll() is None:
                build.kill()
                build.wait()
    text = log.read_text()
    assert "3 work shard(s) built" in text and "1 worker(s) lost, 1 work shard(s) retried" in text
    expected, built = samples(reference), samples(out)
    assert len(expected) >= 2 and sorted(built) == sorted(expected)
    assert all(built[key] == expected[key] for key in expected)
    listed = {t for s in shard_dir.glob("*.stats.json") for t in json.loads(s.read_text())["tars"]}
    assert {p.name for p in shard_dir.glob("*.tar")} == listed  # nothing the stale worker wrote became final
