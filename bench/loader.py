"""Benchmark of the training loader: what one loader worker delivers beside what one A100 consumes.

    .venv/bin/python bench/loader.py [--build-dir .cache/build] [--samples 48] [--utilisation 0.4]

One worker: the real `training.data.PortraitStream` iterated in this process with one thread (a
DataLoader worker is such a process), at the paper's stage settings read from
`training/configs/stage{1,2}.yaml` (512x512; image mode: a (reference, target) pair, 2 frames; video
mode: L=16 frames + a reference, 17 frames), timed over `--samples` samples after a warm-up.

One A100: the paper trains on 4, so a GPU takes a quarter of each stage's global batch per step
(stage 1: 8 pairs, stage 2: 1 clip). The step time is the model's analytic training FLOPs for that
batch (`model.costs`, the paper preset, gradient checkpointing on) at `--utilisation` of the A100's
bf16 peak. The frozen VAE's encoding is left out of the GPU's work: that makes the GPU faster than it
is, so the ratio printed is a lower bound. Also printed: the utilisation at which the ratio would
fall to 3.

The input is the build in `--build-dir` (`make demo` writes `.cache/build`); without one the
embedded sample is built into a temporary folder first. The sample's context images are 512-632 px;
real ones reach 1024 px, whose JPEG decoding costs up to ~3x more per pair.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
# This file is bench/loader.py: put the repository first so `model` and `training` are the packages.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from model.costs import A100_BF16_FLOPS, ClipShape, ModelSizes, step_seconds, training_step_flops  # noqa: E402
from model.realportrait import RealPortrait  # noqa: E402
from training.config import DataConfig, StageConfig, load_config  # noqa: E402
from training.data import PortraitStream, plan_sources, read_index, stage_framing  # noqa: E402

PAPER_GPUS = 4
WARMUP = 8
STAGE_CONFIGS = (REPO / "training/configs/stage1.yaml", REPO / "training/configs/stage2.yaml")


def committed(build_dir: Path) -> bool:
    return any((build_dir / "shards").glob("*.stats.json"))


def sample_build(root: Path) -> Path:
    print(f"no build given: building the embedded sample into {root} (about half a minute)", flush=True)
    rp_data = Path(sys.executable).with_name("rp-data")
    command = [str(rp_data), "build", "--sample", "--sample-dir", str(root / "sample"), "--out", str(root / "out")]
    subprocess.run([*command, "--workers", "2"], check=True, capture_output=True)
    return root / "out"


def worker_rate(build_dir: Path, stage: StageConfig, samples: int) -> tuple[float, float]:
    """(samples/s, frames/s) of one stream on one thread; frames count the reference too."""
    data = DataConfig(build_dir=build_dir, exclude_splits=[], shuffle_buffer=16)
    stream = PortraitStream(
        plan_sources(read_index(build_dir), data, stage.mode),
        stage_framing(data, stage),
        batch_size=1,
        shuffle_buffer=data.shuffle_buffer,
        epoch_batches=WARMUP + samples,
        seed=[0],
    )
    batches = iter(stream)
    for _ in range(WARMUP):
        next(batches)
    began = time.perf_counter()
    for _ in range(samples):
        next(batches)
    seconds = time.perf_counter() - began
    return samples / seconds, samples * (stage.frames_per_sample + 1) / seconds


def a100_rate(sizes: ModelSizes, stage: StageConfig, utilisation: float) -> tuple[float, float, float]:
    """(samples/s, frames/s, step seconds) one A100 consumes at the paper's per-GPU batch."""
    per_gpu = stage.global_batch // PAPER_GPUS
    latent = stage.resolution // 8
    shape = ClipShape(per_gpu, stage.frames_per_sample, latent, latent)
    seconds = step_seconds(training_step_flops(sizes, shape, checkpointing=True), utilisation)
    return per_gpu / seconds, per_gpu * (stage.frames_per_sample + 1) / seconds, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, default=REPO / ".cache" / "build")
    parser.add_argument("--samples", type=int, default=48, help="timed samples per mode")
    parser.add_argument("--utilisation", type=float, default=0.4, help="assumed fraction of the A100's bf16 peak")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        build_dir = args.build_dir if committed(args.build_dir) else sample_build(Path(scratch))
        with torch.device("meta"):
            sizes = ModelSizes.from_config(RealPortrait.from_preset("paper").config)
        print(
            f"one loader worker (1 thread) on {build_dir} vs one A100 (bf16 peak {A100_BF16_FLOPS / 1e12:.0f} "
            f"TFLOP/s at {args.utilisation:.0%}, paper preset, checkpointing, VAE encoding not counted)"
        )
        header = f"{'stage':<8}{'mode':<7}{'per-GPU batch':>14}{'A100 step s':>12}{'A100 samples/s':>15}"
        print(header + f"{'A100 frames/s':>14}{'worker samples/s':>17}{'worker frames/s':>16}{'ratio':>7}{'util@3':>8}")
        for path in STAGE_CONFIGS:
            stage = load_config(path).stages[0]
            worker_samples, worker_frames = worker_rate(build_dir, stage, args.samples)
            gpu_samples, gpu_frames, seconds = a100_rate(sizes, stage, args.utilisation)
            ratio = worker_samples / gpu_samples
            print(
                f"{stage.name:<8}{stage.mode:<7}{stage.global_batch // PAPER_GPUS:>14}{seconds:>12.2f}"
                f"{gpu_samples:>15.2f}{gpu_frames:>14.1f}{worker_samples:>17.1f}{worker_frames:>16.1f}"
                f"{ratio:>7.1f}{args.utilisation * ratio / 3:>8.0%}"
            )
        print("ratio = worker samples/s / A100 samples/s; util@3 = the A100 utilisation at which the ratio is 3")


if __name__ == "__main__":
    main()
