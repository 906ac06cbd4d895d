"""Benchmark of the RealPortrait model: CPU training-step efficiency, and the paper's training costs.

    .venv/bin/python bench/model.py [--steps 5] [--utilisation 0.4]

Part 1 times a training step (`training_loss` + backward, fp32, no checkpointing) of the `tiny` and
`small` presets, each in a fresh child process so its peak memory is its own. Achieved FLOP/s is the
analytic step FLOPs (`model.costs`, 3x the forward) over the step time, compared with a plain fp32
matmul timed in the same process just before and after each step: a ratio per step (the median is
printed), stable across machines where absolute times are not. Peak memory is the rise of the
process's peak RSS over the built model and inputs; the activations autograd kept are measured and
printed beside the analytic estimate.

Part 2 is the analytic table for the `paper` preset at the paper's two stages on 4 A100s: FLOPs per
step, activation memory with and without checkpointing (bf16), ZeRO-2 model states per GPU, the EMA's whole
fp32 copy and DeepSpeed's communication buckets per GPU (`bench/training_memory.py`), step time at a stated
utilisation of the A100's bf16 peak, and the total training days.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch.utils.flop_counter import FlopCounterMode

# This file is bench/model.py: put the repository first so `model` is the package, not this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.training_memory import bucket_bytes, ema_bytes, read_zero_section
from model.costs import (
    A100_BF16_FLOPS,
    ClipShape,
    ModelSizes,
    activation_elements,
    forward_flops,
    recompute_peak_elements,
    step_seconds,
    training_step_flops,
    zero2_model_state_bytes,
)
from model.realportrait import PRESETS, RealPortrait
from model.saved_tensors import saved_tensor_bytes
from model.vae import SD15_VAE_CONFIG

CPU_BATCH = {"tiny": 2, "small": 1}
MATMUL_SIZE = 2048
GPUS = 4
MIB, GIB = 2**20, 2**30
ZERO_CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


@dataclass(frozen=True)
class Stage:
    name: str
    global_batch: int
    num_frames: int
    steps: int


PAPER_STAGES = (
    Stage("stage 1: image mode", global_batch=32, num_frames=1, steps=20_000),
    Stage("stage 2: L=16 frames", global_batch=4, num_frames=16, steps=30_000),
)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def median_seconds(step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops_per_second(repeats: int = 5) -> float:
    a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
    a @ b  # warm-up
    return 2 * MATMUL_SIZE**3 / median_seconds(lambda: a @ b, repeats)


def measure_preset(preset: str, steps: int) -> dict[str, float]:
    """Child-process body: time and measure one preset's training step."""
    torch.manual_seed(0)
    spec = PRESETS[preset]
    batch, frames, size = CPU_BATCH[preset], spec.num_frames, spec.latent_size
    model = RealPortrait.from_preset(preset).train()
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 4, frames, size, size, generator=generator)
    reference = torch.randn(batch, 4, size, size, generator=generator)
    driving = torch.rand(batch, 3, frames, 8 * size, 8 * size, generator=generator) * 2 - 1

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model.training_loss(latents, reference, driving, generator=generator).backward()

    shape = ClipShape(batch, frames, size, size)
    sizes = ModelSizes.from_config(model.config)
    flops = training_step_flops(sizes, shape, checkpointing=False)
    baseline = peak_rss_bytes()
    step()  # warm-up (kernel selection, allocator)
    # Each step is bracketed by matmul timings and yields its own ratio, so that load from other
    # processes on a shared machine hits numerator and denominator alike; the median is reported.
    seconds, matmuls, ratios = [], [], []
    for _ in range(steps):
        before = matmul_flops_per_second()
        seconds.append(median_seconds(step, 1))
        matmuls.append((before + matmul_flops_per_second()) / 2)
        ratios.append(flops / seconds[-1] / matmuls[-1])
    peak = peak_rss_bytes() - baseline

    with saved_tensor_bytes(model) as kept:
        model.training_loss(latents, reference, driving, generator=generator)

    return {
        "batch": batch,
        "frames": frames,
        "latent": size,
        "seconds": statistics.median(seconds),
        "flops": flops,
        "matmul": statistics.median(matmuls),
        "ratio": statistics.median(ratios),
        "peak_bytes": peak,
        "kept_bytes": sum(kept.values()),
        "estimated_bytes": 4 * activation_elements(sizes, shape, checkpointing=False),
    }


