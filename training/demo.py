"""`make demo-train`: the whole stack learning motion transfer on a CPU, from the sample build of `make demo`.

The fastest way to trust the code before spending GPU weeks is to watch every real component work
together on frames the model never saw. One command, in about 20 minutes on 2 cores:

1. trains the demo's stand-in VAE (`training.train_vae`, training/configs/demo_vae.yaml; NOT the
   paper's SD1.5 VAE, which training uses whenever `vae.path` points to it);
2. trains the tiny model through both stages with `deepspeed --num_gpus 2` (training/configs/demo.yaml),
   holding out the sample's evaluation split (manifests/splits/sample.json);
3. animates a held-out self-reenactment task and a held-out cross-reenactment task with `rp-animate`,
   each into a labelled side-by-side video (source | driving | ours, every panel enlarged to 256 px from
   the model's 64) and a contact sheet, then puts both sheets in one picture, contact_sheet.png;
4. evaluates ours, source-copy and landmark-warp with `rp-eval run` on that split at the demo's
   resolution (training/configs/demo_eval.yaml), then writes the tables with `rp-eval table`;
5. plots the loss curves of both stages, and prints where everything is.

Every step runs the command a user would run, as a child process, with its own progress bar; each
step's full output is also kept in `<out>/logs/`. The demo always starts afresh (its folder is
replaced); `--smoke` runs the same steps with every size cut to seconds, as `make test` does.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import os
import pty
import shutil
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.views import titled_stack
from training.config import CONFIG_DIR
from training.loss_curves import plot_loss_curves

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SPLIT = REPO / "manifests" / "splits" / "sample.json"
VAE_CONFIG = CONFIG_DIR / "demo_vae.yaml"
TRAIN_CONFIG = CONFIG_DIR / "demo.yaml"
EVAL_CONFIG = CONFIG_DIR / "demo_eval.yaml"
BASELINES = ("source-copy", "landmark-warp")
# The animation's inputs are exported at this size so that rp-animate finds and crops the face itself, as
# it does for a user's photo; the model then works at its own 64 px.
ANIMATION_INPUT_SIZE = 256
# The animations are for a person to judge: a 64 px frame is too small to see, so every panel is enlarged.
PANEL_SIZE = 256
LABELS = "source,driving,ours"
PROTOCOLS = ("self", "cross")  # one held-out task of each, animated in this order and stacked so in the sheet
# Seconds-long versions of each step, for the test suite: same commands, same files, tiny sizes.
SMOKE = {
    "vae": ["steps=4", "batch_size=2", "crops_per_image=1"],
    "train": [
        "stages.stage1.steps=2",
        "stages.stage2.steps=2",
        "checkpoint.every=1000",
        "validation.pairs=0",
        "logging.every=1",
    ],
    "eval": ["max_frames=18", "identity_every=3"],  # as the eval tests: 18 frames find a face in every clip
    "sampling_steps": 2,
}


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo writes: one folder, so a rerun replaces it whole."""

    out: Path

    @property
    def vae(self) -> Path:
        return self.out / "vae"

    @property
    def run(self) -> Path:
        return self.out / "run"

    @property
    def checkpoint(self) -> Path:
        return self.run / "stage2" / "export"

    @property
    def inputs(self) -> Path:
        return self.out / "animation_inputs"

    def animation(self, protocol: str) -> Path:
        return self.out / f"animation_{protocol}.mp4"

    def side_by_side(self, protocol: str) -> Path:
        return self.out / f"animation_{protocol}_side_by_side.mp4"

    def task_sheet(self, protocol: str) -> Path:
        return self.out / f"contact_sheet_{protocol}.png"

    @property
    def contact_sheet(self) -> Path:
        return self.out / "contact_sheet.png"

    def eval_run(self, name: str) -> Path:
        return self.out / "eval" / name

    @property
    def tables(self) -> Path:
        return self.out / "tables"

    @property
    def loss_curves(self) -> Path:
        return self.out / "loss_curves.png"

    @property
    def logs(self) -> Path:
        return self.out / "logs"


class StepFailed(RuntimeError):
    """A step's command failed: the message names the command and the log holding its whole output."""


