"""`rp-animate`: animate a portrait photo with a driving video from a RealPortrait training export.

Every argument and path is checked before the model code, diffusers and mediapipe are imported and the
model loads (which takes seconds to minutes), so a typo costs a moment and names its argument.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model.export_folder import require_export, resolve_vae
from model.precision import Precision, add_precision_arguments
from model.sampling_options import add_sampling_arguments, sampling_options
from model.views import LABELS, MAX_PANEL, MIN_PANEL, ViewOptions, check_labels, check_panel, parse_labels
from pipeline.cli_help import HelpFormatter
from pipeline.faces.quiet import add_verbose_argument, quiet_native_logs

EXAMPLES = """examples:
  rp-animate --checkpoint runs/realportrait/stage2/export --source me.jpg --driving driving.mp4 \\
      --out out/animation.mp4
  rp-animate --checkpoint runs/realportrait/stage2/export --source me.jpg --driving driving.mp4 \\
      --out out/animation.mp4 --side-by-side out/animation_side_by_side.mp4 --steps 25 --max-frames 48
  rp-animate --checkpoint runs/realportrait/stage2/export --source me.jpg --driving driving.mp4 \\
      --out out/animation.mp4 --side-by-side out/animation_sbs.mp4 --contact-sheet out/sheet.png \\
      --panel-size 256 --labels source,driving,ours --sheet-frames 6 --steps 25 --max-frames 48

--checkpoint is a training export: training/configs/stage2.yaml writes runs/realportrait/stage2/export,
which holds the model (config.json + diffusion_pytorch_model.safetensors) and vae/, the VAE it was trained
with; --vae replaces that VAE (only for exports made without one). The output has the driving video's
duration at its mean frame rate (a variable-rate phone video is followed by time); a video longer than one
window is denoised in overlapping windows blended at every step, so the time grows with its length.
On a GPU it runs in bf16 by default (--device cuda --dtype bf16); on the CPU in fp32 (--dtype bf16 also works).
The side-by-side video and the contact sheet are for judging by eye: every panel is resized to --panel-size
(the last example's 256 px panels make a 768 x 294 video) under a strip naming it (--labels)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rp-animate",
        description="Animate one portrait with the expressions and head motion of a driving video.",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        metavar="DIR",
        help="a training export (see below), e.g. <output_dir>/stage2/export",
    )
    p.add_argument(
        "--source",
        type=Path,
        required=True,
        metavar="IMAGE",
        help="portrait photo (any size: the face is found, cropped)",
    )
    p.add_argument(
        "--driving", type=Path, required=True, metavar="VIDEO", help="driving video (any length, any frame rate)"
    )
    p.add_argument("--out", type=Path, required=True, metavar="MP4", help="output mp4 (H.264); its folder is created")
    p.add_argument(
        "--vae",
        type=Path,
        metavar="PATH",
        help="SD1.5 VAE folder or .safetensors file (default: the export's own vae/, the one it was trained with)",
    )
    p.add_argument(
        "--side-by-side",
        type=Path,
        metavar="MP4",
        help="also write source | driving | result to this mp4, each panel named in a strip above it, e.g. "
        "out/animation_sbs.mp4 (default: none)",
    )
    p.add_argument(
        "--contact-sheet",
        type=Path,
        metavar="PNG",
        help="also write a PNG of --sheet-frames frames of the driving video (top row) and the result (bottom "
        "row), the source at the left of both and each column named by its frame index, e.g. out/sheet.png "
        "(default: none)",
    )
    p.add_argument(
        "--panel-size",
        type=int,
        metavar="PX",
        help="side of every panel of --side-by-side and cell of --contact-sheet, e.g. 256 to judge a 64 px "
        f"model by eye; even, {MIN_PANEL} to {MAX_PANEL} (default: the model's native size)",
    )
    p.add_argument(
        "--labels",
        metavar="A,B,C",
        help=f"names of the source, driving and result panels, e.g. source,driving,ours (default: {','.join(LABELS)})",
    )
    p.add_argument(
        "--sheet-frames",
        type=int,
        metavar="N",
        help="frames in --contact-sheet, evenly spaced with the first and the last, e.g. 12; a clip shorter "
        f"than N shows each of its frames once (default: {ViewOptions.sheet_frames})",
    )
    add_sampling_arguments(p)
    p.add_argument(
        "--max-frames", type=int, metavar="N", help="use only the driving video's first N frames (default: all)"
    )
    add_precision_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_verbose_argument(p)
    return p


