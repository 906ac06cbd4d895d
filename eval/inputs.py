"""`rp-eval inputs`: the exact inputs of every task, for methods run outside this toolkit.

Another method is only comparable when it animates the same source from the same driving frames at the
same crop (eval.md §6.7). So the crops the run uses are exported: per task the source portrait as PNG and
the driving clip as H.264 (crf 12: near-lossless; yuv420p, so chroma is subsampled), plus `tasks.csv`
with the path each output video must have in the outputs folder.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from eval.config import EvalConfig
from eval.run import load_clips
from eval.tasks import split_tasks
from pipeline.encode import encode_h264
from pipeline.faces import FaceDetector
from pipeline.split import Split

CRF = 12


def write_inputs(
    split: Split,
    roots: dict[str, Path],
    config: EvalConfig,
    detector: FaceDetector,
    out: Path,
    progress: Callable[[str, int], Callable[[], None]],
) -> int:
    """Writes `out/<protocol>/<task>.source.png`, `out/<protocol>/<task>.driving.mp4` and `out/tasks.csv`;
    returns the number of tasks written (tasks whose clips are unusable are listed with their reason)."""
    clips, problems = load_clips(split, roots, config, detector, progress("cropping clips", len(split.clips)))
    tasks = split_tasks(split)
    out = Path(out)
    rows = []
    tick = progress("writing inputs", len(tasks))
    for task in tasks:
        folder = out / task.protocol
        folder.mkdir(parents=True, exist_ok=True)
        row = {"protocol": task.protocol, "task_id": task.task_id, "output": task.relative_path, "problem": ""}
        missing = [item for item in (task.source, task.driving) if item not in clips]
        if missing:
            row["problem"] = "; ".join(f"{item}: {problems.get(item, 'not in the split')}" for item in missing)
        else:
            driving = clips[task.driving]
            source_png = f"{task.protocol}/{task.task_id}.source.png"
            driving_mp4 = f"{task.protocol}/{task.task_id}.driving.mp4"
            Image.fromarray(clips[task.source].frames[0]).save(out / source_png)
            (out / driving_mp4).write_bytes(encode_h264(driving.frames, driving.fps, crf=CRF))
            row |= {
                "source_png": source_png,
                "driving_mp4": driving_mp4,
                "frames": len(driving.frames),
                "fps": driving.fps,
                "size": config.size,
            }
        rows.append(row)
        tick()
    columns = ["protocol", "task_id", "source_png", "driving_mp4", "output", "frames", "fps", "size", "problem"]
    with open(out / "tasks.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return sum(1 for row in rows if not row["problem"])
