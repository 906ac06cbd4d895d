"""Per-GPU memory that the ZeRO model states leave out: the EMA and DeepSpeed's communication buckets.

The EMA (training/ema.py, issue 24) lives in a whole fp32 copy of the model on every rank (4 bytes x every
parameter, frozen ones included: the export is a complete model), all the time. Each rank averages only the
elements of its own partition in place in that copy, which costs no collective per step but no memory
either; gathering the whole average (to save, export or validate) adds one fp32 bucket of at most
`GATHER_BUCKET_ELEMENTS` (or the largest parameter, if larger) for that moment.

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

from training.ema import GATHER_BUCKET_ELEMENTS

FP32_BYTES = 4
DEEPSPEED_DEFAULTS = {  # DeepSpeed's own defaults for the keys a config may leave out
    "reduce_bucket_size": 500_000_000,
    "stage3_prefetch_bucket_size": 50_000_000,
    "overlap_comm": False,
    "contiguous_gradients": True,
}


@dataclass(frozen=True)
class EmaMemory:
    """Bytes per GPU: the whole fp32 copy (always held) and the bucket its gather adds while saving, exporting
    or validating."""

    held: float
    gather_bucket: float


def ema_bytes(model_parameters: int, largest_parameter: int) -> EmaMemory:
    """The EMA's cost per GPU, the same on every rank whatever their number; `model_parameters` counts the whole
    model, frozen ones included."""
    if largest_parameter > model_parameters:
        raise ValueError(f"the largest parameter ({largest_parameter:,}) exceeds the model ({model_parameters:,})")
    bucket = min(model_parameters, max(GATHER_BUCKET_ELEMENTS, largest_parameter))
    return EmaMemory(held=float(FP32_BYTES * model_parameters), gather_bucket=float(FP32_BYTES * bucket))


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
