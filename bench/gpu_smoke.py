"""One command for a user with one GPU: does the whole model stack run there, and how well?

    python bench/gpu_smoke.py                 # CUDA in bf16 when present
    python bench/gpu_smoke.py --device cpu    # the same code on the CPU (CI runs this; a few minutes)

It runs, on the `small` preset (8 blocks of width 576, 256 px, 4-frame clips):
1. training: `deepspeed --num_gpus 1 training/train.py` for a few steps of stage 1 (image mode) and
   stage 2 (video mode) in `--dtype` (bf16 by default on CUDA), ZeRO-2, on the sample build;
2. cached sampling: the trained model's guided DDIM steps with and without the reference and
   null-condition caches, under autocast on the device, and the largest difference between the two;
3. `rp-animate` on a sample clip (its first 16 frames on a GPU, 8 on the CPU) with the trained model, in
   its own process;
4. on a GPU only, the metric networks' speed and a run's projected metric cost (`bench/eval_speed.py`).

and prints, per part: peak memory (CUDA's peak allocation on a GPU, the peak RSS of the process doing
the work on the CPU), throughput (training samples/s, sampling s/step, animated frames/s) and the share
of the device's bf16 peak that the training step reaches. The bf16 peak is a large bf16 matmul timed on
the device in this run (and, for an A100 or H100, the datasheet figure as well), so the share is a ratio
of two measurements on the same device, not of a measurement and a guess.

The inputs are real: the sample dataset built by `rp-data build --sample` (or `--build`, a build of
yours), and the VAE given by `--vae` (the SD1.5 VAE on a real machine). Without `--vae` a stand-in
is made: a diffusers `AutoencoderKL` with the SD1.5 architecture at narrow widths and random weights,
saved with `save_pretrained`. It costs little, so memory and speed are the model's; the animated video
is noise either way, since a few training steps teach nothing: this is a smoke test, not a demo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from diffusers import AutoencoderKL

# Run as a script from bench/: put the repository first so `model` is the package.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.sampling_cache import measure_mode  # noqa: E402
from model.costs import ClipShape, ModelSizes, training_step_flops  # noqa: E402
from model.precision import Precision, add_precision_arguments, peak_memory_bytes  # noqa: E402
from model.realportrait import PRESETS, RealPortrait  # noqa: E402
from model.vae import SD15_VAE_CONFIG  # noqa: E402
from training.loss_curves import logged_scalars  # noqa: E402

PRESET = "small"
BIN = Path(sys.executable).parent
GIB = 2**30
DATASHEET_BF16 = {"A100": 312e12, "H100": 989e12}  # dense bf16 tensor-core peaks, FLOP/s
DRIVING_CLIP = Path("celebvhq/downloaded_celebvhq/processed/-xU_9kQ2mZ0_1.mp4")  # in the embedded sample
SOURCE_IMAGE = Path("celeba/Img/img_celeba/000001.jpg")
MATMUL = 2048


def run(command: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Runs `command`, its output to `log`; returns its wall seconds. A failure shows the log's end."""
    start = time.perf_counter()
    with log.open("w") as out:
        result = subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise SystemExit(f"gpu_smoke: `{' '.join(command[:3])} ...` failed (exit {result.returncode}); {log}:\n{tail}")
    return time.perf_counter() - start


def sample_build(out: Path, build: Path | None) -> tuple[Path, Path]:
    """(build folder, sample dataset folder): `--build` if given, else the embedded sample, built once."""
    sample = out / "sample"
    if build is None:
        build = out / "build"
        if not any(build.glob("shards/*.stats.json")):  # a committed build has its stats files
            print(f"[1/4] building the sample dataset into {build} (rp-data build --sample)", flush=True)
            run(
                [str(BIN / "rp-data"), "build", "--sample", "--sample-dir", str(sample), "--out", str(build)],
                out / "build.log",
            )
    elif not (sample / DRIVING_CLIP).exists():  # a build of yours: the driving clip still comes from the sample
        run([str(BIN / "rp-data"), "sample", "--out", str(sample)], out / "sample.log")
    return build, sample


def stand_in_vae(out: Path) -> Path:
    path = out / "vae-stand-in"
    if not (path / "config.json").exists():
        torch.manual_seed(0)
        narrow = {**SD15_VAE_CONFIG, "block_out_channels": [16, 16, 32, 32], "norm_num_groups": 8}
        AutoencoderKL(**narrow).save_pretrained(path)
    return path


