"""Peak memory of sampling against the driving video's length: `small`, 64 vs 512 driving frames, CPU.

    .venv/bin/python bench/sampling_memory.py [--steps 1] [--side 128]

`Animator.generate` (the code `rp-animate` and `rp-eval --method ours` run) samples a clip from a source
crop and driving crops, each length in a fresh child process so its peak RSS is its own. Sampling is
memory-bounded when the motion encoder and the VAE see one window or chunk at a time: then only the
driving frames, the latents and the uint8 result grow with the length, and the peak-RSS ratio of 512 to
64 frames stays near 1 (the goal is <= 1.2). Before chunking, the motion encoder's activations of every
driving frame and the float copy of the decoded video made it grow about linearly.

The `small` model runs at random weights with a small SD1.5-architecture VAE (narrow widths, as the tests
use), one DDIM step and guidance scales of 1 (one pass per window), at `--side` pixels (the small
preset's 256 costs 4x the time for the same conclusion): memory, not image quality, is measured.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

# Run as a script from bench/: put the repository first so `model` is the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.animate import Animator, SamplingOptions
from model.precision import Precision
from model.realportrait import RealPortrait
from model.vae import SD15_VAE_CONFIG, FrameVAE

LENGTHS = (64, 512)
MIB = 2**20


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(frames: int, side: int, steps: int) -> dict[str, float]:
    """Sample `frames` driving frames at `side` px with `small` on the CPU; peak RSS before and after."""
    torch.manual_seed(0)
    model = RealPortrait.from_preset("small", input_sq_size=side)
    vae = AutoencoderKL(**{**SD15_VAE_CONFIG, "block_out_channels": [16, 16, 32, 32], "norm_num_groups": 8})
    animator = Animator(model, FrameVAE(vae), precision=Precision.resolve("cpu", "fp32"))
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    driving = rng.integers(0, 256, (frames, side, side, 3), dtype=np.uint8)
    options = SamplingOptions(num_steps=steps, reference_guidance=1.0, motion_guidance=1.0)
    ready = peak_rss_bytes()
    start = time.perf_counter()
    result = animator.generate(source, driving, options, fps=25.0)
    seconds = time.perf_counter() - start
    if result.shape != driving.shape:
        raise RuntimeError(f"sampling returned {result.shape}, expected {driving.shape}")
    return {"frames": frames, "ready_bytes": ready, "peak_bytes": peak_rss_bytes(), "seconds": seconds}


def run_child(frames: int, side: int, steps: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(frames), "--side", str(side), "--steps", str(steps)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def sampling_memory_ratio(side: int = 128, steps: int = 1) -> tuple[float, list[dict[str, float]]]:
    """(peak RSS at 512 frames / at 64 frames, the children's measurements)."""
    results = [run_child(frames, side, steps) for frames in LENGTHS]
    return results[-1]["peak_bytes"] / results[0]["peak_bytes"], results


def print_sampling_memory(side: int = 128, steps: int = 1) -> float:
    """Print the table and the ratio (goal <= 1.2); returns the ratio."""
    ratio, results = sampling_memory_ratio(side, steps)
    print(f"\nSampling memory, small at {side} px, CPU fp32, {steps} DDIM step(s), windows of 16 (fresh process each)")
    print(f"{'driving frames':>15}{'model ready MiB':>17}{'peak MiB':>10}{'seconds':>9}")
    for r in results:
        print(f"{r['frames']:>15.0f}{r['ready_bytes'] / MIB:>17.0f}{r['peak_bytes'] / MIB:>10.0f}{r['seconds']:>9.1f}")
    print(f"peak RSS ratio {LENGTHS[-1]} / {LENGTHS[0]} frames: {ratio:.3f} (goal <= 1.2)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=128, help="frame side in pixels (small's own is 256)")
    parser.add_argument("--steps", type=int, default=1, help="DDIM steps")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.side, args.steps)))
        return
    print_sampling_memory(args.side, args.steps)


if __name__ == "__main__":
    main()
