"""`rp-eval`: weights, inputs, run and table (see each command's --help for an example).

Every argument and path is checked (`eval.arguments`) before the face models, the metric networks or a
checkpoint load, and the heavy modules are imported only then, so a wrong argument is reported in a moment.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from eval.arguments import dataset_roots, existing_file, existing_folder, method_kind, writable_folder
from eval.compute import metric_precision
from model.export_folder import require_export, resolve_vae
from model.precision import DTYPES, Precision
from model.sampling_options import add_sampling_arguments, sampling_options
from pipeline.cli_help import HelpFormatter
from pipeline.faces.quiet import add_verbose_argument, quiet_native_logs

if TYPE_CHECKING:
    from rich.progress import Progress

    from eval.config import EvalConfig
    from eval.methods import Method
    from pipeline.split import Split

console = Console(stderr=True)

SPLIT = "--split manifests/splits/paper.json --root vfhq=/data/VFHQ --root celebvhq=/data/CelebV-HQ"

WEIGHTS_EXAMPLE = """example:
  rp-eval weights --weights /data/weights/eval

Lists which metric files are present, each official file's pinned sha256, whether the present file
matches it, and where to get each. The folder is --weights, else $RP_WEIGHTS, else
~/.cache/realportrait/weights."""

INPUTS_EXAMPLE = f"""example:
  rp-eval inputs {SPLIT} \\
      --out out/eval_inputs

Writes, per task, the source portrait (PNG) and the driving clip (FFV1 in .mkv: lossless RGB, so a method
reads exactly the frames ours is scored on) at the evaluation crop, and tasks.csv naming the file each
method must write: <outputs>/<protocol>/<task file>.mkv (FFV1), or a folder of PNG frames of that name."""

RUN_EXAMPLE = f"""examples:
  rp-eval run {SPLIT} \\
      --weights /data/weights/eval --method ours --checkpoint runs/realportrait/stage2/export --out out/eval/ours
  rp-eval run {SPLIT} \\
      --weights /data/weights/eval --method source-copy --out out/eval/source-copy
  rp-eval run {SPLIT} \\
      --weights /data/weights/eval --method LivePortrait --outputs out/other_method --motion-mode relative \\
      --out out/eval/other_method

Methods: ours (--checkpoint: a training export, which carries its VAE), source-copy, landmark-warp,
driving-copy (a driver-identity leakage control: the driving clip itself; it and source-copy are marked
as controls in the tables, never bold), or any NAME with --outputs DIR
holding DIR/self/<clip>.mkv and DIR/cross/<source>~<driving>.mkv, FFV1 (the names in `rp-eval inputs`'
tasks.csv); a folder of PNG frames of that name, or an .mp4, is read too (a lossy file is named in the
table footer). A metric whose weight file is missing from --weights is reported once and left out; one
whose sha256 differs from the official file's pin stops the run before any task (rp-eval weights shows
the pins), unless --allow-unpinned-weights, which scores with it and says so in every table.
The motion ablation of Table 3 is the first command with --controlnet-scale 0 --label ours-without-motion
--out out/eval/ours-without-motion: every run of method ours is a row of Table 3, named by its --label.
Each finished task is written at once: after a crash, the same command with --resume goes on. The
ground truth's features are kept in --gt-cache for every method's run. Exit code 1: no task succeeded."""

TABLE_EXAMPLE = """example:
  rp-eval table out/eval/ours out/eval/source-copy out/eval/other_method --out out/tables

