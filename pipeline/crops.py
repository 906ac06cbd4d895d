"""Face detection and square crops on frames already in memory (driving videos, evaluation clips).

The build itself never holds full-size frames (see pipeline.process); these are for readers of short
clips that must crop exactly as the build does: the same detection size and the same resampling.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.faces import Face, FaceDetector


def unscaled(face: Face, scale_x: float, scale_y: float) -> Face:
    """A detection on a shrunk frame, in the full-size frame's pixels."""
    x0, y0, x1, y1 = face.box
    box = (x0 / scale_x, y0 / scale_y, x1 / scale_x, y1 / scale_y)
    points = None if face.keypoints is None else face.keypoints / np.array([scale_x, scale_y])
    return Face(box, face.score, points)


def detect_shrunk(detector: FaceDetector, frame: np.ndarray, max_side: int) -> list[Face]:
    """Faces of a frame shrunk to fit max_side (as the build detects), in the frame's own pixels."""
    scale = min(1.0, max_side / max(frame.shape[:2]))
    if scale == 1.0:
        return detector.detect(frame)
    small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return [unscaled(face, scale, scale) for face in detector.detect(small)]


def crop_resize(frames: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """(T, size, size, 3): area resampling when shrinking, cubic when enlarging, as the build's crops."""
    x0, y0, x1, y1 = box
    method = cv2.INTER_AREA if x1 - x0 > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f[y0:y1, x0:x1], (size, size), interpolation=method) for f in frames])