def run_step(command: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Runs `command` with its output on the terminal and in `log`; returns seconds. On a terminal the child
    gets a pseudo-terminal of the same size, so its progress bars draw live as when it is run by hand."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("wb") as kept:
        if sys.stdout.isatty():
            leader, follower = pty.openpty()
            fcntl.ioctl(follower, termios.TIOCSWINSZ, fcntl.ioctl(sys.stdout.fileno(), termios.TIOCGWINSZ, bytes(8)))
            child = subprocess.Popen(
                command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower
            )
            os.close(follower)
            chunks = iter(lambda: read_terminal(leader), b"")
        else:
            leader = -1
            child = subprocess.Popen(
                command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            assert child.stdout is not None
            chunks = iter(lambda: child.stdout.read1(4096), b"")  # type: ignore[union-attr]
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            kept.write(chunk)
        child.wait()
        if leader >= 0:
            os.close(leader)
    if child.returncode != 0:
        raise StepFailed(f"`{' '.join(command[:4])} ...` failed (exit {child.returncode}); its output: {log}")
    return time.monotonic() - started


def read_terminal(leader: int) -> bytes:
    """The next output of a pseudo-terminal; b"" once the child has closed it (Linux reports EIO)."""
    try:
        return os.read(leader, 4096)
    except OSError:
        return b""


def deepspeed_env() -> dict[str, str]:
    """The launcher's environment: DeepSpeed's CPU accelerator when there is no GPU, and one folder for its
    JIT-built CPU all-reduce op, built on the first run and reused after."""
    import torch

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TORCH_EXTENSIONS_DIR": str(REPO / ".cache" / "torch_extensions")}
    if not torch.cuda.is_available():
        env["DS_ACCELERATOR"] = "cpu"
        env.setdefault("OMP_NUM_THREADS", "1")  # two ranks on two cores: one thread each, no oversubscription
    return env


def held_out_task(inputs: Path, protocol: str) -> dict[str, str]:
    """The first usable task of `protocol` in `rp-eval inputs`' tasks.csv: for "self" a held-out clip driving
    its own first frame (the driver is the ground truth), for "cross" a held-out source and another
    held-out driver (identity has to be kept, not copied)."""
    with open(inputs / "tasks.csv", encoding="utf-8") as handle:
        tasks = [row for row in csv.DictReader(handle) if row["protocol"] == protocol and not row["problem"]]
    if not tasks:
        raise StepFailed(f"{inputs / 'tasks.csv'}: no {protocol}-reenactment task to animate")
    return tasks[0]


def combine_sheets(paths: DemoPaths, tasks: dict[str, dict[str, str]]) -> None:
    """One picture of every task's contact sheet, each under its protocol and task id, to judge both at once."""
    sheets = []
    for protocol, task in tasks.items():
        with Image.open(paths.task_sheet(protocol)) as sheet:
            sheets.append((f"{protocol}-reenactment: {task['task_id']}", np.asarray(sheet.convert("RGB"))))
    Image.fromarray(titled_stack(sheets, PANEL_SIZE)).save(paths.contact_sheet, format="PNG")


def eval_arguments(build_sample: Path, paths: DemoPaths, smoke: bool) -> list[str]:
    sets = [item for value in (SMOKE["eval"] if smoke else []) for item in ("--set", value)]
    return ["--split", str(SPLIT), "--data-root", str(build_sample), "--config", str(EVAL_CONFIG), *sets]


def run_demo(build: Path, sample: Path, out: Path, *, smoke: bool = False, master_port: int = 29_700) -> DemoPaths:
    """Every step in order; returns the paths written. A failing step stops the demo with its log named."""
    paths = DemoPaths(out)
    if not any(build.glob("shards/*.stats.json")):
        raise StepFailed(f"{build}: no sample build here; run `make demo` first (rp-data build --sample)")
    if not (sample / "vfhq").is_dir():
        raise StepFailed(f"{sample}: not the embedded sample dataset; run `make demo` first")
    if out.exists() and any(out.iterdir()) and not paths.logs.is_dir():
        raise StepFailed(f"{out}: not empty and not an earlier demo's folder (no logs/); choose another --out")
    shutil.rmtree(out, ignore_errors=True)
    paths.logs.mkdir(parents=True)
    python = str(sys.executable)
    steps_flag = ["--steps", str(SMOKE["sampling_steps"])] if smoke else []
    timings: dict[str, float] = {}

    def step(number: int, title: str, command: list[str], log: str, env: dict[str, str] | None = None) -> None:
        print(f"\n[{number}/7] {title}", flush=True)
        timings[title] = run_step(command, paths.logs / log, env)

    step(
        1,
        "training the stand-in VAE on the sample's training frames",
        [python, "-m", "training.train_vae", "--config", str(VAE_CONFIG), f"build_dir={build}", f"out={paths.vae}"]
        + (SMOKE["vae"] if smoke else []),
        "vae.log",
    )
    step(
        2,
        "training the tiny model through both stages (deepspeed --num_gpus 2), the sample split held out",
        [
            str(BIN / "deepspeed"),
            "--num_gpus",
            "2",
            "--master_port",
            str(master_port),
            str(REPO / "training" / "train.py"),
            "--config",
            str(TRAIN_CONFIG),
            f"output_dir={paths.run}",
            f"data.build_dir={build}",
            f"vae.path={paths.vae}",
        ]
        + (SMOKE["train"] if smoke else []),
        "train.log",
        deepspeed_env(),
    )
    step(
        3,
        "exporting the held-out tasks' inputs (rp-eval inputs)",
        [
            str(BIN / "rp-eval"),
            "inputs",
            *eval_arguments(sample, paths, smoke),
            "--set",
            f"size={ANIMATION_INPUT_SIZE}",
            "--out",
            str(paths.inputs),
            "--no-progress",
        ],
        "inputs.log",
    )
    tasks = {protocol: held_out_task(paths.inputs, protocol) for protocol in PROTOCOLS}
    for protocol, task in tasks.items():
        step(
            4,
            f"animating {protocol}-reenactment task {task['task_id']} (rp-animate: side by side, contact sheet)",
            [
                str(BIN / "rp-animate"),
                "--checkpoint",
                str(paths.checkpoint),
                "--vae",
                str(paths.vae),
                "--source",
                str(paths.inputs / task["source_png"]),
                "--driving",
                str(paths.inputs / task["driving"]),
                "--out",
                str(paths.animation(protocol)),
                "--side-by-side",
                str(paths.side_by_side(protocol)),
                "--contact-sheet",
                str(paths.task_sheet(protocol)),
                "--panel-size",
                str(PANEL_SIZE),
                "--labels",
                LABELS,
                *steps_flag,
            ],
            f"animate_{protocol}.log",
        )
    combine_sheets(paths, tasks)
    ours = ["--checkpoint", str(paths.checkpoint), "--vae", str(paths.vae), *steps_flag, "--label", "ours (demo)"]
    for name, extra in (("ours", ours), *((baseline, []) for baseline in BASELINES)):
        step(
            5,
            f"evaluating {name} on the held-out split (rp-eval run)",
            [
                str(BIN / "rp-eval"),
                "run",
                *eval_arguments(sample, paths, smoke),
                "--method",
                name,
                "--out",
                str(paths.eval_run(name)),
                *extra,
            ],
            f"eval_{name}.log",
        )
    step(
        6,
        "writing the tables (rp-eval table)",
        [
            str(BIN / "rp-eval"),
            "table",
            *(str(paths.eval_run(name)) for name in ("ours", *BASELINES)),
            "--out",
            str(paths.tables),
        ],
        "table.log",
    )
    print("\n[7/7] plotting the loss curves of both stages", flush=True)
    plot_loss_curves(paths.run / "tensorboard", paths.loss_curves, title="demo: tiny model on the sample build")
    report(paths, timings)
    return paths


def report(paths: DemoPaths, timings: dict[str, float]) -> None:
    table = paths.tables / "table1.md"
    if table.exists():
        print("\nSelf-reenactment on the held-out split (" + str(table) + "):\n" + table.read_text())
    panels = f"{LABELS.replace(',', ' | ')}, {PANEL_SIZE} px panels"
    print(
        "\n".join(
            [
                f"demo done in {sum(timings.values()) / 60:.1f} min; see:",
                *(f"  {name + ' side-by-side':<20} {paths.side_by_side(name)}  ({panels})" for name in PROTOCOLS),
                f"  contact sheet        {paths.contact_sheet}  (both tasks: driving over ours, frame by frame)",
                f"  animations           {', '.join(str(paths.animation(protocol)) for protocol in PROTOCOLS)}",
                f"  tables               {paths.tables}/table{{1,2,3}}.{{md,tex,csv,png}}",
                f"  loss curves          {paths.loss_curves}",
                f"  stand-in VAE         {paths.vae}  (reconstruction.json: its PSNR)",
                f"  checkpoint           {paths.checkpoint}",
                f"  logs                 {paths.logs}",
                "  honest numbers       python bench/learning.py  (ours vs source-copy, the motion ablation, identity)",
            ]
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--build", type=Path, default=REPO / ".cache" / "build", help="the sample build of make demo")
    parser.add_argument("--sample", type=Path, default=REPO / ".cache" / "sample", help="the embedded sample dataset")
    parser.add_argument(
        "--out", type=Path, default=REPO / ".cache" / "demo", help="replaced whole (default: %(default)s)"
    )
    parser.add_argument("--smoke", action="store_true", help="every step cut to seconds (what make test runs)")
    parser.add_argument("--master-port", type=int, default=29_700, help="the DeepSpeed launcher's rendezvous port")
    args = parser.parse_args(argv)
    try:
        run_demo(args.build, args.sample, args.out, smoke=args.smoke, master_port=args.master_port)
    except StepFailed as error:
        print(f"demo: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
