"""`rp-eval`: weights, inputs, run and table (see each command's --help for an example)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from eval.config import load_config
from eval.methods import Method
from manifests.schema import SpecError
from model.precision import add_precision_arguments
from pipeline.split import load_split

console = Console(stderr=True)

WEIGHTS_EXAMPLE = """example:
  rp-eval weights --weights ~/weights     # which metric files are present, their sha256 and sources

The folder is --weights, else $RP_WEIGHTS, else ~/.cache/realportrait/weights."""

INPUTS_EXAMPLE = """example:
  rp-eval inputs --split manifests/splits/paper.json --root vfhq=/data/VFHQ --root celebvhq=/data/CelebV-HQ \\
      --out eval_inputs/

Writes, per task, the source portrait (PNG) and the driving clip (FFV1 in .mkv: lossless RGB, so a method
reads exactly the frames ours is scored on) at the evaluation crop, and tasks.csv naming the file each
method must write: <outputs>/<protocol>/<task file>.mkv (FFV1), or a folder of PNG frames of that name."""

RUN_EXAMPLE = """examples:
  rp-eval run --split manifests/splits/sample.json --data-root .cache/sample --method ours \\
      --checkpoint runs/tiny/final --out eval_runs/ours --label "tiny, 20k steps"
  rp-eval run --split manifests/splits/sample.json --data-root .cache/sample --method landmark-warp \\
      --out eval_runs/landmark-warp
  rp-eval run --split manifests/splits/paper.json --root vfhq=/data/VFHQ --root celebvhq=/data/CelebV-HQ \\
      --method LivePortrait --outputs liveportrait_videos/ --motion-mode relative --out eval_runs/liveportrait

