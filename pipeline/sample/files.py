"""Byte-exact writing of annotation files and the small frame operations the official tools perform.

Annotation quirks (a byte-order mark, CRLF endings, comma+space separators) are part of what the
sample must reproduce, so text is written as bytes exactly as given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from pipeline.sample.render import FaceGeometry


def write_text(
    path: Path, lines: Iterable[str], *, newline: str = "\n", bom: bool = False, final_newline: bool = True
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = newline.join(lines) + (newline if final_newline else "")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8"))


def write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")


def truncate(path: Path, fraction: float) -> None:
    """A download cut short: keep the first `fraction` of the bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def face_box(geometry: Sequence[FaceGeometry], portrait: str | None = None) -> tuple[float, float, float, float]:
    """Union of one actor's (or every actor's) face boxes over a run of frames."""
    boxes = np.array([g.box for g in geometry if portrait is None or g.portrait == portrait])
    return (float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()))


def square_around(
    box: tuple[float, float, float, float], scale: float, width: int, height: int
) -> tuple[int, int, int, int]:
    """An integer square window `scale` times the box's larger side, centred on it, kept in the frame.

    The side is even (H.264 in yuv420p needs even sizes) as long as the frame's sides are.
    """
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = min(2 * math.ceil(max(box[2] - box[0], box[3] - box[1]) * scale / 2), width, height)
    x0 = round(min(max(cx - side / 2, 0), width - side))
    y0 = round(min(max(cy - side / 2, 0), height - side))
    return x0, y0, x0 + side, y0 + side


def crop(frames: np.ndarray, window: tuple[int, int, int, int], size: int | None = None) -> np.ndarray:
    """Frames cut to an integer window (x0, y0, x1, y1), resized to size x size when given."""
    x0, y0, x1, y1 = window
    out = np.ascontiguousarray(frames[..., y0:y1, x0:x1, :])
    if size is None:
        return out
    return np.stack(
        [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in out.reshape(-1, *out.shape[-3:])]
    ).reshape(*out.shape[:-3], size, size, 3)


def even(frames: np.ndarray) -> np.ndarray:
    """H.264 with yuv420p needs even sides: drop a last row/column when odd."""
    h, w = frames.shape[-3] & ~1, frames.shape[-2] & ~1
    return np.ascontiguousarray(frames[..., :h, :w, :])
