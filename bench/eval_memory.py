"""Peak memory of `rp-eval run` against the split's size: 4 vs 32 tasks of a synthetic split, CPU.

    .venv/bin/python bench/eval_memory.py [--frames 40] [--size 512] [--fid]

A synthetic split of N/2 clips (real face photos animated by the sample's renderer, H.264 files) with
one cross pair per clip, so N tasks; the source copy is evaluated on it with pixel metrics and FVD (and
FID with --fid), each split size in a fresh child process so its peak RSS is its own. The run streams
clips per task through a cache of two and keeps only per-task features, so the peak-RSS ratio of 32 to
4 tasks stays near 1 (the goal is <= 1.3). Before streaming, every clip was held at the evaluation size
and every generated video was kept for FVD: at 40 frames of 512x512 that is 31 MB per clip and per
task, ~1.5 GB more at 32 tasks than at 4.

The metric networks run at random weights (files this bench writes): memory, not the metric's value,
is measured. FID is off by default because Inception costs ~0.35 s per frame on a CPU and its memory
is per-task features like FVD's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# Run as a script from bench/: put the repository first so `eval` is the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.baselines import SourceCopy
from eval.config import load_config
from eval.run import evaluate
from eval.scorers import load_scorers
from eval.tasks import split_tasks
from pipeline.faces import open_detector
from pipeline.sample.portraits import PORTRAITS
from pipeline.sample.render import Actor, Shot, render_video, write_mp4
from pipeline.split import (
    Clip,
    DatasetCounts,
    Fingerprint,
    Pair,
    Pairs,
    Split,
    Thresholds,
    load_split,
    media_sha256,
    write_split,
)

TASKS = (4, 32)
MIB = 2**20
DATASET = "synthetic"
MEDIA_SIDE = 320  # pixels of the rendered footage; the evaluation crop is resized from it


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_synthetic_split(root: Path, clips: int, frames: int) -> Path:
    """`clips` H.264 clips of one face each under `root/synthetic/`, and a split naming them with a ring
    of cross pairs (clip i drives clip i+1's portrait): 2 x `clips` tasks. Returns the split file."""
    folder = root / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    portraits = list(PORTRAITS)
    entries = []
    for index in range(clips):
        actor = Actor(portraits[index % len(portraits)], (0.5, 0.48), MEDIA_SIDE * 0.34)
        video, _ = render_video([Shot((actor,), frames, scene=index)], (MEDIA_SIDE, MEDIA_SIDE), seed=index)
        name = f"clip{index:03d}"
        write_mp4(folder / f"{name}.mp4", video, 25)
        entries.append(
            Clip(
                item_id=f"{DATASET}/{name}",
                dataset=DATASET,
                native_id=name,
                youtube_id=f"yt{index:03d}",
                identity=f"person{index:03d}",
                identity_kind="synthetic",
                range=None,
                crop=None,
                media=f"{name}.mp4",
                modality="video",
                media_cut=True,
                fps=25.0,
                fps_from="media",
                media_frames=frames,
                sha256=media_sha256(folder / f"{name}.mp4", "video"),
            )
        )
    ids = [clip.item_id for clip in entries]
    pairs = [Pair(source=ids[i], driving=ids[(i + 1) % len(ids)]) for i in range(len(ids))]
    counts = DatasetCounts(
        pool_split="test", pool=clips, eligible=clips, excluded={}, walked=clips, selected=clips, not_reached=0
    )
    split = Split(
        per_dataset=clips,
        thresholds=Thresholds(),
        train_youtube_ids=Fingerprint(count=0, sha256=hashlib.sha256(b"").hexdigest()),
        notes=["synthetic split of bench/eval_memory.py"],
        counts={DATASET: counts},
        clips=entries,
        skipped=[],
        pairs=Pairs(seed=0, method="drawn", draws=1, note="a ring", pairs=pairs),
    )
    path = root / "split.json"
    write_split(split, path)
    return path


def write_random_weights(folder: Path, fid: bool) -> None:
    """Real-architecture metric networks at seeded random weights (see the module docstring)."""
    import torchvision
    from cdfvd.third_party.i3d.pytorch_i3d import InceptionI3d

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(InceptionI3d(400, in_channels=3).state_dict(), folder / "i3d_pretrained_400.pt")
    if fid:
        inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True, num_classes=1008)
        torch.save(inception.state_dict(), folder / "weights-inception-2015-12-05-6726825d.pth")


