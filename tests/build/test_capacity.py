"""How many workers fit (pipeline/capacity.py), on cgroup files written here and on Ray itself: a worker
larger than every node is refused at once, and one that cannot be placed because its resources are taken
is waited for with the reason on the progress line, then stops the build (pipeline/runner.py)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from buildkit import RAY_NO_AUTH, RP_DATA

from pipeline.capacity import GIB, Node, cgroup_cpu_quota, pool_size, refuse_unplaceable, usable_cpus
from pipeline.config import BuildConfig
from pipeline.recovery import WorkerError

AFFINITY = len(os.sched_getaffinity(0))


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_cgroup_v2_quota_on_the_process_cgroup_or_an_ancestor_limits_the_cpus(tmp_path: Path) -> None:
    proc = _write(tmp_path, {"proc_cgroup": "0::/job/step\n"}) / "proc_cgroup"
    root = tmp_path / "cgroup"
    _write(root, {"cpu.max": "max 100000\n", "job/cpu.max": "250000 100000\n", "job/step/cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root, proc) == 2.5
    assert usable_cpus(root, proc) == min(AFFINITY, 2)
    _write(root, {"job/step/cpu.max": "50000 100000\n"})  # half a CPU still runs one worker
    assert cgroup_cpu_quota(root, proc) == 0.5 and usable_cpus(root, proc) == 1
    _write(root, {"job/cpu.max": "max 100000\n", "job/step/cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(root, proc) is None and usable_cpus(root, proc) == AFFINITY


def test_a_cgroup_v1_quota_is_read_from_the_cpu_controller_and_minus_one_is_no_limit(tmp_path: Path) -> None:
    proc = _write(tmp_path, {"proc_cgroup": "5:memory:/x\n3:cpu,cpuacct:/docker/abc\n0::/\n"}) / "proc_cgroup"
    root = tmp_path / "cgroup"
    _write(root, {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_quota(root, proc) is None
    # a container sees its own cgroup as the mount's root, though /proc names the host's path
    _write(root, {"cpu,cpuacct/cpu.cfs_quota_us": "100000\n"})
    assert cgroup_cpu_quota(root, proc) == 1.0 and usable_cpus(root, proc) == 1
    _write(root, {"memory/x/cpu.cfs_quota_us": "50000\n", "memory/x/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_quota(root, proc) == 1.0  # another controller's folder is not the CPU's
    assert cgroup_cpu_quota(tmp_path / "absent", tmp_path / "no_proc_file") is None


def test_the_pool_is_per_node_the_smaller_of_cpus_and_memory_in_workers() -> None:
    nodes = [Node("a", 8, 6 * GIB), Node("b", 2, 64 * GIB), Node("c", 0, 64 * GIB)]
    assert pool_size(nodes, int(1.5 * GIB)) == 4 + 2  # a: memory holds 4 of 8 CPUs; b: 2 CPUs; c: no CPU
    refuse_unplaceable(nodes, 32 * GIB)  # b holds one
    with pytest.raises(WorkerError, match=r"needs 1 CPU and 100\.00 GiB.*a: 8 CPUs, 6\.00 GiB.*lower --worker-memory"):
        refuse_unplaceable(nodes, 100 * GIB)


def test_a_worker_larger_than_every_node_is_refused_at_once(sample_root: Path, tmp_path: Path) -> None:
    began = time.perf_counter()
    command = ["build", "--source", f"ffhq={sample_root / 'ffhq'}", "--out", str(tmp_path / "out")]
    result = subprocess.run(
        [str(RP_DATA), *command, "--worker-memory", "100000", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | RAY_NO_AUTH,
    )
    output = " ".join((result.stdout + result.stderr).split())  # the console wraps long lines
    assert result.returncode == 1, output
    assert "needs 1 CPU and 100000.00 GiB of memory (--worker-memory)" in output
    assert re.search(r"no node has both for tasks \(\S+ \(\S+, node [0-9a-f]{8}\): 1 CPUs, [\d.]+ GiB\)", output)
    assert "Traceback" not in output
    assert time.perf_counter() - began < 120  # refused, not waited for
    assert not list((tmp_path / "out" / "shards").glob("*.stats.json"))


def test_a_worker_whose_resources_are_taken_is_explained_then_stops_the_build(tmp_path: Path) -> None:
    """The driver shares an embedded Ray of 1 CPU with a placement group that reserves it, so the build's
    worker is never placed."""
    import ray

    from pipeline.runner import Runner, WorkShard

    ray.init(num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        ray.get(ray.util.placement_group([{"CPU": 1}]).ready())  # another job's reservation of the CPU
        cfg = BuildConfig()
        runner = Runner(cfg, "fp", tmp_path / "out", 1, inputs={}, placement_timeout_s=3.0)
        shard = WorkShard(work="ffhq-00000", dataset="ffhq", root=str(tmp_path), defaults={}, items=[])
        lines: list[str] = []
        began = time.perf_counter()
        with pytest.raises(WorkerError) as stopped:
            runner.run([shard], lambda progress: lines.append(progress.line()))
        assert 2.5 < time.perf_counter() - began < 30
        said = [line for line in lines if "no worker started for" in line]
        assert said and "each needs 1 CPU and 1.50 GiB of memory; the cluster has 0 of 1 CPUs" in said[0]
        assert "--placement-timeout 3 s" in str(stopped.value) and "each needs 1 CPU" in str(stopped.value)
        runner.close()
    finally:
        ray.shutdown()
