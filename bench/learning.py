"""Did the demo model learn motion transfer? The honest numbers, on the held-out sample split at 64 px.

    .venv/bin/python bench/learning.py [--demo .cache/demo] [--out .cache/bench/learning] [--steps 50]

Reads the model and the stand-in VAE that `make demo-train` wrote to `--demo` and evaluates, with
`rp-eval run` and the demo's protocol (training/configs/demo_eval.yaml: manifests/splits/sample.json,
64 px, frame 0 of a self-reenactment task is the source and is not scored):

- ours, against source-copy (the source portrait repeated: what a model that ignores the motion
  would score), on self-reenactment L1 and APD. Goal: ours lower on both.
- the motion ablation: ours with the motion condition dropped (`--controlnet-scale 0`, exactly what
  training's motion dropout feeds the model) against ours. Goal: dropping motion is worse (higher
  self-reenactment L1 and APD).
- cross-reenactment identity: the dlib similarity of ours to the source (CSIM-dlib) and to the
  driver (CSIM-dlib-driver). Goal: closer to the source. At 64 px dlib's descriptor rates any two of
  the sample's faces above 0.9, so the gap, not the level, is the figure.

A control says how low ours could go: the stand-in VAE's own reconstruction of the driving frames
(encoded and decoded, no diffusion), scored as another method on self-reenactment. Ours works in that
VAE's latent space, so its L1 cannot be expected below this one.

It also writes the tables of the three runs (`rp-eval table`: the ablation is table 3) and the loss
curve of both stages as a PNG. The sample holds 8 portrait photos: the split's clips were never trained
on, but their faces appear in other, training clips, so these numbers show that the stack learns to
move a face it knows, not that it generalises to new identities.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from eval.cli import main as rp_eval  # noqa: E402
from eval.frame_files import read_video  # noqa: E402
from model.vae import FrameVAE  # noqa: E402
from pipeline.encode import encode_ffv1  # noqa: E402
from training.demo import EVAL_CONFIG, SPLIT, DemoPaths  # noqa: E402
from training.loss_curves import plot_loss_curves  # noqa: E402


@dataclass(frozen=True)
class Comparison:
    """One goal: `better` must be below `worse` (or above it when `higher_is_better`)."""

    figure: str
    better_label: str
    better: float
    worse_label: str
    worse: float
    higher_is_better: bool = False

    @property
    def holds(self) -> bool:
        """A figure without a value (no face found in any frame, say) does not reach its goal."""
        return self.better > self.worse if self.higher_is_better else self.better < self.worse

    def line(self) -> str:
        verdict = "reached" if self.holds else "NOT reached"
        relation = ">" if self.higher_is_better else "<"
        return (
            f"  {self.figure:<48} {self.better_label} {self.better:.4f} {relation} {self.worse_label} "
            f"{self.worse:.4f} ?  {verdict}"
        )


def metric(run: Path, protocol: str, name: str) -> float:
    """A run's split-level value (summary.parquet); NaN, with the reason printed, when it has none."""
    table = pd.read_parquet(run / "summary.parquet").set_index(["protocol", "metric"])
    row = table.loc[(protocol, name)]
    if row["status"] != "ok":
        print(f"  note: {run.name}: {protocol} {name} has no value ({row['status']}: {row['note']})")
        return float("nan")
    return float(row["value"])


def evaluate(demo: DemoPaths, sample: Path, out: Path, steps: int) -> dict[str, Path]:
    common = ["run", "--split", str(SPLIT), "--data-root", str(sample), "--config", str(EVAL_CONFIG)]
    ours = ["--checkpoint", str(demo.checkpoint), "--vae", str(demo.vae), "--steps", str(steps)]
    runs = {
        "ours": ["--method", "ours", *ours, "--label", "ours"],
        "ours-motion-dropped": [
            "--method",
            "ours",
            *ours,
            "--controlnet-scale",
            "0",
            "--label",
            "ours, motion dropped",
        ],
        "source-copy": ["--method", "source-copy"],
    }
    paths = {}
    for name, arguments in runs.items():
        paths[name] = out / name
        print(f"evaluating {name}", flush=True)
        if rp_eval([*common, *arguments, "--out", str(paths[name])]) != 0:
            raise SystemExit(f"learning: rp-eval run failed for {name}")
    return paths


