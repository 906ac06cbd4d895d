"""Sampling speed-up from the reference and null-condition caches (`RealPortrait.sampling_cache`), CPU.

    .venv/bin/python bench/sampling_cache.py [--preset small] [--steps 3] [--repeats 3]

Guided DDIM sampling of the same noise, reference and motion, with and without the caches, alternating
in one run so that both see the same machine. The guidance is `sample`'s default (reference scale 2,
motion scale 1), three passes a step: reference and motion, reference only, neither. The caches remove
the reference frame from the two passes that have it and the null condition's keys and values from all
three; the pass without reference gains nothing, which bounds the speed-up.

Per mode (image: L = 1; video: the preset's L) it prints the seconds per step without and with the
caches, the one-off cost of building them, the speed-up of a sampling call of `--steps` steps (build
included) and of 50 steps (the measured costs, with the build amortised over 50), the share of a step's
time the caches save, the share of a step's FLOPs they save (counted by torch's FlopCounterMode: the
figure a loaded machine cannot blur), and the largest difference between the two predictions at any step (the caches
change no prediction). Each step is timed both ways back to back; the medians over the steps of
`--repeats` sampling calls are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch
from torch.utils.flop_counter import FlopCounterMode

# Run as a script from bench/: put the repository first so `model` is the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.diffusion import ddim_sample
from model.precision import Precision
from model.realportrait import PRESETS, RealPortrait, SamplingCache

PAPER_STEPS = 50
T = TypeVar("T")
CPU_FP32 = Precision(torch.device("cpu"), torch.float32)


@dataclass(frozen=True)
class CacheSpeedup:
    mode: str
    frames: int
    uncached_step: float  # seconds per step, every pass recomputing the reference and the null condition
    cached_step: float  # seconds per step with the caches
    build: float  # seconds to build the caches, once per sampling call
    steps: int
    uncached_flops: int  # FLOPs of one step's guided prediction
    cached_flops: int
    difference: float  # largest |cached - uncached| of the samples

    @property
    def speedup(self) -> float:
        """Sampling call of `steps` steps: uncached time over cached time including the build."""
        return self.uncached_step * self.steps / (self.build + self.cached_step * self.steps)

    @property
    def speedup_at_paper_steps(self) -> float:
        return self.uncached_step * PAPER_STEPS / (self.build + self.cached_step * PAPER_STEPS)

    @property
    def saved_share(self) -> float:
        """The share of a step's time the caches save (the build is a per-call cost, reported apart)."""
        return 1 - self.cached_step / self.uncached_step

    @property
    def saved_flop_share(self) -> float:
        return 1 - self.cached_flops / self.uncached_flops


def timed(run: Callable[[], T], device: torch.device) -> tuple[float, T]:
    """Wall seconds of `run`, waiting for the device to finish (CUDA launches are asynchronous)."""
    start = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


@torch.no_grad()
def measure_mode(
    model: RealPortrait,
    frames: int,
    latent_size: int,
    steps: int,
    repeats: int,
    precision: Precision = CPU_FP32,
) -> CacheSpeedup:
    """Both ways of sampling one clip length, batch 1, compared step by step, on `precision`'s device
    and under its autocast (the model must already be there).

    The uncached predictions drive the sampler; at each step the cached prediction of the same x_t is
    computed right before or after it (alternating), so that load from elsewhere on the machine hits
    both alike, and the two are compared. A sampling call costs the build plus its steps.
    """
    generator = torch.Generator().manual_seed(0)
    device = precision.device
    reference = torch.randn(1, 4, latent_size, latent_size, generator=generator).to(device)
    driving = (torch.rand(1, 3, frames, 8 * latent_size, 8 * latent_size, generator=generator) * 2 - 1).to(device)
    noise = torch.randn(1, 4, frames, latent_size, latent_size, generator=generator).to(device)
    with precision.autocast():
        return _measure(model, reference, driving, noise, steps, repeats, precision)


