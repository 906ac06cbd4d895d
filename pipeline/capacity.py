"""How many build workers fit where the build runs, and why none starts.

A worker takes one CPU and `--worker-memory` of a Ray node. Ray places an actor only where both are free,
and an actor that fits nowhere waits for ever without a word, so the driver sizes its pool from what the
nodes hold, refuses at once a cluster where no node can hold even one worker, and can say what a worker
waits for (pipeline/runner.py).

On one machine `os.cpu_count()` counts the host's CPUs, not those this process may use: a container
limited to 2 CPUs of a 64-CPU host would start 64 workers that share 2 CPUs. So an embedded Ray is sized
from the CPU affinity and the cgroup CPU quota.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.recovery import WorkerError

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
GIB = 2**30


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process may use: its affinity mask, lowered to its cgroup's CPU quota (rounded down,
    at least 1)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    return max(1, min(cpus, math.floor(quota))) if quota is not None else cpus


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The smallest CPU quota (in CPUs) on the way from this process's cgroup up to the root, in cgroup v2
    (cpu.max) or v1 (cpu.cfs_quota_us / cpu.cfs_period_us); None when nothing limits it.

    A container sees its own cgroup as the root of the mount while /proc/self/cgroup may name the host's
    path, so every ancestor that exists under `cgroup_root` is read, the root included."""
    quotas = []
    for folder in _cgroup_folders(cgroup_root, proc_cgroup):
        quota = _quota_v2(folder / "cpu.max") if (folder / "cpu.max").exists() else _quota_v1(folder)
        if quota is not None:
            quotas.append(quota)
    return min(quotas, default=None)


def _cgroup_folders(cgroup_root: Path, proc_cgroup: Path) -> list[Path]:
    """Folders that may hold this process's CPU limits: its cgroup (v2, or v1's cpu controller) and
    every ancestor, under the v2 root and the v1 cpu mounts."""
    paths: list[tuple[Path, str]] = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            paths.append((cgroup_root, path))
        elif "cpu" in controllers.split(","):
            paths += [(cgroup_root / mount, path) for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu")]
    if not paths:  # no /proc/self/cgroup: the mounts' roots still say what limits everything under them
        paths = [(cgroup_root, "/"), (cgroup_root / "cpu", "/"), (cgroup_root / "cpu,cpuacct", "/")]
    folders = []
    for mount, path in paths:
        parts = Path(path.strip()).relative_to("/").parts if path.strip().startswith("/") else ()
        for depth in range(len(parts), -1, -1):
            folder = mount.joinpath(*parts[:depth])
            if folder.is_dir() and folder not in folders:
                folders.append(folder)
    return folders


def _quota_v2(path: Path) -> float | None:
    """cpu.max holds "QUOTA PERIOD" or "max PERIOD"."""
    fields = path.read_text().split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return int(fields[0]) / int(fields[1])


def _quota_v1(folder: Path) -> float | None:
    """cpu.cfs_quota_us is -1 when unlimited."""
    quota_file, period_file = folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us"
    if not quota_file.exists() or not period_file.exists():
        return None
    quota, period = int(quota_file.read_text()), int(period_file.read_text())
    return quota / period if quota > 0 and period > 0 else None


@dataclass(frozen=True)
class Node:
    """A live Ray node as tasks see it: what Ray lets its actors take, in all."""

    name: str  # "IP (host, node id prefix)"
    cpus: float
    memory: float  # bytes

    def holds(self, worker_bytes: int) -> int:
        """How many workers of `worker_bytes` fit on this node when nothing else runs on it."""
        return max(0, min(int(self.cpus), int(self.memory // worker_bytes)))


def live_nodes(nodes: Sequence[Mapping[str, Any]]) -> list[Node]:
    """The live nodes of `ray.nodes()`."""
    return [
        Node(
            f"{node['NodeManagerAddress']} ({node.get('NodeManagerHostname', '?')}, node {node['NodeID'][:8]})",
            float(node["Resources"].get("CPU", 0)),
            float(node["Resources"].get("memory", 0)),
        )
        for node in nodes
        if node.get("Alive")
    ]


def pool_size(nodes: Sequence[Node], worker_bytes: int) -> int:
    """Workers the cluster holds at once: per node the smaller of its CPUs and its memory in workers."""
    return sum(node.holds(worker_bytes) for node in nodes)


def refuse_unplaceable(nodes: Sequence[Node], worker_bytes: int) -> None:
    """Raises WorkerError when no live node can hold even one worker: it would wait for ever."""
    if any(node.holds(worker_bytes) for node in nodes):
        return
    listed = "; ".join(f"{n.name}: {n.cpus:g} CPUs, {n.memory / GIB:.2f} GiB" for n in nodes[:8]) or "no live node"
    raise WorkerError(
        f"each build worker needs 1 CPU and {worker_bytes / GIB:.2f} GiB of memory (--worker-memory) on one Ray "
        f"node, and no node has both for tasks ({listed}), so no worker would ever start: lower --worker-memory, "
        "or add a larger node"
    )


def why_unplaced(nodes: Sequence[Node], available: Mapping[str, float], worker_bytes: int) -> str:
    """What a worker that does not start waits for, from the nodes and `ray.available_resources()`."""
    largest = max(nodes, key=lambda n: n.memory, default=None)
    total_cpus = sum(n.cpus for n in nodes)
    total_memory = sum(n.memory for n in nodes)
    return (
        f"each needs 1 CPU and {worker_bytes / GIB:.2f} GiB of memory; the cluster has "
        f"{available.get('CPU', 0):g} of {total_cpus:g} CPUs and {available.get('memory', 0) / GIB:.2f} of "
        f"{total_memory / GIB:.2f} GiB free"
        + (f", its largest node {largest.memory / GIB:.2f} GiB in all" if largest else "")
        + " (other jobs, or workers still loading their models, hold the rest)"
    )
