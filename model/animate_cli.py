"""`rp-animate`: animate a portrait photo with a driving video from a RealPortrait checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from model.animate import WINDOW, Animator, NoFaceError, SamplingOptions, animate_files
from model.precision import Precision, add_precision_arguments
from pipeline.decode import DecodeError

EXAMPLE = """example:
  rp-animate --checkpoint runs/tiny/final --source me.jpg --driving talk.mp4 --out me_talking.mp4 \\
      --side-by-side me_talking_sbs.mp4 --steps 50 --reference-guidance 2.0

The checkpoint folder holds config.json + diffusion_pytorch_model.safetensors (RealPortrait.save_pretrained);
the SD1.5 VAE is read from <checkpoint>/vae unless --vae names it. The output has the driving video's duration
at its mean frame rate (a variable-rate phone video is followed by time); videos longer than one window are
denoised in overlapping windows blended at every step.
On a GPU it runs in bf16 by default (--device cuda --dtype bf16); on the CPU in fp32 (--dtype bf16 also works)."""


def parser() -> argparse.ArgumentParser:
    defaults = SamplingOptions()
    p = argparse.ArgumentParser(
        prog="rp-animate",
        description="Animate one portrait with the expressions and head motion of a driving video.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="RealPortrait checkpoint folder")
    p.add_argument("--source", type=Path, required=True, help="portrait image (any size; the face is cropped)")
    p.add_argument("--driving", type=Path, required=True, help="driving video (any length)")
    p.add_argument("--out", type=Path, required=True, help="output mp4 (H.264)")
    p.add_argument("--vae", type=Path, help="SD1.5 VAE folder or .safetensors (default: <checkpoint>/vae)")
    p.add_argument("--side-by-side", type=Path, help="also write source | driving | result to this mp4")
    p.add_argument("--steps", type=int, default=defaults.num_steps, help="denoising steps (default 50)")
    p.add_argument("--reference-guidance", type=float, default=defaults.reference_guidance)
    p.add_argument("--motion-guidance", type=float, default=defaults.motion_guidance)
    p.add_argument("--controlnet-scale", type=float, default=defaults.controlnet_scale)
    p.add_argument("--eta", type=float, default=defaults.eta, help="DDIM eta (0 = deterministic)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--window", type=int, default=WINDOW, help="frames per denoising window (default 16)")
    p.add_argument("--overlap", type=int, default=defaults.overlap, help="frames shared by neighbouring windows")
    p.add_argument("--max-frames", type=int, help="use only the driving video's first N frames")
    add_precision_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        options = SamplingOptions(
            num_steps=args.steps,
            reference_guidance=args.reference_guidance,
            motion_guidance=args.motion_guidance,
            controlnet_scale=args.controlnet_scale,
            eta=args.eta,
            seed=args.seed,
            window=args.window,
            overlap=args.overlap,
        )
        animator = Animator.from_checkpoint(
            args.checkpoint, args.vae, precision=Precision.resolve(args.device, args.dtype)
        )
        with Progress(
            TextColumn("[bold]animating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("windows"),
            TimeRemainingColumn(),
            disable=args.no_progress,
        ) as progress:
            task = progress.add_task("windows", total=None)
            result = animate_files(
                animator,
                args.source,
                args.driving,
                args.out,
                options=options,
                side_by_side_out=args.side_by_side,
                max_frames=args.max_frames,
                on_window=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except (FileNotFoundError, NoFaceError, DecodeError, ValueError) as exc:
        print(f"rp-animate: error: {exc}", file=sys.stderr)
        return 2
    size = f"{result.size}x{result.size}"
    print(f"wrote {args.out}: {result.frames} frames at {result.fps:g} fps, {size}, sampled on {animator.precision}")
    if args.side_by_side:
        print(f"wrote {args.side_by_side}: source | driving | result")
    return 0


if __name__ == "__main__":
    sys.exit(main())