def training_config(out: Path, build: Path, vae: Path, dtype: str, steps: int) -> Path:
    """The shipped tiny config's structure with the `small` model at its size: both stages, a few steps."""
    precision = {"bf16": "bf16", "fp32": "fp32"}.get(dtype)
    if precision is None:
        raise SystemExit(f"gpu_smoke: training runs in bf16 or fp32 (DeepSpeed's mixed precision), not {dtype}")
    spec = PRESETS[PRESET]
    resolution = spec.latent_size * 8
    stage = {"resolution": resolution, "global_batch": 1, "micro_batch": 1, "optimizer": {"warmup_steps": 0}}
    settings = {
        "base": str(REPO / "training" / "configs" / "tiny.yaml"),
        "output_dir": str(out / "run"),
        "precision": precision,
        "data": {"build_dir": str(build), "heldout_split": None},
        "vae": {"path": str(vae)},
        "model": {"preset": PRESET},
        "checkpoint": {"every": 1000},
        "validation": {"pairs": 0},
        "stages": [
            {**stage, "name": "stage1", "mode": "image", "steps": steps},
            {
                **stage,
                "name": "stage2",
                "mode": "video",
                "init_from": "stage1",
                "steps": steps,
                "num_frames": spec.num_frames,
            },
        ],
    }
    path = out / "smoke.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def train(out: Path, config: Path, device: torch.device) -> None:
    shutil.rmtree(out / "run", ignore_errors=True)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        # DeepSpeed JIT-builds its CPU all-reduce op once per checkout (as the tests do), not once per launch
        "TORCH_EXTENSIONS_DIR": str(REPO / ".cache" / "torch_extensions"),
    }
    if device.type == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
    launcher = [str(BIN / "deepspeed"), "--num_gpus", "1", "--master_port", str(29_500 + os.getpid() % 1000)]
    seconds = run([*launcher, str(REPO / "training" / "train.py"), "--config", str(config)], out / "train.log", env)
    print(f"      trained both stages in {seconds:.0f} s (log: {out / 'train.log'})", flush=True)


def bf16_matmul_peak(device: torch.device) -> float:
    """FLOP/s of a large bf16 matmul on `device`: the achievable bf16 peak the training share is taken of."""
    a = torch.randn(MATMUL, MATMUL, device=device, dtype=torch.bfloat16)
    b = torch.randn(MATMUL, MATMUL, device=device, dtype=torch.bfloat16)
    times = []
    for _ in range(8):
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * MATMUL**3 / statistics.median(times[1:])


def training_report(out: Path, peak: float, datasheet: float | None) -> list[str]:
    with torch.device("meta"):
        sizes = ModelSizes.from_config(RealPortrait.from_preset(PRESET).config)
    spec = PRESETS[PRESET]
    lines = []
    for name, frames in (("stage1", 1), ("stage2", spec.num_frames)):
        logs = out / "run" / "tensorboard" / name
        rates = logged_scalars(logs, "train/samples_per_second")[1][1:]  # the first step includes warm-up
        memory = logged_scalars(logs, "train/peak_memory_gib")[1]
        if not rates or not memory:
            raise SystemExit(f"gpu_smoke: {logs} has no train/samples_per_second or train/peak_memory_gib")
        per_sample = training_step_flops(
            sizes, ClipShape(1, frames, spec.latent_size, spec.latent_size), checkpointing=False
        )
        achieved = statistics.median(rates) * per_sample
        share = f"{achieved / peak:.1%} of the measured bf16 matmul peak"
        if datasheet is not None:
            share += f", {achieved / datasheet:.1%} of the datasheet"
        lines.append(
            f"  training {name} (L={frames}): {statistics.median(rates):.2f} samples/s, peak memory "
            f"{max(memory):.2f} GiB, {achieved / 1e12:.3f} TFLOP/s = {share}"
        )
    return lines


def sampling_report(out: Path, precision: Precision) -> list[str]:
    """Cached against uncached guided steps of the trained model, on the device: image mode (where the
    caches save most), and on a GPU video mode too (on the CPU it would cost minutes of CI for a figure
    `bench/sampling_cache.py` already gives)."""
    model = RealPortrait.from_pretrained(out / "run" / "stage2" / "export", low_cpu_mem_usage=False)
    model = model.to(precision.device).eval()
    spec = PRESETS[PRESET]
    lengths = (1, spec.num_frames) if precision.device.type == "cuda" else (1,)
    lines = []
    for frames in lengths:
        timings = measure_mode(model, frames, spec.latent_size, steps=2, repeats=1, precision=precision)
        lines.append(
            f"  cached sampling (L={frames}, guidance 2/1, 3 passes a step): {timings.cached_step:.3f} s/step "
            f"cached, {timings.uncached_step:.3f} uncached ({timings.speedup_at_paper_steps:.2f}x at 50 steps, "
            f"{timings.saved_flop_share:.0%} of a step's FLOPs saved); max |cached - uncached| {timings.difference:.1e}"
        )
    memory = peak_memory_bytes(precision.device) / GIB
    return [*lines, f"  sampling peak memory {memory:.2f} GiB (this process, training excluded)"]