Methods: ours (--checkpoint), source-copy, landmark-warp, driving-copy (a driver-identity leakage
control: the driving clip itself), or any NAME with --outputs DIR holding
DIR/self/<clip>.mkv and DIR/cross/<source>~<driving>.mkv, FFV1 (names in `rp-eval inputs`' tasks.csv); a
folder of PNG frames of that name, or an .mp4, is read too (a lossy file is named in the table footer)."""

TABLE_EXAMPLE = """example:
  rp-eval table eval_runs/ours eval_runs/source-copy eval_runs/landmark-warp eval_runs/liveportrait \\
      --out tables/

Writes table{1,2,3}.{md,tex,csv,png}: 1 self-reenactment, 2 cross-reenactment (rows = methods),
3 ablations (rows = every run of method ours: checkpoints or configs, named by their --label)."""


def parse_roots(values: list[str], data_root: Path | None) -> dict[str, Path]:
    roots = {name: data_root / name for name in ("vfhq", "celebvhq")} if data_root else {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            raise SpecError(f"--root {value!r} is not DATASET=DIR")
        roots[name] = Path(path)
    return roots


def progress_bar(progress: Progress) -> Callable[[str, int], Callable[[], None]]:
    def start(description: str, total: int) -> Callable[[], None]:
        task = progress.add_task(description, total=total)
        return lambda: progress.advance(task)

    return start


def new_progress(disabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=disabled,
    )


def cmd_weights(args: argparse.Namespace) -> int:
    from eval.weights import status, weights_dir

    rows = status(args.weights)
    print(f"metric weights in {weights_dir(args.weights)}")
    for row in rows:
        print(f"\n{row.entry.filename}  [{'present: ' + str(row.path) if row.path else 'MISSING'}]")
        print(f"  metric: {row.entry.metric}")
        if row.sha256:
            print(f"  sha256 {row.sha256}" + (f"  ({row.problem})" if row.problem else ""))
        elif row.entry.sha256_prefix:
            print(f"  official sha256 starts with {row.entry.sha256_prefix}")
        print(f"  source: {row.entry.source}")
    missing = [row.entry.filename for row in rows if row.path is None]
    print(
        f"\n{len(rows) - len(missing)} of {len(rows)} files present"
        + (f"; missing: {', '.join(missing)}" if missing else "")
    )
    return 0


def cmd_inputs(args: argparse.Namespace) -> int:
    from eval.inputs import write_inputs
    from pipeline.faces import open_detector

    config = load_config(args.config, args.set)
    split = load_split(args.split)
    with new_progress(args.no_progress) as progress:
        written = write_inputs(
            split, parse_roots(args.root, args.data_root), config, open_detector(), args.out, progress_bar(progress)
        )
    print(f"wrote {written} tasks to {args.out} (tasks.csv lists them)")
    return 0


def make_method(args: argparse.Namespace) -> Method:
    """The method named on the command line, loaded."""
    from eval.baselines import DrivingCopy, LandmarkWarp, SourceCopy
    from eval.methods import Ours, OutputsFolder
    from model.animate import Animator, SamplingOptions
    from model.precision import Precision
    from pipeline.faces import open_landmarker
    from training.heldout import checkpoint_warnings

    if args.outputs is not None:
        return OutputsFolder(
            args.outputs,
            args.method,
            motion_mode=args.motion_mode,
            resize=args.resize_outputs,
            allow_longer=args.allow_longer,
        )
    if args.method == "ours":
        if args.checkpoint is None:
            raise SpecError("--method ours needs --checkpoint DIR")
        options = SamplingOptions(
            num_steps=args.steps,
            reference_guidance=args.reference_guidance,
            motion_guidance=args.motion_guidance,
            controlnet_scale=args.controlnet_scale,
            seed=args.seed,
        )
        precision = Precision.resolve(args.device, args.dtype)
        animator = Animator.from_checkpoint(args.checkpoint, args.vae, precision=precision)
        return Ours(animator, options, warnings=checkpoint_warnings(args.checkpoint, args.split))
    if args.method == "source-copy":
        return SourceCopy()
    if args.method == "landmark-warp":
        return LandmarkWarp(open_landmarker())
    if args.method == "driving-copy":
        return DrivingCopy()
    raise SpecError(
        f"method {args.method!r}: use ours, source-copy, landmark-warp, driving-copy, or --outputs DIR for another"
    )


def cmd_run(args: argparse.Namespace) -> int:
    from eval.run import evaluate
    from eval.scorers import load_scorers
    from eval.tasks import split_tasks
    from pipeline.faces import open_detector

    config = load_config(args.config, args.set)
    split = load_split(args.split)
    protocols = ("self", "cross") if args.protocol == "both" else (args.protocol,)
    explicit = any(item.startswith("metrics=") for item in args.set or [])
    scorers = load_scorers(config, args.weights, explicit=explicit)
    for metric, message in scorers.missing.items():
        console.print(f"[yellow]{metric}: {message}")
    method = make_method(args)
    with new_progress(args.no_progress) as progress:
        result = evaluate(
            method,
            split,
            args.split,
            parse_roots(args.root, args.data_root),
            split_tasks(split, protocols),
            scorers,
            open_detector(),
            args.out,
            label=args.label,
            progress=progress_bar(progress),
        )
    failed = result.info["failed"]
    print(f"wrote {args.out}: {len(result.tasks)} tasks" + (f", failed: {failed}" if failed else ""))
    for problem in result.info["unexpected_outputs"]:  # type: ignore[attr-defined]
        console.print(f"[yellow]no task asks for {problem}")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from eval.tables import write_tables

    written = write_tables(args.runs, args.out)
    for path in written:
        print(f"wrote {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rp-eval", description="Evaluate portrait animation on a frozen split.")
    sub = p.add_subparsers(dest="command", required=True)
    formatter = argparse.RawDescriptionHelpFormatter

    w = sub.add_parser(
        "weights", help="list the metric weight files", epilog=WEIGHTS_EXAMPLE, formatter_class=formatter
    )
    w.add_argument("--weights", type=Path, help="weights folder")
    w.set_defaults(func=cmd_weights)

    def split_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--split", type=Path, required=True, help="frozen split JSON (rp-data split)")
        command.add_argument("--root", action="append", default=[], metavar="DATASET=DIR", help="a dataset root")
        command.add_argument("--data-root", type=Path, help="a folder holding vfhq/ and celebvhq/ (e.g. the sample)")
        command.add_argument("--config", type=Path, help="evaluation config YAML (eval.config.EvalConfig)")
        command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
        command.add_argument("--no-progress", action="store_true")

    i = sub.add_parser(
        "inputs",
        help="export the evaluation inputs for other methods",
        epilog=INPUTS_EXAMPLE,
        formatter_class=formatter,
    )
    split_options(i)
    i.add_argument("--out", type=Path, required=True)
    i.set_defaults(func=cmd_inputs)

    r = sub.add_parser("run", help="evaluate one method on a split", epilog=RUN_EXAMPLE, formatter_class=formatter)
    split_options(r)
    r.add_argument(
        "--method", required=True, help="ours | source-copy | landmark-warp | driving-copy | NAME (with --outputs)"
    )
    r.add_argument("--out", type=Path, required=True, help="run folder (tasks.parquet, summary.parquet, run.json)")
    r.add_argument("--label", help="row name in the tables (default: the method)")
    r.add_argument("--protocol", choices=("self", "cross", "both"), default="both")
    r.add_argument("--weights", type=Path, help="metric weights folder")
    r.add_argument("--checkpoint", type=Path, help="ours: RealPortrait checkpoint folder")
    r.add_argument("--vae", type=Path, help="ours: SD1.5 VAE (default <checkpoint>/vae)")
    r.add_argument("--steps", type=int, default=50, help="ours: denoising steps (default 50)")
    r.add_argument("--reference-guidance", type=float, default=2.0)
    r.add_argument("--motion-guidance", type=float, default=1.0)
    r.add_argument(
        "--controlnet-scale",
        type=float,
        default=1.0,
        help="ours: multiplies the motion ControlNet's residuals; 0 drops the motion condition, exactly as "
        "training's motion dropout does (the motion ablation)",
    )
    r.add_argument("--seed", type=int, default=0)
    add_precision_arguments(r)  # ours: --device (default cuda when present), --dtype (default bf16 on cuda)
    r.add_argument("--outputs", type=Path, help="another method's videos (layout in the epilog)")
    r.add_argument(
        "--motion-mode",
        default="unknown",
        choices=("absolute", "relative", "unknown"),
        help="another method's motion mode (APD against the driver assumes absolute)",
    )
    r.add_argument(
        "--resize-outputs",
        action="store_true",
        help="accept square videos of another size, resized with the crops' rule (recorded)",
    )
    r.add_argument("--allow-longer", action="store_true", help="accept videos longer than the driving clip (cut)")
    r.set_defaults(func=cmd_run)

    t = sub.add_parser(
        "table", help="paper-style tables from run folders", epilog=TABLE_EXAMPLE, formatter_class=formatter
    )
    t.add_argument("runs", type=Path, nargs="+", help="run folders written by rp-eval run")
    t.add_argument("--out", type=Path, required=True)
    t.set_defaults(func=cmd_table)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (SpecError, FileNotFoundError, ValueError) as exc:
        print(f"rp-eval {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
