"""What the evaluation's metrics cost on this machine, and what one method's run costs at the paper's scale.

    python bench/eval_speed.py [--device cuda] [--dtype bf16] [--size 512] [--quick]

It writes the embedded sample and metric weights of the real architectures (`eval.made_weights`: AlexNet,
Inception v3, I3D at calibrated random weights, which cost what the published files cost) into a temporary
folder, loads them as `rp-eval run` does (`eval.scorers.load_scorers`: the metric device and dtype, fp32
unless --dtype is given, one CPU thread per allowed core), and times each network on the sample's face
frames at --size: LPIPS frame pairs, Inception frames, I3D 16-frame windows, ArcFace faces (FaceMesh
landmarks + alignment + a stand-in network: the real ResNet-50 costs more), dlib CSIM faces and the FaceMesh
tracking AED and APD use. From the rates it projects the metric cost of one method's run (self- and
cross-reenactment, the default protocol) for 100 clips of 16 frames and of 300 frames. Timings are printed,
never asserted: they depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Run as a script from bench/: put the repository first so `eval` is the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.compute import allowed_cpus, dtype_name, metric_precision
from eval.config import EvalConfig, load_config
from eval.made_weights import face_frames, write_made_weights
from eval.scorers import Scorers, load_scorers
from eval.task_sets import fvd_starts
from model.precision import Precision

NETWORK_METRICS = "[LPIPS,FID,FVD,CSIM-dlib,CSIM-arcface,AED]"
SCALES = ((100, 16), (100, 300))  # (clips, frames per clip) of the projection
WINDOW = 16


@dataclass(frozen=True)
class Network:
    name: str
    unit: str  # what one item is
    frames_per_item: int
    batch: int | None  # items per network call (None: one at a time)


@dataclass(frozen=True)
class MetricSpeed:
    """Items per second of each network (`NETWORKS` order) and what they ran on."""

    rates: dict[str, float]
    networks: dict[str, Network]
    precision: Precision
    threads: int
    size: int
    arcface_provider: str


def timed(call: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of `repeats` calls after one warm-up call (allocators, oneDNN/cuDNN plans)."""
    call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def workloads(scorers: Scorers, frames: np.ndarray) -> dict[str, tuple[Network, int, Callable[[], object]]]:
    """Per network: its description, the items one call measures (one full batch), and the call."""
    lpips, inception, i3d = scorers.lpips, scorers.inception, scorers.i3d
    arcface, dlib, motion = scorers.arcface, scorers.identity, scorers.face_motion
    assert lpips and inception and i3d and arcface and dlib and motion  # load_scorers(..., explicit=True)
    half = len(frames) // 2
    pairs = min(lpips.batch, half)
    faces = min(arcface.batch, len(frames))
    starts = list(range(0, len(frames) - WINDOW + 1, 2))[: i3d.batch]
    return {
        "LPIPS": (
            Network("LPIPS (AlexNet)", "frame pairs", 1, lpips.batch),
            pairs,
            lambda: lpips.distances(frames[:pairs], frames[half : half + pairs]),
        ),
        "Inception": (
            Network("Inception v3 (FID)", "frames", 1, inception.batch),
            inception.batch,
            lambda: inception(frames[: inception.batch]),
        ),
        "I3D": (
            Network("I3D (FVD)", f"{WINDOW}-frame windows", WINDOW, i3d.batch),
            len(starts),
            lambda: i3d.windows(frames, starts, WINDOW),
        ),
        "ArcFace": (
            Network("ArcFace stand-in", "faces", 1, arcface.batch),
            faces,
            lambda: arcface.embed_all(frames[:faces]),
        ),
        "dlib": (Network("dlib CSIM", "faces", 1, None), 8, lambda: dlib.embed_all(frames[:8])),
        "FaceMesh": (
            Network("FaceMesh (AED, APD)", "frames", 1, None),
            len(frames),
            lambda: motion.landmarker.track(frames),
        ),
    }


