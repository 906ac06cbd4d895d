"""`rp-eval inputs`: the exact inputs of every task, for methods run outside this toolkit.

Another method is only comparable when it animates the same source from the same driving frames at the
same crop (eval.md §6.7). So the crops the run uses are exported: per task the source portrait as PNG and
the driving clip as FFV1 in Matroska with an RGB pixel format, plus `tasks.csv` with the path each output
must have in the outputs folder (an FFV1 .mkv; `eval.methods.OutputsFolder` lists the other layouts).

Why lossless: ours and the baselines are driven by, and scored on, the frames in memory; another method
must get the very same driving frames (a decoder returns them bit for bit) and hand back frames the
metrics see unchanged, or its scores carry a codec's error ours do not. FFV1 rather than PNG frames: one
file per clip, decodable by FFmpeg, OpenCV and PyAV, and about 0.66x the size of PNG frames (on the
sample's crops at 512x512: 123-148 KB per frame for FFV1, 177-224 KB for PNG at Pillow's default level,
768 KB raw; the former H.264 crf 12 yuv420p took 4-6 KB but decoded 42-43 dB PSNR away from the crops).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from eval.clips import ClipStore, ClipUnusable
from eval.config import EvalConfig
from eval.methods import OutputsFolder
from eval.tasks import split_tasks
from pipeline.encode import encode_ffv1
from pipeline.faces import FaceDetector
from pipeline.split import Split


def write_inputs(
    split: Split,
    roots: dict[str, Path],
    config: EvalConfig,
    detector: FaceDetector,
    out: Path,
    progress: Callable[[str, int], Callable[[], None]],
) -> int:
    """Writes `out/<protocol>/<task>.source.png`, `out/<protocol>/<task>.driving.mkv` and `out/tasks.csv`;
    returns the number of tasks written (tasks whose clips are unusable are listed with their reason).
    Clips are cropped when a task needs them and not all kept, so memory does not grow with the split."""
    store = ClipStore(split.clips, roots, config.size, detector, config.max_frames)
    tasks = split_tasks(split)
    out = Path(out)
    rows = []
    tick = progress("writing inputs", len(tasks))
    for task in tasks:
        folder = out / task.protocol
        folder.mkdir(parents=True, exist_ok=True)
        row = {
            "protocol": task.protocol,
            "task_id": task.task_id,
            "output": OutputsFolder.lossless_path(task),
            "problem": "",
        }
        problems = []
        for item in (task.source, task.driving):  # the store keeps both: it holds the last two clips
            try:
                store.get(item)
            except ClipUnusable as unusable:
                problems.append(f"{unusable.item_id}: {unusable.reason}")
        if problems:
            row["problem"] = "; ".join(problems)
        else:
            driving = store.get(task.driving)
            source_png = f"{task.protocol}/{task.task_id}.source.png"
            driving_mkv = f"{task.protocol}/{task.task_id}.driving.mkv"
            Image.fromarray(store.get(task.source).frames[0]).save(out / source_png)
            (out / driving_mkv).write_bytes(encode_ffv1(driving.frames, driving.fps))
            row |= {
                "source_png": source_png,
                "driving": driving_mkv,
                "frames": len(driving.frames),
                "fps": driving.fps,
                "size": config.size,
            }
        rows.append(row)
        tick()
    columns = ["protocol", "task_id", "source_png", "driving", "output", "frames", "fps", "size", "problem"]
    with open(out / "tasks.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return sum(1 for row in rows if not row["problem"])