def run_child(preset: str, steps: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", preset, "--steps", str(steps)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def print_cpu_table(steps: int) -> None:
    print(f"CPU training step (fp32, {torch.get_num_threads()} threads, medians of {steps}; no checkpointing)")
    header = f"{'preset':<7}{'B x L x latent':>16}{'step s':>9}{'GFLOP':>9}{'GFLOP/s':>10}"
    print(header + f"{'matmul GFLOP/s':>16}{'ratio':>7}{'peak MiB':>10}{'kept/est. MiB':>16}")
    for preset in CPU_BATCH:
        r = run_child(preset, steps)
        achieved = r["flops"] / r["seconds"]
        shape = f"{r['batch']} x {r['frames']} x {r['latent']}^2"
        print(
            f"{preset:<7}{shape:>16}{r['seconds']:>9.3f}{r['flops'] / 1e9:>9.1f}{achieved / 1e9:>10.1f}"
            f"{r['matmul'] / 1e9:>16.1f}{r['ratio']:>7.2f}{r['peak_bytes'] / MIB:>10.0f}"
            f"{r['kept_bytes'] / MIB:>8.0f}/{r['estimated_bytes'] / MIB:<7.0f}"
        )


def vae_encoder_costs(side: int) -> tuple[float, int]:
    """(FLOPs to encode one frame, parameters) of the SD1.5 VAE, counted by torch on the meta device."""
    with torch.device("meta"):
        vae = AutoencoderKL(**SD15_VAE_CONFIG)
        frame = torch.empty(1, 3, side, side)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        vae.encode(frame)
    return float(counter.get_total_flops()), sum(p.numel() for p in vae.parameters())


def print_paper_table(utilisation: float) -> None:
    with torch.device("meta"):
        model = RealPortrait.from_preset("paper")
    sizes = ModelSizes.from_config(model.config)
    spec = PRESETS["paper"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen_model = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    vae_flops, vae_parameters = vae_encoder_costs(spec.latent_size * sizes.vae_scale_factor)
    states = zero2_model_state_bytes(trainable, frozen_model + vae_parameters, GPUS)
    ema = ema_bytes(trainable + frozen_model, max(p.numel() for p in model.parameters()))
    buckets = {stage: bucket_bytes(read_zero_section(ZERO_CONFIGS / f"zero{stage}.json")) for stage in (2, 3)}

    print(f"\nPaper config, analytic: {trainable:,} trainable parameters (+{vae_parameters:,} frozen VAE), ")
    print(
        f"{GPUS} x A100 (bf16 peak {A100_BF16_FLOPS / 1e12:.0f} TFLOP/s) at {utilisation:.0%} utilisation, "
        "gradient checkpointing on, latents encoded by the frozen VAE on the fly"
    )
    rows = []
    total_seconds, total_flops = 0.0, 0.0
    for stage in PAPER_STAGES:
        per_gpu = stage.global_batch // GPUS
        shape = ClipShape(per_gpu, stage.num_frames, spec.latent_size, spec.latent_size)
        components = forward_flops(sizes, shape)
        vae = vae_flops * per_gpu * (stage.num_frames + 1)  # targets + reference; no backward
        step_flops = training_step_flops(sizes, shape, checkpointing=True) + vae
        seconds = step_seconds(step_flops, utilisation)
        total_seconds += seconds * stage.steps
        total_flops += step_flops * GPUS * stage.steps
        plain = 2 * activation_elements(sizes, shape, checkpointing=False)
        checkpointed = 2 * (
            activation_elements(sizes, shape, checkpointing=True) + recompute_peak_elements(sizes, shape)
        )
        rows.append(
            (
                stage.name,
                [
                    ("clips per GPU x frames (+1 reference)", f"{per_gpu} x {stage.num_frames}"),
                    ("forward TFLOP per GPU: backbone", f"{components['backbone'] / 1e12:.2f}"),
                    ("  ControlNet", f"{components['controlnet'] / 1e12:.2f}"),
                    ("  motion encoder", f"{components['motion_encoder'] / 1e12:.3f}"),
                    ("  conditioning", f"{components['conditioning'] / 1e12:.4f}"),
                    ("VAE encode TFLOP per GPU (forward only)", f"{vae / 1e12:.2f}"),
                    ("step TFLOP per GPU (4x fwd + VAE)", f"{step_flops / 1e12:.1f}"),
                    ("step TFLOP, 4 GPUs", f"{step_flops * GPUS / 1e12:.1f}"),
                    ("activations GiB/GPU, no checkpointing", f"{plain / GIB:.1f}"),
                    ("activations GiB/GPU, checkpointing", f"{checkpointed / GIB:.2f}"),
                    ("ZeRO-2 model states GiB/GPU", f"{states['total'] / GIB:.1f}"),
                    ("EMA fp32 copy GiB/GPU", f"{ema.held / GIB:.2f}"),
                    ("ZeRO-2 comm. buckets GiB/GPU", f"{buckets[2].total / GIB:.2f}"),
                    (
                        "total GiB/GPU, checkpointing",
                        f"{(checkpointed + states['total'] + ema.held + buckets[2].total) / GIB:.1f}",
                    ),
                    ("  + EMA gather bucket while saving/validating", f"{ema.gather_bucket / GIB:.2f}"),
                    ("step time s (A100)", f"{seconds:.2f}"),
                    ("steps", f"{stage.steps:,}"),
                    ("stage days", f"{seconds * stage.steps / 86400:.2f}"),
                ],
            )
        )
    labels = [label for label, _ in rows[0][1]]
    width = max(map(len, labels)) + 2
    print(f"{'':<{width}}" + "".join(f"{name:>24}" for name, _ in rows))
    for index, label in enumerate(labels):
        print(f"{label:<{width}}" + "".join(f"{values[index][1]:>24}" for _, values in rows))
    print(
        f"ZeRO-2 states per GPU: bf16 parameters {states['parameters'] / GIB:.2f} GiB (replicated), "
        f"gradients {states['gradients'] / GIB:.2f} GiB + fp32 master/Adam {states['optimizer'] / GIB:.2f} GiB "
        "(partitioned)"
    )
    print(
        f"EMA per GPU: a whole fp32 copy of the model ({ema.held / GIB:.2f} GiB = 4 B x every parameter) on every "
        "rank, each averaging only its own partition in place (no collective per step); gathering it to save, "
        f"export or validate adds a {ema.gather_bucket / GIB:.2f} GiB bucket"
    )
    for stage, bucket in buckets.items():
        parts = ", ".join(f"{name} {size / GIB:.2f}" for name, size in bucket.buffers)
        print(f"ZeRO-{stage} comm. buffers/GPU (zero{stage}.json, bf16): {parts} = {bucket.total / GIB:.2f} GiB")
    print(f"total training: {total_seconds / 86400:.2f} days at {utilisation:.0%} utilisation")
    implied = total_flops / (7 * 86400 * GPUS * A100_BF16_FLOPS)
    print(f"the paper's 'about one week' would mean {implied:.1%} average utilisation of the 4 A100s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per preset")
    parser.add_argument("--utilisation", type=float, default=0.4, help="assumed fraction of A100 bf16 peak")
    parser.add_argument("--child", choices=sorted(CPU_BATCH), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_preset(args.child, args.steps)))
        return
    print_cpu_table(args.steps)
    print_paper_table(args.utilisation)
    from bench.validation_cost import validation_report

    print(validation_report())  # the time validation adds to training at the paper's settings (issue 12, item 5)
    from bench.sampling_memory import print_sampling_memory  # the parent only: it spawns its own children

    print_sampling_memory()  # peak RSS of sampling, 64 vs 512 driving frames (issue 12, item 2)
    from bench.sampling_cache import print_sampling_cache

    print_sampling_cache()  # speed-up of the reference and null-condition caches, image and video mode (item 3)


if __name__ == "__main__":
    main()