def measure_metric_speed(precision: Precision, size: int = 512, quick: bool = False) -> MetricSpeed:
    """Items/s of every metric network on `precision`'s device at `size` px (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="eval_speed_") as scratch:
        from pipeline.sample import write_sample

        root = Path(scratch)
        write_sample(root / "sample")
        frames = face_frames(root / "sample", size)
        write_made_weights(root / "weights", frames)
        config = load_config(None, [f"size={size}", f"metrics={NETWORK_METRICS}"])
        scorers = load_scorers(config, root / "weights", explicit=True, precision=precision, allow_unpinned=True)
        rates, networks = {}, {}
        for key, (network, items, call) in workloads(scorers, frames).items():
            networks[key] = network
            rates[key] = items / timed(call, 1 if quick else 3)
        assert scorers.arcface is not None
        return MetricSpeed(rates, networks, precision, scorers.threads, size, scorers.arcface.provider)


def network_items(config: EvalConfig, clips: int, frames: int, *, ground_truth: bool) -> dict[str, int]:
    """Items each network is given in one method's run over `clips` clips of `frames` frames, as
    `eval.run` calls them: one self task per clip and one cross pair per clip (rp-data split draws the
    pairs as a derangement of the clips: every clip is a source once and a driver once). With
    `ground_truth`, also the real side, computed once per clip by the first method's run
    (`eval.ground_truth`); every later run reads it from the cache."""
    own = frames - (0 if config.score_first_frame else 1)  # self: frame 0 is the source, not scored
    step = config.identity_every
    # FVD's windows are drawn from whole videos, frame 0 included, in both protocols
    windows = sum(len(fvd_starts(f"self{i}", frames, config.fvd)) for i in range(clips))
    windows += sum(len(fvd_starts(f"cross{i}", frames, config.fvd)) for i in range(clips))
    faces = math.ceil(own / step) + math.ceil(frames / step)
    items = {
        "LPIPS": clips * (own + max(own - 1, 0) + frames - 1),  # self LPIPS, tLP's generated steps
        "Inception": clips * (own + frames),
        "I3D": windows,
        "ArcFace": clips * faces,
        "dlib": clips * faces,
        "FaceMesh": clips * 2 * (frames + 1),  # each whole video, its frame 0 fed twice
    }
    if ground_truth:
        every = len(set(range(1, frames, step)) | set(range(0, frames, step)))  # self, leakage and source frames
        truth = {"LPIPS": frames - 1, "Inception": frames, "ArcFace": every, "dlib": every, "FaceMesh": frames + 1}
        items = {key: value + clips * truth.get(key, 0) for key, value in items.items()}
        items["I3D"] += windows  # the real windows of every task
    return items


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def metric_speed_lines(speed: MetricSpeed, config: EvalConfig | None = None) -> list[str]:
    """The rates and the projections as printed lines (bench/gpu_smoke.py prints them too)."""
    config = config or EvalConfig(size=speed.size)
    dtype = dtype_name(speed.precision.dtype)
    lines = [
        f"  metric networks on {speed.precision.device} {dtype}, {speed.threads} CPU threads "
        f"({allowed_cpus()} allowed), {speed.size} px frames, ArcFace via {speed.arcface_provider}",
        f"  {'network':<21}{'item':<19}{'items/s':>9}{'frames/s':>10}{'batch':>7}",
    ]
    for key, rate in speed.rates.items():
        network = speed.networks[key]
        batch = str(network.batch) if network.batch else "-"
        lines.append(
            f"  {network.name:<21}{network.unit:<19}{rate:>9.2f}{rate * network.frames_per_item:>10.2f}{batch:>7}"
        )
    lines += [
        "  projected metric cost of one method's run, self + cross, with one cross pair per clip (rp-data split",
        f"  draws the pairs as a derangement of the clips) and cross FID's real set; identity_every="
        f"{config.identity_every}, FVD {config.fvd.windows_per_video} windows x {len(config.fvd.seeds)} seeds "
        "over whole videos;",
        "  the first method's run also computes the ground truth once per clip, every later method's run reads",
        "  it from the cache (eval.ground_truth);",
        "  ArcFace's figure is the stand-in's (landmarks and alignment included), the real ResNet-50 costs more:",
    ]
    header = "".join(f"{key:>11}" for key in speed.rates)
    lines.append("  " + f"{'clips x frames, run':<26}" + header + f"{'total':>11}")
    for clips, frames in SCALES:
        for first, which in ((True, "first"), (False, "later")):
            items = network_items(config, clips, frames, ground_truth=first)
            seconds = {key: items[key] / rate for key, rate in speed.rates.items()}
            cells = "".join(f"{duration(value):>11}" for value in seconds.values())
            lines.append(f"  {f'{clips} x {frames}, {which}':<26}{cells}{duration(sum(seconds.values())):>11}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", help="torch device for the metric networks (default: cuda when present, else cpu)")
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), help="autocast precision (default: fp32)")
    parser.add_argument("--size", type=int, default=512, help="side of the evaluation frames in pixels")
    parser.add_argument("--quick", action="store_true", help="one timed call per network instead of three")
    args = parser.parse_args()
    try:
        precision = metric_precision(args.device, args.dtype)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"Metric speed, {args.size} px, test-made weights of the real architectures")
    print("\n".join(metric_speed_lines(measure_metric_speed(precision, args.size, args.quick))))


if __name__ == "__main__":
    main()