def check_paths(args: argparse.Namespace) -> Path:
    """The VAE to load, once every input exists and the output can be written; else a one-line error."""
    for flag, path in (("--source", args.source), ("--driving", args.driving)):
        if not path.is_file():
            raise FileNotFoundError(f"argument {flag}: {path}: " + ("a folder" if path.is_dir() else "no such file"))
    if args.out.is_dir():
        raise ValueError(f"argument --out: {args.out} is a folder; give the mp4 file to write")
    for flag, path in (("--side-by-side", args.side_by_side), ("--contact-sheet", args.contact_sheet)):
        if path is not None and path.is_dir():
            raise ValueError(f"argument {flag}: {path} is a folder; give the file to write")
    if args.contact_sheet is not None and args.contact_sheet.suffix.lower() != ".png":
        raise ValueError(f"argument --contact-sheet: {args.contact_sheet}: the contact sheet is a PNG; end it in .png")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"argument --max-frames: must be at least 1, got {args.max_frames}")
    return resolve_vae(require_export(args.checkpoint), args.vae)


def view_options(args: argparse.Namespace) -> ViewOptions:
    """The views' options, every one checked before the model loads: a label too long for its panel would
    otherwise be found only once the animation is done. Options that draw nothing are refused rather than
    ignored, as a forgotten --side-by-side or --contact-sheet would leave the user waiting for no picture."""
    if args.sheet_frames is not None and args.contact_sheet is None:
        raise ValueError("argument --sheet-frames: draws nothing without --contact-sheet")
    if args.side_by_side is None and args.contact_sheet is None:
        for flag, value in (("--panel-size", args.panel_size), ("--labels", args.labels)):
            if value is not None:
                raise ValueError(f"argument {flag}: draws nothing without --side-by-side or --contact-sheet")
        return ViewOptions()
    sheet_frames = ViewOptions.sheet_frames if args.sheet_frames is None else args.sheet_frames
    if sheet_frames < 1:
        raise ValueError(f"argument --sheet-frames: must be at least 1, got {sheet_frames}")
    panel = native_size(args.checkpoint) if args.panel_size is None else args.panel_size
    try:
        check_panel(panel)
    except ValueError as exc:
        native = "" if args.panel_size is not None else " (the model's native size, the default; give --panel-size)"
        raise ValueError(f"argument --panel-size: {exc}{native}") from None
    try:
        labels = LABELS if args.labels is None else parse_labels(args.labels)
        check_labels(labels, panel)
    except ValueError as exc:
        raise ValueError(f"argument --labels: {exc}") from None
    return ViewOptions(args.panel_size, labels, sheet_frames)


def native_size(checkpoint: Path) -> int:
    """The export's `input_sq_size`, read from its config.json without loading the model."""
    return int(json.loads((checkpoint / "config.json").read_text())["input_sq_size"])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        options = sampling_options(args)
        precision = Precision.resolve(args.device, args.dtype)
        vae = check_paths(args)
        views = view_options(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"rp-animate: error: {exc}", file=sys.stderr)
        return 2
    quiet_native_logs(args.verbose)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    from model.animate import Animator, NoFaceError, animate_files
    from pipeline.decode import DecodeError

    print(f"loading the model from {args.checkpoint} and the VAE from {vae} ({precision})", flush=True)
    try:
        animator = Animator.from_checkpoint(args.checkpoint, vae, precision=precision)
        with Progress(
            TextColumn("{task.description}", style="bold", markup=False),  # file names print as they are
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("denoising steps"),
            TimeRemainingColumn(),
            disable=args.no_progress,
        ) as progress:
            bars: list[TaskID] = []  # made at the first window pass, when the number of windows is known

            def on_window(done: int, total: int) -> None:
                """`done` of `total` window passes: each denoising step runs every window once."""
                windows = total // options.num_steps
                if not bars:
                    plural = "s" if windows > 1 else ""
                    bars.append(progress.add_task(f"animating ({windows} window{plural})", total=options.num_steps))
                progress.update(bars[0], completed=done / windows)

            result = animate_files(
                animator,
                args.source,
                args.driving,
                args.out,
                options=options,
                side_by_side_out=args.side_by_side,
                contact_sheet_out=args.contact_sheet,
                views=views,
                max_frames=args.max_frames,
                on_window=on_window,
            )
    except (FileNotFoundError, NoFaceError, DecodeError, ValueError) as exc:
        print(f"rp-animate: error: {exc}", file=sys.stderr)
        return 2
    size = f"{result.size}x{result.size}"
    print(f"wrote {args.out}: {result.frames} frames at {result.fps:g} fps, {size}, sampled on {animator.precision}")
    panel = views.panel or result.size
    if args.side_by_side:
        print(f"wrote {args.side_by_side}: {' | '.join(views.labels)}, {panel} px panels")
    if args.contact_sheet:
        shown = min(views.sheet_frames, result.frames)
        print(f"wrote {args.contact_sheet}: {shown} frames of {views.labels[1]} over {views.labels[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
