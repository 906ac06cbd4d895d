"""One command for a user with one GPU: does the whole model stack run there, and how well?

    python bench/gpu_smoke.py                 # needs CUDA: it refuses to fall back to the CPU
    python bench/gpu_smoke.py --device cpu    # the same code on the CPU, on purpose (CI runs this)

On a GPU it runs the `paper` preset at the paper's per-GPU micro-batch: stage 1 (image mode, 512 px) at
8 clips (batch 32 over 4 A100s) and stage 2 (video mode, L=16, 512 px) at 1 clip (batch 4 over 4), with
gradient checkpointing as stage1.yaml has it. When stage 1's 8 does not fit, it halves the micro-batch
until it does and says so. On the CPU it runs the `tiny` preset (128 px, L=4, micro-batch 1) so that CI
stays fast; its figures are labelled as not the paper's. The parts:
1. training: `deepspeed --num_gpus 1 training/train.py` for a few steps of stage 1 (image mode, its
   temporal layers frozen as in stage1.yaml) and stage 2 (video mode) in `--dtype` (bf16 by default),
   ZeRO-2, on the sample build;
2. cached sampling: the trained model's guided DDIM steps with and without the reference and
   null-condition caches, under autocast on the device, and the largest difference between the two;
3. `rp-animate` on a sample clip (its first 16 frames on a GPU, 8 on the CPU) with the trained model, in
   its own process;
4. on a GPU only, the metric networks' speed and a run's projected metric cost (`bench/eval_speed.py`).

and prints, per part: peak memory (CUDA's peak allocation on a GPU, the peak RSS of the process doing
the work on the CPU), throughput (training samples/s, sampling s/step, animated frames/s) and the model
FLOP utilisation (MFU) of the training step: the FLOPs the step needs (`bench/model_flops.py`: a frozen
layer's backward is its input gradient only; checkpointing's recomputation is not counted) at the
measured samples/s, over the datasheet's dense bf16 peak (A100, H100, H200, L40S: `bench/bf16_peak.py`)
and over a bf16 matmul peak measured on the device in this run.

Without a usable GPU it stops and says why (torch's CUDA build against the NVIDIA driver's version), unless
`--device cpu` asks for the CPU.

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
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from diffusers import AutoencoderKL

# Run as a script from bench/: put the repository first so `model` is the package.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bf16_peak import datasheet_for, measured_bf16_peak, plan_for  # noqa: E402
from bench.cuda_setup import driver_version, no_cuda_reason  # noqa: E402
from bench.model_flops import denoiser_step_flops, vae_encode_flops  # noqa: E402
from bench.sampling_cache import measure_mode  # noqa: E402
from model.precision import Precision, add_precision_arguments, peak_memory_bytes  # noqa: E402
from model.realportrait import PRESETS, RealPortrait  # noqa: E402
from model.vae import SD15_VAE_CONFIG  # noqa: E402
from training.config import load_config  # noqa: E402
from training.loss_curves import logged_scalars  # noqa: E402

BIN = Path(sys.executable).parent
GIB = 2**30
DRIVING_CLIP = Path("celebvhq/downloaded_celebvhq/processed/-xU_9kQ2mZ0_1.mp4")  # in the embedded sample
SOURCE_IMAGE = Path("celeba/Img/img_celeba/000001.jpg")
OUT_OF_MEMORY = ("OutOfMemoryError", "out of memory")  # torch's CUDA OOM, as it lands in the training log


@dataclass(frozen=True)
class Plan:
    """What the training part runs: a preset at a resolution, per stage a micro-batch and a clip length."""

    preset: str
    resolution: int
    stage1_batch: int
    stage2_batch: int
    stage2_frames: int
    checkpointing: bool

    @property
    def paper(self) -> bool:
        return self.preset == "paper"


# the paper's per-GPU micro-batches (stage1.yaml: 32 over 4 A100s; stage2.yaml: 4 over 4, L=16), at 512 px
PAPER_PLAN = Plan("paper", 512, stage1_batch=8, stage2_batch=1, stage2_frames=16, checkpointing=True)
CPU_PLAN = Plan(
    "tiny", 8 * PRESETS["tiny"].latent_size, stage1_batch=1, stage2_batch=1, stage2_frames=4, checkpointing=False
)


def launch(command: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Runs `command`, its output to `log`; returns its exit code."""
    with log.open("w") as out:
        return subprocess.run(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env).returncode


