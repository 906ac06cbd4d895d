"""Why torch sees no GPU, in the words a user can act on: torch's CUDA build against the NVIDIA driver.

A pip wheel of torch carries its own CUDA runtime, which runs on any driver at least as new as the
minimum of its CUDA major version (NVIDIA's "minor version compatibility"). On an older driver
`torch.cuda.is_available()` is simply False, and whatever defaults to "CUDA when present" runs on the CPU
without a word. The minimums are those of NVIDIA's CUDA Toolkit release notes, table "CUDA Toolkit and
Minimum Required Driver Version for CUDA Minor Version Compatibility" (Linux).
"""

from __future__ import annotations

import shutil
import subprocess

MINIMUM_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580"}  # CUDA major version -> Linux driver


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.strip().split(".") if part.isdigit())


def minimum_driver(cuda: str) -> str | None:
    """The oldest driver a build for CUDA `cuda` (e.g. "13.0") runs on; None for a version the table lacks."""
    major = version_tuple(cuda)[:1]
    return MINIMUM_DRIVER.get(major[0]) if major else None


def driver_version() -> str | None:
    """The NVIDIA driver's version, from pynvml if installed, else nvidia-smi; None when neither answers."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # not installed, or no driver to talk to: try nvidia-smi
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        result = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = result.stdout.split()
    return lines[0] if result.returncode == 0 and lines else None


def no_cuda_reason(cuda: str | None, driver: str | None) -> str:
    """Why torch sees no CUDA device, given torch's CUDA build (`torch.version.cuda`) and the driver's version."""
    if cuda is None:
        return "this torch is a CPU-only build (torch.version.cuda is None)"
    needed = minimum_driver(cuda)
    needs = f"which needs NVIDIA driver {needed} or newer" if needed else "a CUDA version this check has no table for"
    built = f"torch is built for CUDA {cuda}, {needs}"
    if driver is None:
        return f"{built}; no NVIDIA driver answered (no pynvml, and nvidia-smi is absent or failed)"
    if needed is not None and version_tuple(driver) < version_tuple(needed):
        return f"{built}, and this machine's driver is {driver}: update it, or install a torch for an older CUDA"
    return f"{built}; the driver is {driver}, yet torch sees no device (check CUDA_VISIBLE_DEVICES and nvidia-smi)"
