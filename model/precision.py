"""Where and in what precision a model runs: `--device` and `--dtype` for every command that runs one.

Why it works this way:
- The default is what a user expects from the hardware present: CUDA when there is a GPU (bf16, the
  precision A100s and newer are built for, with TF32 for whatever stays fp32), else the CPU in fp32
  (bf16 on most CPUs is emulated and slower, and fp32 is the reference the tests compare against).
- Weights stay fp32 and the forward passes run under `torch.autocast`: matmuls and convolutions take
  the low precision, while the reductions, normalisations and the DDIM update keep fp32. Casting the
  weights themselves would also round the rotary frequencies and the noise schedule.
- Everything is passed down as a `Precision`; no code calls `.cuda()`, so the same path runs (and is
  tested, bf16 autocast included) on the CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
from collections.abc import Iterator
from dataclasses import dataclass

import torch

DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Precision:
    """A device and the dtype autocast computes in on it (fp32 = no autocast)."""

    device: torch.device
    dtype: torch.dtype

    @classmethod
    def resolve(cls, device: str | torch.device | None = None, dtype: str | None = None) -> Precision:
        """`--device` (default: CUDA if present, else CPU) and `--dtype` (default: bf16 on CUDA, fp32 elsewhere)."""
        try:
            where = torch.device(device) if device is not None else default_device()
        except RuntimeError as exc:  # torch's words for an unknown device string
            raise ValueError(f"--device {device!r} is not a torch device: {exc}") from exc
        if where.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {where} was asked for, but torch sees no CUDA device here")
        name = dtype if dtype is not None else ("bf16" if where.type == "cuda" else "fp32")
        if name not in DTYPES:
            raise ValueError(f"--dtype must be one of {sorted(DTYPES)}, got {name!r}")
        return cls(where, DTYPES[name])

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """Autocast to `dtype` on `device`; a no-op in fp32."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def enable_tf32(self) -> None:
        """Let CUDA run fp32 matmuls and convolutions on TF32 tensor cores (no effect elsewhere)."""
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def __str__(self) -> str:
        name = next(key for key, value in DTYPES.items() if value == self.dtype)
        return f"{self.device} {name}"


@contextlib.contextmanager
def running_on(precision: Precision) -> Iterator[None]:
    """No gradients, TF32 where it applies, and autocast: the context every inference pass runs in."""
    precision.enable_tf32()
    with torch.no_grad(), precision.autocast():
        yield


def add_precision_arguments(parser: argparse.ArgumentParser) -> None:
    """`--device` and `--dtype`, with the defaults of `Precision.resolve`."""
    parser.add_argument("--device", help="torch device, e.g. cuda, cuda:1, cpu (default: cuda when present, else cpu)")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), help="compute precision under autocast (default: bf16 on cuda, fp32 on cpu)"
    )


def peak_memory_bytes(device: torch.device) -> int:
    """The peak memory of this process's work on `device`: CUDA's peak allocation there, else peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