def failed(command: list[str], code: int, log: Path) -> SystemExit:
    tail = log.read_text(errors="replace")[-4000:]
    return SystemExit(f"gpu_smoke: `{' '.join(command[:3])} ...` failed (exit {code}); {log}:\n{tail}")


def run(command: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Runs `command`, its output to `log`; returns its wall seconds. A failure shows the log's end."""
    start = time.perf_counter()
    code = launch(command, log, env)
    if code != 0:
        raise failed(command, code, log)
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


def training_config(out: Path, build: Path, vae: Path, dtype: str, steps: int, plan: Plan) -> Path:
    """The shipped tiny config's structure with the plan's model, sizes and micro-batches, on one GPU: both
    stages, a few steps, stage 1 with stage1.yaml's frozen layers (a stage list replaces the base's whole)."""
    precision = {"bf16": "bf16", "fp32": "fp32"}.get(dtype)
    if precision is None:
        raise SystemExit(f"gpu_smoke: training runs in bf16 or fp32 (DeepSpeed's mixed precision), not {dtype}")
    stage = {"resolution": plan.resolution, "optimizer": {"warmup_steps": 0}}
    paper_stage1 = yaml.safe_load((REPO / "training" / "configs" / "stage1.yaml").read_text())["stages"][0]
    one = {"global_batch": plan.stage1_batch, "micro_batch": plan.stage1_batch, "frozen": paper_stage1["frozen"]}
    two = {"global_batch": plan.stage2_batch, "micro_batch": plan.stage2_batch, "num_frames": plan.stage2_frames}
    settings = {
        "base": str(REPO / "training" / "configs" / "tiny.yaml"),
        "output_dir": str(out / "run"),
        "precision": precision,
        "data": {"build_dir": str(build), "heldout_split": None},
        "vae": {"path": str(vae)},
        "model": {"preset": plan.preset, "gradient_checkpointing": plan.checkpointing},
        "checkpoint": {"every": 1000},
        "validation": {"pairs": 0},
        "stages": [
            {**stage, **one, "name": "stage1", "mode": "image", "steps": steps},
            {**stage, **two, "name": "stage2", "mode": "video", "init_from": "stage1", "steps": steps},
        ],
    }
    path = out / "smoke.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def train(out: Path, config: Path, device: torch.device) -> int:
    """Both stages in one DeepSpeed launch; returns its exit code (the log is out/train.log)."""
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
    start = time.perf_counter()
    code = launch([*launcher, str(REPO / "training" / "train.py"), "--config", str(config)], out / "train.log", env)
    if code == 0:
        print(
            f"      trained both stages in {time.perf_counter() - start:.0f} s (log: {out / 'train.log'})", flush=True
        )
    return code


def train_largest_fitting(
    out: Path, build: Path, vae: Path, dtype: str, steps: int, plan: Plan, device: torch.device
) -> tuple[Plan, Path]:
    """Trains at the plan's micro-batches; when stage 1 runs out of device memory, halves its micro-batch
    and tries again, down to 1. Returns the plan that ran and its config."""
    device_plan = plan
    while True:
        config = training_config(out, build, vae, dtype, steps, device_plan)
        code = train(out, config, device)
        if code == 0:
            return device_plan, config
        log = out / "train.log"
        text = log.read_text(errors="replace")
        stage1_done = (out / "run" / "stage1" / "export").exists()
        if not any(marker in text for marker in OUT_OF_MEMORY) or stage1_done or device_plan.stage1_batch == 1:
            if any(marker in text for marker in OUT_OF_MEMORY):
                stage = "stage 2" if stage1_done else "stage 1"
                print(f"      {stage} does not fit on this device even at micro-batch 1", flush=True)
            raise failed(["deepspeed", "training/train.py", "--config"], code, log)
        smaller = device_plan.stage1_batch // 2
        print(
            f"      stage 1 at micro-batch {device_plan.stage1_batch} ran out of device memory; trying {smaller}",
            flush=True,
        )
        device_plan = Plan(**{**device_plan.__dict__, "stage1_batch": smaller})


def flop_text(flops: float, per_second: bool = False) -> str:
    """TFLOP on a GPU's scale, GFLOP on the CPU's, so that neither prints as 0.000."""
    unit, scale = ("TFLOP", 1e12) if flops >= 1e11 else ("GFLOP", 1e9)
    return f"{flops / scale:.3f} {unit}{'/s' if per_second else ''}"


def median_rate(rates: list[float]) -> tuple[float, str]:
    """The steady samples/s (the first step, which includes warm-up, left out) and what it is."""
    if len(rates) > 1:
        return statistics.median(rates[1:]), f"median of {len(rates) - 1} step(s) after the first"
    return rates[0], "the only step, warm-up included (run --steps 2 or more for a steady figure)"


def training_report(out: Path, config_path: Path, plan: Plan, peaks: dict[str, float]) -> list[str]:
    """Per stage: samples/s, peak memory and MFU over each peak in `peaks` (label -> FLOP/s)."""
    config = load_config(config_path)
    latent = plan.resolution // 8
    lines = []
    for stage, batch, frames in (
        (config.stages[0], plan.stage1_batch, 1),
        (config.stages[1], plan.stage2_batch, plan.stage2_frames),
    ):
        logs = out / "run" / "tensorboard" / stage.name
        rates = logged_scalars(logs, "train/samples_per_second")[1]
        memory = logged_scalars(logs, "train/peak_memory_gib")[1]
        if not rates or not memory:
            raise SystemExit(f"gpu_smoke: {logs} has no train/samples_per_second or train/peak_memory_gib")
        rate, which = median_rate(rates)
        model = denoiser_step_flops(plan.preset, stage, batch, frames, latent)
        vae = vae_encode_flops(config.vae.path, batch * (frames + 1), plan.resolution)
        achieved = rate * (model + vae) / batch
        shares = ", ".join(f"{achieved / peak:.1%} of {label}" for label, peak in peaks.items())
        lines.append(
            f"  training {stage.name} (micro-batch {batch}, L={frames}, {plan.resolution} px): {rate:.2f} samples/s "
            f"({which}), peak memory {max(memory):.2f} GiB; step {flop_text(model + vae)} "
            f"(denoiser {flop_text(model)} + VAE encode {flop_text(vae)}), {flop_text(achieved, True)} = MFU {shares}"
        )
    return lines


def sampling_report(out: Path, precision: Precision, plan: Plan) -> list[str]:
    """Cached against uncached guided steps of the trained model, on the device: image mode (where the
    caches save most), and on a GPU video mode too (on the CPU it would cost minutes of CI for a figure
    `bench/sampling_cache.py` already gives)."""
    model = RealPortrait.from_pretrained(out / "run" / "stage2" / "export", low_cpu_mem_usage=False)
    model = model.to(precision.device).eval()
    lengths = (1, plan.stage2_frames) if precision.device.type == "cuda" else (1,)
    lines = []
    for frames in lengths:
        timings = measure_mode(model, frames, plan.resolution // 8, steps=2, repeats=1, precision=precision)
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


def resolve_precision(parser: argparse.ArgumentParser, device: str | None, dtype: str | None) -> Precision:
    """`--device`/`--dtype`, with no silent CPU fallback: without a usable GPU only `--device cpu` runs."""
    wants_cuda = device is None or device.startswith("cuda")
    if wants_cuda and not torch.cuda.is_available():
        reason = no_cuda_reason(torch.version.cuda, driver_version())
        raise SystemExit(
            f"gpu_smoke: torch sees no CUDA device: {reason}. This smoke test measures a GPU and does not fall "
            "back to the CPU; pass --device cpu to run it on the CPU on purpose."
        )
    try:
        precision = Precision.resolve(device, dtype)
    except ValueError as exc:
        parser.error(str(exc))
    if dtype is None and precision.device.type == "cpu":
        precision = Precision(precision.device, torch.bfloat16)  # the point is the bf16 path: the CPU runs it too
    return precision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_precision_arguments(parser)
    parser.add_argument("--out", type=Path, default=REPO / ".cache" / "gpu_smoke", help="work folder (reused)")
    parser.add_argument("--build", type=Path, help="a build folder (default: the sample, built into --out)")
    parser.add_argument("--vae", type=Path, help="SD1.5 VAE folder (default: a stand-in with random weights)")
    parser.add_argument(
        "--steps", type=int, default=2, help="training steps per stage; the first includes warm-up (default 2)"
    )
    parser.add_argument("--frames", type=int, help="driving frames rp-animate animates (default: 16 on CUDA, 8 on CPU)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    precision = resolve_precision(parser, args.device, args.dtype)
    dtype = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}[precision.dtype]
    cuda = precision.device.type == "cuda"
    plan = PAPER_PLAN if cuda else CPU_PLAN
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    print(f"gpu_smoke: `{plan.preset}` on {precision.device} in {dtype}, work folder {args.out}", flush=True)
    build, sample = sample_build(args.out, args.build)
    vae = args.vae if args.vae is not None else stand_in_vae(args.out)
    print(f"[2/4] training both stages, {args.steps} steps each (deepspeed --num_gpus 1, ZeRO-2)", flush=True)
    ran, config = train_largest_fitting(args.out, build, vae, dtype, args.steps, plan, precision.device)
    name = torch.cuda.get_device_name(precision.device) if cuda else "cpu"
    peak_plan = plan_for(precision.device)
    measured = measured_bf16_peak(precision.device, peak_plan)
    peaks = {"the measured bf16 peak": measured}
    report = [f"  bf16 peak measured ({peak_plan.describe(precision.device)}): {flop_text(measured, True)}"]
    datasheet = datasheet_for(name) if cuda else None
    if datasheet is not None:
        peaks = {f"the {datasheet.name} datasheet's dense bf16 peak": datasheet.bf16_flops, **peaks}
        report.insert(
            0, f"  bf16 peak of the {datasheet.name} datasheet (dense): {flop_text(datasheet.bf16_flops, True)}"
        )
    if cuda and datasheet is None:
        report.append(f"  (no datasheet entry for {name!r}: MFU is over the measured peak only)")
    if ran.paper and ran != plan:
        report.append(
            f"  stage 1 did not fit at the paper's micro-batch {plan.stage1_batch}: measured at "
            f"{ran.stage1_batch}, the largest that fits on this device"
        )
    if not ran.paper:
        report.append(
            f"  (the CPU runs the `{ran.preset}` preset at {ran.resolution} px, stage 2 at L={ran.stage2_frames}, "
            "micro-batch 1, to keep CI fast: NOT the paper's figure; a GPU runs the `paper` preset at 512 px, "
            "micro-batches 8 and 1, L=16)"
        )
        report.append("  (a CPU without native bf16 emulates the model and the matmul alike: the shares mean little)")
    report += training_report(args.out, config, ran, peaks)
    print("[3/4] cached sampling", flush=True)
    report += sampling_report(args.out, precision, ran)
    print(f"[4/4] rp-animate on {DRIVING_CLIP.name}", flush=True)
    frames = args.frames or (16 if cuda else 8)
    report += animate_report(args.out, sample, vae, precision, dtype, frames)
    if cuda:
        print("[+] metric networks (bench/eval_speed.py)", flush=True)
        report += metric_report(args.device, args.dtype)
    else:
        report.append("  (metric network speed: GPU only here; `python bench/eval_speed.py` measures it on the CPU)")
    print(f"\ngpu_smoke on {name} ({dtype}), {time.perf_counter() - began:.0f} s in all:")
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