def _measure(
    model: RealPortrait,
    reference: torch.Tensor,
    driving: torch.Tensor,
    noise: torch.Tensor,
    steps: int,
    repeats: int,
    precision: Precision,
) -> CacheSpeedup:
    frames, device = noise.shape[2], precision.device
    motion = model.encode_motion(driving)
    cache = model.sampling_cache(reference)

    def guided(cache: SamplingCache | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        def prediction(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            return model.guided_prediction(
                x, timesteps, reference, motion, reference_guidance=2.0, motion_guidance=1.0, cache=cache
            )

        return prediction

    variants = {"uncached": guided(None), "cached": guided(cache)}
    times: dict[str, list[float]] = {"uncached": [], "cached": []}
    differences: list[float] = []

    def both(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        order = ("uncached", "cached") if len(differences) % 2 == 0 else ("cached", "uncached")
        predictions = {}
        for name in order:
            seconds, predictions[name] = timed(partial(variants[name], x, timesteps), device)
            times[name].append(seconds)
        differences.append((predictions["cached"] - predictions["uncached"]).abs().max().item())
        return predictions["uncached"]

    both(noise, torch.tensor([999], device=device))  # warm-up: the allocator and the kernels' first calls
    for kept in times.values():
        kept.clear()
    build = []
    for _ in range(repeats):
        ddim_sample(both, noise, model.schedule, prediction_type="epsilon", num_steps=steps)
        build.append(timed(lambda: model.sampling_cache(reference), device)[0])

    def step_flops(cache: SamplingCache | None) -> int:
        with FlopCounterMode(display=False) as counter:
            guided(cache)(noise, torch.tensor([500], device=device))
        return counter.get_total_flops()

    return CacheSpeedup(
        mode="image" if frames == 1 else "video",
        frames=frames,
        uncached_step=statistics.median(times["uncached"]),
        cached_step=statistics.median(times["cached"]),
        build=statistics.median(build),
        steps=steps,
        uncached_flops=step_flops(None),
        cached_flops=step_flops(cache),
        difference=max(differences),
    )


def measure_sampling_cache(preset: str = "small", steps: int = 3, repeats: int = 3) -> list[CacheSpeedup]:
    """Image mode and video mode (the preset's clip length) of `preset` at random weights, fp32, CPU.

    Random weights cost the same arithmetic as trained ones. The zero-initialised layers (output layer,
    cross- and temporal-attention projections, the ControlNet's ends) get small random values, so that
    the samples, and the check that the caches leave them unchanged, are not trivially zero.
    """
    torch.manual_seed(0)
    model = RealPortrait.from_preset(preset).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.any():
                parameter.normal_(std=0.02)
    shape = PRESETS[preset]
    return [measure_mode(model, frames, shape.latent_size, steps, repeats) for frames in (1, shape.num_frames)]


def print_sampling_cache(preset: str = "small", steps: int = 3, repeats: int = 3) -> None:
    print(
        f"\nSampling caches (reference + null condition), `{preset}` fp32 CPU, guidance 2/1 (3 passes a step), "
        f"medians over {repeats} x {steps} steps:"
    )
    print(
        f"{'mode':<12}{'s/step uncached':>17}{'s/step cached':>15}{'build s':>9}{f'speed-up {steps} st.':>18}"
        f"{'at 50 steps':>13}{'step saved':>12}{'FLOPs saved':>13}{'max |diff|':>12}"
    )
    for timings in measure_sampling_cache(preset, steps, repeats):
        print(
            f"{f'{timings.mode} L={timings.frames}':<12}{timings.uncached_step:>17.3f}{timings.cached_step:>15.3f}"
            f"{timings.build:>9.3f}{timings.speedup:>17.2f}x{timings.speedup_at_paper_steps:>12.2f}x"
            f"{timings.saved_share:>12.1%}{timings.saved_flop_share:>13.1%}{timings.difference:>12.1e}"
        )
    print("goal: >= 1.3x in image mode")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=3, help="DDIM steps per timed sampling call")
    parser.add_argument("--repeats", type=int, default=3, help="sampling calls (each step is timed both ways)")
    args = parser.parse_args()
    print_sampling_cache(args.preset, args.steps, args.repeats)


if __name__ == "__main__":
    main()
