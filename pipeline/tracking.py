"""The main face's track through a shot, the runs where it is visible, and one stable crop per run.

The detector runs on every k-th frame; between two detections the box is interpolated. A run ends
where the tracked face is lost (a sampled frame without a face overlapping the track), so no clip
holds frames without its subject. The crop is a fixed square per clip (the paper crops around the
face without alignment): centred on the track's median centre, `crop_scale` times its median size,
widened to hold every box of the run, kept inside the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.faces import Face, prominent


def iou(a: tuple[float, ...] | np.ndarray, b: tuple[float, ...] | np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Run:
    """Frames [start, stop) of a segment where the main face is tracked."""

    start: int
    stop: int
    boxes: np.ndarray  # (stop - start, 4) interpolated face boxes
    multi_face_fraction: float  # of its sampled frames that show 2+ prominent faces

    def __len__(self) -> int:
        return self.stop - self.start


def face_runs(
    samples: dict[int, list[Face]], count: int, prominent_ratio: float, min_iou: float = 0.2, max_missed: int = 1
) -> list[Run]:
    """Runs of one segment of `count` frames from detections at sampled frame indices (0-based).

    Detectors flicker: up to `max_missed` consecutive sampled frames without the face are bridged when
    the face reappears where the track left it (the box is interpolated across them); a longer gap, or
    a face somewhere else, ends the run.
    """
    indices = sorted(samples)
    matched: dict[int, np.ndarray | None] = {}
    crowded: dict[int, bool] = {}
    last: np.ndarray | None = None
    lost = 0
    for index in indices:
        faces = prominent(samples[index], prominent_ratio)
        crowded[index] = len(faces) > 1
        if lost >= max_missed:
            last = None  # the track is gone: the largest face, wherever it is, may start the next one
        if last is None:
            chosen = max(faces, key=lambda f: f.area, default=None)
        else:
            best = max(((iou(last, f.box), f) for f in faces), key=lambda s: s[0], default=(0.0, None))
            chosen = best[1] if best[0] >= min_iou else None
        matched[index] = np.array(chosen.box) if chosen is not None else None
        if chosen is not None:
            last, lost = matched[index], 0
        else:
            lost += 1
    groups: list[list[int]] = []
    missed = 0
    for index in indices:
        if matched[index] is None:
            missed += 1
            continue
        bridged = groups and missed <= max_missed and iou(matched[groups[-1][-1]], matched[index]) >= min_iou
        if bridged:
            groups[-1].append(index)
        else:
            groups.append([index])
        missed = 0
    runs = []
    for group in groups:
        first, final = indices.index(group[0]), indices.index(group[-1])
        # a run reaches out to the segment's edges when no sample there says the face is gone
        start = 0 if first == 0 else group[0]
        stop = count if final == len(indices) - 1 else group[-1] + 1
        frames = np.arange(start, stop)
        boxes = np.stack([np.interp(frames, group, [matched[k][c] for k in group]) for c in range(4)], axis=1)
        sampled = [i for i in indices if start <= i < stop]
        runs.append(Run(start, stop, boxes, sum(crowded[i] for i in sampled) / len(sampled)))
    return runs


def stable_crop(boxes: np.ndarray, crop_scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """A fixed square (x0, y0, x1, y1) for a whole clip, inside a width x height frame."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    centre = np.median(centres, axis=0)
    reach = np.max(np.abs(centres - centre) + sides[:, None] / 2) * 2 * 1.05
    side = round(min(max(crop_scale * float(np.median(sides)), reach), width, height))
    x0 = round(min(max(centre[0] - side / 2, 0), width - side))
    y0 = round(min(max(centre[1] - side / 2, 0), height - side))
    return x0, y0, x0 + side, y0 + side
