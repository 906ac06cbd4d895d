"""Where the metric networks run, in what precision, and on how many CPU threads.

Why it works this way:
- The published metrics were computed in fp32, so the metric networks run in fp32 unless `--dtype` asks
  otherwise (our generator's default on CUDA, bf16, is not theirs); on CUDA, fp32 also means no TF32,
  which cuDNN would otherwise use for convolutions and which moves the last digits of LPIPS and FID.
- The device and dtype are passed down as a `model.precision.Precision`; no code calls `.cuda()`, so the
  same path runs (and is tested) on the CPU.
- torch and onnxruntime default to one thread per core of the machine. A process pinned to fewer cores
  (taskset, a scheduler's cpuset) or given a cgroup CPU quota then runs more threads than it may use and
  they wait on each other; one thread per allowed core uses what the process has and no more.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from model.precision import DTYPES, Precision

CPU = Precision(torch.device("cpu"), torch.float32)
CGROUP_ROOT = Path("/sys/fs/cgroup")


def metric_precision(device: str | None, dtype: str | None) -> Precision:
    """`--device` and `--dtype` for the metric networks: the generator's device rule, fp32 unless asked."""
    return Precision.resolve(device, dtype if dtype is not None else "fp32")


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, membership: str | None = None) -> int | None:
    """The CPUs a cgroup v2 `cpu.max` quota allows this process (the tightest along its cgroup's path up
    to the root), rounded down and at least 1; None without a quota or without cgroup v2.

    `membership` is the text of /proc/self/cgroup (read when None): its `0::/path` line names the cgroup.
    """
    if membership is None:
        try:
            membership = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    path = next((line[3:].strip() for line in membership.splitlines() if line.startswith("0::")), None)
    if path is None:
        return None
    folder = root / path.lstrip("/")
    limits = []
    for candidate in (folder, *folder.parents):
        limits += quota_of(candidate / "cpu.max")
        if candidate == root:
            break
    return max(1, min(limits)) if limits else None


def quota_of(cpu_max: Path) -> list[int]:
    """[quota // period] of one `cpu.max` file ("max 100000" is no quota); [] when absent or unlimited."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return []
    if quota == "max":
        return []
    return [int(quota) // int(period)]


def allowed_cpus() -> int:
    """The CPUs this process may use: its affinity set, capped by a cgroup v2 quota."""
    cpus = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota()
    return min(cpus, quota) if quota is not None else cpus


def use_allowed_cpus() -> int:
    """Give torch one intra-op thread per allowed CPU; returns the count (onnxruntime is given it too)."""
    threads = allowed_cpus()
    torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def measuring(precision: Precision) -> Iterator[None]:
    """No gradients and autocast to `precision.dtype`; in fp32 on CUDA, TF32 off (restored after)."""
    strict = precision.device.type == "cuda" and precision.dtype == torch.float32
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        if strict:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        with torch.no_grad(), precision.autocast():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def batches(count: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most `size` items over `count` items: a network's batches."""
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))