Writes table{1,2,3}.{md,tex,csv,png}: 1 self-reenactment, 2 cross-reenactment (rows = methods),
3 ablations (rows = every run of method ours: checkpoints or configs, named by their --label)."""

# the sampling options `--method ours` takes (rp-animate takes them all)
OURS_OPTIONS = ("num_steps", "reference_guidance", "motion_guidance", "controlnet_scale", "seed")


def progress_bar(progress: Progress) -> Callable[[str, int], Callable[[], None]]:
    def start(description: str, total: int) -> Callable[[], None]:
        task = progress.add_task(description, total=total)
        return lambda: progress.advance(task)

    return start


def new_progress(disabled: bool) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}", style="bold", markup=False),  # names print as they are
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=disabled,
    )


def warn(text: str) -> None:
    """One warning on stderr, never re-wrapped (paths and URLs stay whole for copying) nor read as markup."""
    console.print(text, style="yellow", markup=False, highlight=False, soft_wrap=True)


PIN_VERDICTS = {
    True: "matches the pin",
    False: "DIFFERS from the pin: not the official file; rp-eval run refuses it without --allow-unpinned-weights",
    None: "no pin to compare with",
}


def cmd_weights(args: argparse.Namespace) -> int:
    from eval.weights import status, weights_dir

    if args.weights is not None:
        existing_folder("--weights", args.weights)
    rows = status(args.weights)
    print(f"metric weights in {weights_dir(args.weights)}")
    for row in rows:
        print(f"\n{row.entry.filename}  [{'present: ' + str(row.path) if row.path else 'MISSING'}]")
        print(f"  metric: {row.entry.metric}")
        print(f"  pinned sha256 {row.entry.sha256 or '(none known: the file is not verified)'}")
        if row.sha256:
            print(f"  sha256 {row.sha256}  ({PIN_VERDICTS[row.matches]})")
        print(f"  source: {row.entry.source}")
    missing = [row.entry.filename for row in rows if row.path is None]
    print(
        f"\n{len(rows) - len(missing)} of {len(rows)} files present"
        + (f"; missing: {', '.join(missing)}" if missing else "")
    )
    return 0


def split_inputs(args: argparse.Namespace) -> tuple[EvalConfig, Split, dict[str, Path]]:
    """The protocol config, the split and the dataset roots, each checked."""
    from eval.config import load_config
    from pipeline.split import load_split

    if args.config is not None:
        existing_file("--config", args.config)
    config = load_config(args.config, args.set)
    split = load_split(existing_file("--split", args.split))
    return config, split, dataset_roots(args.root, args.data_root, split)


def cmd_inputs(args: argparse.Namespace) -> int:
    config, split, roots = split_inputs(args)
    writable_folder("--out", args.out)
    quiet_native_logs(args.verbose)
    from eval.inputs import write_inputs
    from pipeline.faces import open_detector

    with new_progress(args.no_progress) as progress:
        written = write_inputs(split, roots, config, open_detector(), args.out, progress_bar(progress))
    print(f"wrote {written} tasks to {args.out} (tasks.csv lists them)")
    return 0


def check_method(args: argparse.Namespace) -> tuple[str, Path | None]:
    """The method's kind (`eval.arguments.method_kind`) and, for ours, the VAE to load: every argument of the
    method checked, nothing loaded."""
    kind = method_kind(args.method, args.outputs, args.checkpoint)
    if kind != "ours":
        return kind, None
    sampling_options(args, OURS_OPTIONS)
    Precision.resolve(args.device, args.dtype)
    return kind, resolve_vae(require_export(args.checkpoint), args.vae)


def make_method(args: argparse.Namespace) -> Method:
    """The method named on the command line, loaded."""
    from eval.baselines import DrivingCopy, LandmarkWarp, SourceCopy
    from eval.methods import Ours, OutputsFolder
    from model.animate import Animator
    from pipeline.faces import open_landmarker
    from training.heldout import checkpoint_warnings

    kind, vae = check_method(args)  # again: a moment's work, and make_method stands alone
    if kind == "outputs":
        return OutputsFolder(
            args.outputs,
            args.method,
            motion_mode=args.motion_mode,
            resize=args.resize_outputs,
            allow_longer=args.allow_longer,
            control=args.control,
        )
    if kind == "ours":
        print(f"loading the model from {args.checkpoint} and the VAE from {vae}", flush=True)
        precision = Precision.resolve(args.device, args.dtype)
        animator = Animator.from_checkpoint(args.checkpoint, vae, precision=precision)
        options = sampling_options(args, OURS_OPTIONS)
        return Ours(animator, options, warnings=checkpoint_warnings(args.checkpoint, args.split))
    if kind == "landmark-warp":
        return LandmarkWarp(open_landmarker())
    return DrivingCopy() if kind == "driving-copy" else SourceCopy()


def cmd_run(args: argparse.Namespace) -> int:
    config, split, roots = split_inputs(args)
    if args.weights is not None:
        existing_folder("--weights", args.weights)
    writable_folder("--out", args.out)
    if args.gt_cache is not None:
        writable_folder("--gt-cache", args.gt_cache)
    check_method(args)
    precision = metric_precision(args.device, args.dtype)
    quiet_native_logs(args.verbose)
    from eval.ground_truth import cache_folder
    from eval.run import evaluate
    from eval.scorers import load_scorers
    from eval.tasks import split_tasks
    from pipeline.faces import open_detector

    protocols = ("self", "cross") if args.protocol == "both" else (args.protocol,)
    explicit = any(item.startswith("metrics=") for item in args.set or [])
    scorers = load_scorers(
        config, args.weights, explicit=explicit, precision=precision, allow_unpinned=args.allow_unpinned_weights
    )
    print(f"metric networks on {precision} with {scorers.threads} CPU threads", flush=True)
    for message in dict.fromkeys(scorers.missing.values()):  # one per file, not one per metric it serves
        warn(f"warning: {message} Those metrics are left out of this run.")
    method = make_method(args)
    with new_progress(args.no_progress) as progress:
        result = evaluate(
            method,
            split,
            args.split,
            roots,
            split_tasks(split, protocols),
            scorers,
            open_detector(),
            args.out,
            label=args.label,
            progress=progress_bar(progress),
            resume=args.resume,
            gt_cache=None if args.no_gt_cache else cache_folder(args.gt_cache),
        )
    failed = result.info["failed"]
    resumed = f" ({result.info['resumed_tasks']} kept from before)" if args.resume else ""
    print(f"wrote {args.out}: {len(result.tasks)} tasks{resumed}" + (f", failed: {failed}" if failed else ""))
    for problem in result.info["unexpected_outputs"]:  # type: ignore[attr-defined]
        warn(f"warning: no task asks for {problem}")
    if not result.info["succeeded"]:
        warn(f"error: no task succeeded; the reasons are in {args.out / 'run.json'} (task_errors)")
        return 1
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    for run in args.runs:
        existing_folder("RUN", run)
    writable_folder("--out", args.out)
    from eval.tables import write_tables

    for path in write_tables(args.runs, args.out):
        print(f"wrote {path}")
    return 0


def split_options(command: argparse.ArgumentParser) -> None:
    """The arguments `inputs` and `run` share: the split, the dataset roots, the protocol config."""
    command.add_argument(
        "--split", type=Path, required=True, metavar="JSON", help="frozen split file (rp-data split writes one)"
    )
    command.add_argument(
        "--root",
        action="append",
        default=[],
        metavar="DATASET=DIR",
        help="the folder of one dataset of the split, in its official layout, e.g. vfhq=/data/VFHQ (repeat it "
        "per dataset)",
    )
    command.add_argument(
        "--data-root",
        type=Path,
        metavar="DIR",
        help="a folder holding vfhq/ and celebvhq/, e.g. the embedded sample's (default: none; --root per dataset)",
    )
    command.add_argument(
        "--config",
        type=Path,
        metavar="YAML",
        help="evaluation protocol, eval.config.EvalConfig in YAML (default: the built-in one, 512 px)",
    )
    command.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a protocol setting, e.g. size=256 or metrics=[L1,PSNR] (repeatable)",
    )
    command.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_verbose_argument(command)


def run_options(r: argparse.ArgumentParser) -> None:
    r.add_argument(
        "--method",
        required=True,
        help="ours | source-copy | landmark-warp | driving-copy | NAME (another method, with --outputs)",
    )
    r.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="run folder (tasks.parquet, summary.parquet, run.json)"
    )
    r.add_argument("--label", help="the row's name in the tables (default: the method's name)")
    r.add_argument("--protocol", choices=("self", "cross", "both"), default="both", help="which reenactment tasks")
    r.add_argument(
        "--resume",
        action="store_true",
        help="go on with the run in --out: the tasks that succeeded there are kept, the others run (the "
        "method, label, protocol, split and weights must be those it was started with)",
    )
    r.add_argument(
        "--weights",
        type=Path,
        metavar="DIR",
        help="metric weights folder (default: $RP_WEIGHTS, else ~/.cache/realportrait/weights; rp-eval weights "
        "lists its files)",
    )
    r.add_argument(
        "--gt-cache",
        type=Path,
        metavar="DIR",
        help="where the ground truth's features are kept for every method's run (default: $RP_EVAL_CACHE, else "
        "~/.cache/realportrait/eval); keyed by split, clip content and metric version",
    )
    r.add_argument("--no-gt-cache", action="store_true", help="compute the ground truth's features, keep nothing")
    r.add_argument(
        "--allow-unpinned-weights",
        action="store_true",
        help="score with weight files whose sha256 differs from the official pin (test-made or re-trained "
        "networks); every table footer then says they are not the official files",
    )
    ours = r.add_argument_group("--method ours")
    ours.add_argument(
        "--checkpoint", type=Path, metavar="DIR", help="a training export, e.g. <output_dir>/stage2/export (required)"
    )
    ours.add_argument(
        "--vae",
        type=Path,
        metavar="PATH",
        help="SD1.5 VAE folder or .safetensors file (default: the export's own vae/, the one it was trained with)",
    )
    add_sampling_arguments(ours, OURS_OPTIONS)
    compute = r.add_argument_group("device and precision (our generator and the metric networks)")
    compute.add_argument(
        "--device",
        help="torch device, e.g. cuda, cuda:1, cpu, for our generator and the metric networks LPIPS, Inception "
        "and I3D; ArcFace runs there through onnxruntime's CUDA provider when it is installed (else on the CPU, "
        "recorded in run.json); dlib and FaceMesh always run on the CPU (default: cuda when present, else cpu)",
    )
    compute.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        help="compute precision under autocast, for our generator (default: bf16 on cuda, fp32 on cpu) and, "
        "only when given, for the metric networks (default: fp32, the precision the published metrics used)",
    )
    other = r.add_argument_group("another method's videos")
    other.add_argument(
        "--outputs", type=Path, metavar="DIR", help="its videos, in the layout below (required for another method)"
    )
    other.add_argument(
        "--motion-mode",
        default="unknown",
        choices=("absolute", "relative", "unknown"),
        help="how it transfers motion (APD against the driver assumes absolute)",
    )
    other.add_argument(
        "--resize-outputs",
        action="store_true",
        help="accept square videos of another size, resized with the crops' rule (recorded)",
    )
    other.add_argument("--allow-longer", action="store_true", help="accept videos longer than the driving clip (cut)")
    other.add_argument(
        "--control",
        action="store_true",
        help="the method is a control, not a contender: the tables label its row and never make it bold nor rank it",
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rp-eval",
        description="Evaluate portrait animation on a frozen split, the paper's way.",
        epilog="Each command's --help shows examples.",
        formatter_class=HelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")

    def command(name: str, summary: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary, epilog=epilog, formatter_class=HelpFormatter)

    w = command(
        "weights", "List the metric weight files: which are present, their sha256 and sources.", WEIGHTS_EXAMPLE
    )
    w.add_argument(
        "--weights",
        type=Path,
        metavar="DIR",
        help="metric weights folder (default: $RP_WEIGHTS, else ~/.cache/realportrait/weights)",
    )
    w.set_defaults(func=cmd_weights)

    i = command("inputs", "Export the evaluation inputs (portraits, driving clips) for other methods.", INPUTS_EXAMPLE)
    split_options(i)
    i.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the inputs and tasks.csv")
    i.set_defaults(func=cmd_inputs)

    r = command("run", "Evaluate one method on a split: generate (or read) its videos and score them.", RUN_EXAMPLE)
    split_options(r)
    run_options(r)
    r.set_defaults(func=cmd_run)

    t = command("table", "Write the paper's tables from run folders (Markdown, LaTeX, CSV, PNG).", TABLE_EXAMPLE)
    t.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders written by rp-eval run")
    t.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the tables into")
    t.set_defaults(func=cmd_table)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError) as exc:  # SpecError and ArgumentProblem are ValueErrors
        print(f"rp-eval {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