@torch.no_grad()
def vae_reconstructions(demo: DemoPaths, sample: Path, out: Path) -> Path:
    """The VAE's encode-decode of every self-reenactment driving clip, written as another method's outputs
    from `rp-eval inputs` (the exact frames ours is scored against), and evaluated on self-reenactment."""
    inputs, outputs, run = out / "vae_inputs", out / "vae_outputs", out / "vae-reconstruction"
    common = ["--split", str(SPLIT), "--data-root", str(sample), "--config", str(EVAL_CONFIG), "--no-progress"]
    if rp_eval(["inputs", *common, "--out", str(inputs)]) != 0:
        raise SystemExit("learning: rp-eval inputs failed")
    vae = FrameVAE.from_path(demo.vae)
    with open(inputs / "tasks.csv", encoding="utf-8") as handle:
        tasks = [row for row in csv.DictReader(handle) if row["protocol"] == "self"]
    for task in tasks:
        frames = read_video(inputs / task["driving"]).frames
        clip = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # [1, 3, T, H, W]
        decoded = vae.decode(vae.encode(clip, sample=False))[0].permute(1, 2, 3, 0)
        video = ((decoded.clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        (outputs / task["output"]).parent.mkdir(parents=True, exist_ok=True)
        (outputs / task["output"]).write_bytes(encode_ffv1(np.ascontiguousarray(video), float(task["fps"])))
    arguments = ["run", *common, "--method", "vae-reconstruction", "--outputs", str(outputs), "--protocol", "self"]
    if rp_eval([*arguments, "--out", str(run)]) != 0:
        raise SystemExit("learning: rp-eval run failed for the VAE reconstruction")
    return run


def comparisons(runs: dict[str, Path]) -> list[Comparison]:
    ours, dropped, copy = runs["ours"], runs["ours-motion-dropped"], runs["source-copy"]
    rivals = (("ours vs source-copy", "source-copy", copy), ("motion ablation", "motion dropped", dropped))
    result = [
        Comparison(
            f"self {name}, {figure}",
            "ours",
            metric(ours, "self", name),
            label,
            metric(rival, "self", name),
        )
        for figure, label, rival in rivals
        for name in ("L1", "APD")
    ]
    result.append(
        Comparison(
            "cross identity: similarity to source vs driver",
            "to source",
            metric(ours, "cross", "CSIM-dlib"),
            "to driver",
            metric(ours, "cross", "CSIM-dlib-driver"),
            higher_is_better=True,
        )
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=REPO / ".cache" / "demo", help="make demo-train's folder")
    parser.add_argument("--sample", type=Path, default=REPO / ".cache" / "sample", help="the embedded sample")
    parser.add_argument("--out", type=Path, default=REPO / ".cache" / "bench" / "learning")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps of ours (default: the paper's 50)")
    args = parser.parse_args(argv)
    demo = DemoPaths(args.demo)
    if not (demo.checkpoint / "config.json").exists():
        raise SystemExit(f"learning: {demo.checkpoint}: no trained demo model; run `make demo-train` first")
    runs = evaluate(demo, args.sample, args.out, args.steps)
    control = vae_reconstructions(demo, args.sample, args.out)
    if rp_eval(["table", *(str(path) for path in runs.values()), "--out", str(args.out / "tables")]) != 0:
        raise SystemExit("learning: rp-eval table failed")
    curves = plot_loss_curves(demo.run / "tensorboard", args.out / "loss_curves.png", title="demo training loss")
    results = comparisons(runs)
    print(f"\nlearning on the held-out split {SPLIT.name} at 64 px, ours with {args.steps} DDIM steps:")
    for comparison in results:
        print(comparison.line())
    print(
        f"  control: the VAE's own reconstruction of the driving frames scores self L1 "
        f"{metric(control, 'self', 'L1'):.4f}, PSNR {metric(control, 'self', 'PSNR'):.2f} dB "
        f"(source-copy {metric(runs['source-copy'], 'self', 'PSNR'):.2f} dB, ours "
        f"{metric(runs['ours'], 'self', 'PSNR'):.2f} dB): ours is not expected below the VAE's L1"
    )
    for stage, (first, last) in curves.items():
        print(f"  {stage} loss: {first:.4f} (first tenth of the steps) -> {last:.4f} (last tenth)")
    print(f"\ntables: {args.out / 'tables'}; loss curves: {args.out / 'loss_curves.png'}")
    print(f"goals reached: {sum(c.holds for c in results)} of {len(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
