"""The bf16 peak a training step's FLOP rate is a share of: the datasheet's, and a measured one.

The measured peak is a large square bf16 matmul, repeated after warm-up and timed as a whole: on CUDA
8192-square (about 1.1 TFLOP a call, milliseconds even on an H100, so launch overhead is noise) over 50
calls between two CUDA events, which time the device's work and not the host's. On the CPU the size and
count are small so that CI stays fast; that figure describes the CPU and is labelled so.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Datasheet:
    name: str
    bf16_flops: float  # dense bf16 tensor-core peak (no sparsity), FLOP/s


# NVIDIA datasheets, dense bf16 tensor-core TFLOPS (the sheets print twice these "with sparsity")
A100_40GB = Datasheet("A100 40GB", 312e12)
A100_80GB = Datasheet("A100 80GB", 312e12)
H100_SXM = Datasheet("H100 SXM", 989e12)
H100_PCIE = Datasheet("H100 PCIe", 756e12)
H100_NVL = Datasheet("H100 NVL", 835e12)
H200 = Datasheet("H200", 989e12)
H200_NVL = Datasheet("H200 NVL", 835e12)
L40S = Datasheet("L40S", 362e12)


def datasheet_for(device_name: str) -> Datasheet | None:
    """The datasheet entry of a `torch.cuda.get_device_name()` string, or None for a card not in the table.

    Names as drivers report them: "NVIDIA A100-SXM4-80GB", "NVIDIA A100-PCIE-40GB", "NVIDIA H100 80GB HBM3"
    (the SXM card), "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200", "NVIDIA H200 NVL", "NVIDIA L40S".
    Whole words only, so a GH200 superchip or an L40 is not taken for an H200 or an L40S.
    """
    name = device_name.upper()

    def has(word: str) -> bool:
        return re.search(rf"(?<![A-Z0-9]){word}(?![A-Z0-9])", name) is not None

    if has("H200"):
        return H200_NVL if has("NVL") else H200
    if has("H100"):
        if has("NVL"):
            return H100_NVL
        return H100_PCIE if has("PCIE") else H100_SXM
    if has("A100"):
        return A100_80GB if "80GB" in name or "80G" in name else A100_40GB
    if has("L40S"):
        return L40S
    return None


@dataclass(frozen=True)
class MatmulPlan:
    size: int
    iterations: int
    warmup: int

    def describe(self, device: torch.device) -> str:
        timer = "CUDA events" if device.type == "cuda" else "perf_counter"
        note = "" if device.type == "cuda" else " (kept small for CI: the CPU's figure, not a GPU's)"
        return f"{self.size}-square bf16 matmul x {self.iterations} after {self.warmup} warm-up, {timer}{note}"


CUDA_PLAN = MatmulPlan(size=8192, iterations=50, warmup=10)
CPU_PLAN = MatmulPlan(size=1024, iterations=8, warmup=2)


def plan_for(device: torch.device) -> MatmulPlan:
    return CUDA_PLAN if device.type == "cuda" else CPU_PLAN


def measured_bf16_peak(device: torch.device, plan: MatmulPlan) -> float:
    """FLOP/s of `plan.iterations` back-to-back bf16 matmuls on `device` (module docstring)."""
    a = torch.randn(plan.size, plan.size, device=device, dtype=torch.bfloat16)
    b = torch.randn(plan.size, plan.size, device=device, dtype=torch.bfloat16)
    out = torch.empty_like(a)
    for _ in range(plan.warmup):
        torch.mm(a, b, out=out)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        for _ in range(plan.iterations):
            torch.mm(a, b, out=out)
        end.record()
        end.synchronize()
        seconds = start.elapsed_time(end) / 1000
    else:
        began = time.perf_counter()
        for _ in range(plan.iterations):
            torch.mm(a, b, out=out)
        seconds = time.perf_counter() - began
    return 2 * plan.size**3 * plan.iterations / seconds