def measure(tasks: int, frames: int, size: int, fid: bool) -> dict[str, float]:
    """Evaluate the source copy on a synthetic split of `tasks` tasks; this process's peak RSS."""
    with tempfile.TemporaryDirectory(prefix="eval_memory_") as scratch:
        root = Path(scratch)
        split_path = write_synthetic_split(root / "data", tasks // 2, frames)
        write_random_weights(root / "weights", fid)
        metrics = "[L1,PSNR,SSIM,FVD" + (",FID]" if fid else "]")
        config = load_config(None, [f"size={size}", f"metrics={metrics}", "fvd.windows_per_video=1", "fvd.seeds=[0]"])
        scorers = load_scorers(config, root / "weights", explicit=True, allow_unpinned=True)
        split = load_split(split_path)
        ready = peak_rss_bytes()
        start = time.perf_counter()
        result = evaluate(
            SourceCopy(),
            split,
            split_path,
            {DATASET: root / "data" / DATASET},
            split_tasks(split),
            scorers,
            open_detector(),
            root / "run",
        )
        seconds = time.perf_counter() - start
        failed = result.info["failed"]
        if failed or len(result.tasks) != tasks:
            raise RuntimeError(f"the run did not score every task: {len(result.tasks)} rows, failed {failed}")
        return {"tasks": tasks, "ready_bytes": ready, "peak_bytes": peak_rss_bytes(), "seconds": seconds}


def run_child(tasks: int, frames: int, size: int, fid: bool) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", str(tasks), "--frames", str(frames), "--size", str(size)]
    output = subprocess.run([*command, *(["--fid"] if fid else [])], check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def eval_memory_ratio(frames: int = 40, size: int = 512, fid: bool = False) -> tuple[float, list[dict[str, float]]]:
    """(peak RSS at 32 tasks / at 4 tasks, the children's measurements)."""
    results = [run_child(tasks, frames, size, fid) for tasks in TASKS]
    return results[-1]["peak_bytes"] / results[0]["peak_bytes"], results


def print_eval_memory(frames: int = 40, size: int = 512, fid: bool = False) -> float:
    """Print the table and the ratio (goal <= 1.3); returns the ratio."""
    ratio, results = eval_memory_ratio(frames, size, fid)
    metrics = "L1, PSNR, SSIM, FVD" + (", FID" if fid else "")
    print(f"\nEvaluation memory, source copy, {frames} frames per clip at {size}px, {metrics} (fresh process each)")
    print(f"{'tasks':>6}{'scorers ready MiB':>19}{'peak MiB':>10}{'seconds':>9}")
    for r in results:
        print(f"{r['tasks']:>6.0f}{r['ready_bytes'] / MIB:>19.0f}{r['peak_bytes'] / MIB:>10.0f}{r['seconds']:>9.1f}")
    print(f"peak RSS ratio {TASKS[-1]} / {TASKS[0]} tasks: {ratio:.3f} (goal <= 1.3)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40, help="frames per synthetic clip (at least 18)")
    parser.add_argument("--size", type=int, default=512, help="evaluation crop side in pixels")
    parser.add_argument("--fid", action="store_true", help="also FID (slow on a CPU)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.frames, args.size, args.fid)))
        return
    print_eval_memory(args.frames, args.size, args.fid)


if __name__ == "__main__":
    main()
