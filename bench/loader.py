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

Then how evenly the slots (rank x worker) sample: the build's samples are rewritten into `--tars`
tars of equal size (webdataset's writer, build order kept, so a tar holds a run of neighbouring
items as a build's tars do) and read by `--slots` slots. Printed: the tar-frequency spread (each
tar's share of the samples the slots' undecoded streams draw, over the uniform share: lowest and
highest) and the mean number of distinct source videos (the json's youtube_id, else its item_id)
in a stage-1 batch of one GPU, formed by the real stream (shuffle buffer and decoding included).

The input is the build in `--build-dir` (`make demo` writes `.cache/build`); without one the
embedded sample is built into a temporary folder first. The sample's context images are 512-632 px;
real ones reach 1024 px, whose JPEG decoding costs up to ~3x more per pair.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
# This file is bench/loader.py: put the repository first so `model` and `training` are the packages.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import webdataset as wds  # noqa: E402

from model.costs import A100_BF16_FLOPS, ClipShape, ModelSizes, step_seconds, training_step_flops  # noqa: E402
from model.realportrait import RealPortrait  # noqa: E402
from training.config import DataConfig, StageConfig, load_config  # noqa: E402
from training.data import PortraitStream, Source, plan_sources, read_index, stage_framing  # noqa: E402
from training.examples import Framing  # noqa: E402

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


def reshard(build_dir: Path, folder: Path, tars: int) -> tuple[tuple[str, ...], dict[str, str]]:
    """The build's samples in `tars` tars of equal size (a remainder is left out), and each key's
    source video."""
    samples = [
        {name: value for name, value in sample.items() if name == "__key__" or not name.startswith("__")}
        for entry in read_index(build_dir)
        for sample in wds.WebDataset(str(entry.path), shardshuffle=False)
    ]
    size = len(samples) // tars
    if size == 0:
        raise SystemExit(f"{build_dir}: {len(samples)} samples cannot fill {tars} tars")
    paths = []
    for index in range(tars):
        path = folder / f"all-{index:05d}.tar"
        with wds.TarWriter(str(path), encoder=False) as writer:
            for sample in samples[index * size : (index + 1) * size]:
                writer.write(sample)
        paths.append(str(path))
    metas = [json.loads(sample["json"]) for sample in samples]
    return tuple(paths), {meta["key"]: meta["youtube_id"] or meta["item_id"] for meta in metas}


@contextmanager
def as_rank(rank: int, world: int) -> Iterator[None]:
    """This process acts as `rank` of `world` single-worker ranks (webdataset reads RANK/WORLD_SIZE)."""
    saved = {name: os.environ.get(name) for name in ("RANK", "WORLD_SIZE")}
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def tar_spread(tars: tuple[str, ...], slots: int, draws: int) -> tuple[float, float]:
    """(lowest, highest) tar share of all slots' draws, over the uniform share."""
    counts: Counter[str] = Counter()
    for slot in range(slots):
        with as_rank(slot, slots):
            stream = PortraitStream(
                [Source("all", tars, 1.0)],
                Framing(mode="image", resolution=64),
                batch_size=1,
                shuffle_buffer=1,
                epoch_batches=1,
                seed=[0],
            )
            samples = stream.epoch_samples().samples
            counts.update(next(samples)["__url__"] for _ in range(draws))
    shares = np.array([counts[tar] for tar in tars]) / (counts.total() / len(tars))
    return float(shares.min()), float(shares.max())


def batch_diversity(
    tars: tuple[str, ...], sources: dict[str, str], stage: StageConfig, slots: int, batches: int
) -> tuple[float, int]:
    """(mean distinct source videos per batch, batch size): `batches` per slot, at the stage's per-GPU
    batch and the default shuffle buffer."""
    data = DataConfig(build_dir=Path(tars[0]).parent, exclude_splits=[])
    per_gpu = stage.global_batch // PAPER_GPUS
    distinct = []
    for slot in range(slots):
        with as_rank(slot, slots):
            stream = PortraitStream(
                [Source("all", tars, 1.0)],
                stage_framing(data, stage),
                batch_size=per_gpu,
                shuffle_buffer=data.shuffle_buffer,
                epoch_batches=batches,
                seed=[0],
            )
            distinct += [len({sources[key] for key in batch["keys"]}) for batch in stream]
    return float(np.mean(distinct)), per_gpu


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
    parser.add_argument(
        "--tars", type=int, default=20, help="tars the build is rewritten into for the sampling figures"
    )
    parser.add_argument("--slots", type=int, default=16, help="loader slots (rank x worker) sampling them")
    parser.add_argument("--draws", type=int, default=2000, help="undecoded samples per slot for the tar spread")
    parser.add_argument("--batches", type=int, default=2, help="decoded batches per slot for the batch diversity")
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
        tars, sources = reshard(build_dir, Path(scratch), args.tars)
        low, high = tar_spread(tars, args.slots, args.draws)
        print(
            f"\n{args.tars} tars of {build_dir} over {args.slots} slots: tar frequency / uniform "
            f"{low:.3f} .. {high:.3f} ({args.slots * args.draws} draws)"
        )
        stage = load_config(STAGE_CONFIGS[0]).stages[0]
        mean, size = batch_diversity(tars, sources, stage, args.slots, args.batches)
        print(
            f"mean distinct source videos per {stage.name} batch of {size}: {mean:.2f} "
            f"({args.slots} slots x {args.batches} batches; {len(set(sources.values()))} sources in the build)"
        )


if __name__ == "__main__":
    main()
