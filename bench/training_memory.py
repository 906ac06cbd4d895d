"""Per-GPU memory that the ZeRO model states leave out: the EMA and DeepSpeed's communication buckets.

The EMA (training/ema.py, issue 24) keeps, on each rank, the fp32 average of that rank's own partition of
the trained parameters: 4 bytes x trainable / ranks, all the time. The whole fp32 model is gathered only to
save, export or validate it, so that copy (4 bytes x every parameter of the model, frozen ones included:
the export is a complete model) is a transient peak at those moments, not a steady cost.

The buckets are what DeepSpeed allocates from the ZeRO section of training/configs/zero2.json or
zero3.json, read from its source (runtime/zero/stage_1_and_2.py, stage3.py), sizes in elements:
- ZeRO-1/2 with `contiguous_gradients`: a reduce bucket of `reduce_bucket_size` gradients in the working
  dtype, and a second one when `overlap_comm` is on (double buffering, so one fills while the other is
  reduced). The parameter all-gather after the step writes in place into the flat bf16 parameters, chunked
  by `allgather_bucket_size`, and allocates no buffer of that size.
- ZeRO-3: one reduce bucket of `reduce_bucket_size` (with `contiguous_gradients`) and the parameters
  prefetched ahead of use, up to `stage3_prefetch_bucket_size` elements in the working dtype.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FP32_BYTES = 4
DEEPSPEED_DEFAULTS = {  # DeepSpeed's own defaults for the keys a config may leave out
    "reduce_bucket_size": 500_000_000,
    "stage3_prefetch_bucket_size": 50_000_000,
    "overlap_comm": False,
    "contiguous_gradients": True,
}


@dataclass(frozen=True)
class EmaMemory:
    """Bytes per GPU: the rank's fp32 partition (always held) and the whole fp32 model (only while saving,
    exporting or validating)."""

    partition: float
    gathered: float


def ema_bytes(trainable: int, model_parameters: int, gpus: int) -> EmaMemory:
    """The partitioned EMA's cost per GPU; `model_parameters` counts the whole model, frozen ones included."""
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1, got {gpus}")
    return EmaMemory(partition=FP32_BYTES * trainable / gpus, gathered=float(FP32_BYTES * model_parameters))


@dataclass(frozen=True)
class Buckets:
    """DeepSpeed's communication buffers per GPU: (what, bytes) per buffer, for the printed breakdown."""

    stage: int
    buffers: tuple[tuple[str, float], ...]

    @property
    def total(self) -> float:
        return sum(size for _, size in self.buffers)


def bucket_bytes(zero: dict[str, Any], working_bytes: int = 2) -> Buckets:
    """The buffers DeepSpeed allocates for a `zero_optimization` section (module docstring), with gradients
    and gathered parameters `working_bytes` wide (2: bf16)."""
    settings = {**DEEPSPEED_DEFAULTS, **zero}
    stage = settings.get("stage", 0)
    reduce = float(settings["reduce_bucket_size"]) * working_bytes
    buffers: list[tuple[str, float]] = []
    if stage in (1, 2) and settings["contiguous_gradients"]:
        buffers.append(("reduce bucket", reduce))
        if settings["overlap_comm"]:
            buffers.append(("second reduce bucket (overlap_comm)", reduce))
    elif stage == 3:
        if settings["contiguous_gradients"]:
            buffers.append(("reduce bucket", reduce))
        buffers.append(("prefetch bucket", float(settings["stage3_prefetch_bucket_size"]) * working_bytes))
    return Buckets(stage, tuple(buffers))


def read_zero_section(path: Path) -> dict[str, Any]:
    """The `zero_optimization` section of a DeepSpeed JSON config; a missing or malformed one is an error."""
    try:
        section = json.loads(path.read_text())["zero_optimization"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: no readable `zero_optimization` section ({exc!r})") from exc
    if not isinstance(section, dict):
        raise ValueError(f"{path}: `zero_optimization` is a {type(section).__name__}, not an object")
    return section