ANIMATE_CHILD = """
import json, resource, sys, time
import torch
from model.animate_cli import main
start = time.perf_counter()
code = main(sys.argv[1:])
device = sys.argv[sys.argv.index("--device") + 1]
peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else (
    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(json.dumps({"code": code, "seconds": time.perf_counter() - start, "peak": peak}))
"""


def animate_report(out: Path, sample: Path, vae: Path, precision: Precision, dtype: str, frames: int) -> list[str]:
    """`rp-animate` (its own `main`) in a child process, so that its peak memory is its own."""
    video = out / "animated.mp4"
    arguments = [
        "--checkpoint", str(out / "run" / "stage2" / "export"), "--vae", str(vae),
        "--source", str(sample / SOURCE_IMAGE), "--driving", str(sample / DRIVING_CLIP), "--out", str(video),
        "--side-by-side", str(out / "animated_sbs.mp4"), "--steps", "2", "--max-frames", str(frames),
        "--device", str(precision.device), "--dtype", dtype, "--no-progress",
    ]  # fmt: skip
    log = out / "animate.log"
    run([sys.executable, "-c", ANIMATE_CHILD, *arguments], log)
    result = json.loads(log.read_text().strip().splitlines()[-1])
    if result["code"] != 0 or not video.exists():
        raise SystemExit(f"gpu_smoke: rp-animate failed; see {log}")
    return [
        f"  rp-animate ({frames} driving frames, 2 DDIM steps): {frames / result['seconds']:.2f} frames/s including "
        f"start-up ({result['seconds']:.0f} s), peak memory {result['peak'] / GIB:.2f} GiB; wrote {video}"
    ]


def metric_report(device: str | None, dtype: str | None) -> list[str]:
    """The metric networks' speed on the GPU at 512 px (`bench/eval_speed.py`), in the metrics' own
    precision: fp32 unless --dtype was given."""
    from bench.eval_speed import measure_metric_speed, metric_speed_lines
    from eval.compute import metric_precision

    return metric_speed_lines(measure_metric_speed(metric_precision(device, dtype), quick=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_precision_arguments(parser)
    parser.add_argument("--out", type=Path, default=REPO / ".cache" / "gpu_smoke", help="work folder (reused)")
    parser.add_argument("--build", type=Path, help="a build folder (default: the sample, built into --out)")
    parser.add_argument("--vae", type=Path, help="SD1.5 VAE folder (default: a stand-in with random weights)")
    parser.add_argument("--steps", type=int, default=2, help="training steps per stage (the first is warm-up)")
    parser.add_argument("--frames", type=int, help="driving frames rp-animate animates (default: 16 on CUDA, 8 on CPU)")
    args = parser.parse_args(argv)
    try:
        precision = Precision.resolve(args.device, args.dtype)
    except ValueError as exc:
        parser.error(str(exc))
    dtype = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}[precision.dtype]
    if args.dtype is None and precision.device.type == "cpu":
        dtype = "bf16"  # the point is the bf16 path: run it on the CPU too (autocast)
        precision = Precision(precision.device, torch.bfloat16)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    print(f"gpu_smoke: `{PRESET}` on {precision.device} in {dtype}, work folder {args.out}", flush=True)
    build, sample = sample_build(args.out, args.build)
    vae = args.vae if args.vae is not None else stand_in_vae(args.out)
    print(f"[2/4] training both stages, {args.steps} steps each (deepspeed --num_gpus 1, ZeRO-2)", flush=True)
    train(args.out, training_config(args.out, build, vae, dtype, args.steps), precision.device)
    name = torch.cuda.get_device_name(precision.device) if precision.device.type == "cuda" else "cpu"
    datasheet = next((flops for key, flops in DATASHEET_BF16.items() if key in name), None)
    report = training_report(args.out, bf16_matmul_peak(precision.device), datasheet)
    if precision.device.type == "cpu":
        report.append("  (a CPU without native bf16 emulates the model and the matmul alike: the share means little)")
    print("[3/4] cached sampling", flush=True)
    report += sampling_report(args.out, precision)
    print(f"[4/4] rp-animate on {DRIVING_CLIP.name}", flush=True)
    frames = args.frames or (16 if precision.device.type == "cuda" else 8)
    report += animate_report(args.out, sample, vae, precision, dtype, frames)
    if precision.device.type == "cuda":
        print("[+] metric networks (bench/eval_speed.py)", flush=True)
        report += metric_report(args.device, args.dtype)
    print(f"\ngpu_smoke on {name} ({dtype}), {time.perf_counter() - began:.0f} s in all:")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
