"""The face record and the detector protocol shared by every backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face: box (x0, y0, x1, y1) in pixels of the image given, x1/y1 exclusive."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray | None = None  # (K, 2) pixels; mediapipe gives eyes, nose, mouth, ear tragions

    @property
    def side(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


class FaceDetector(Protocol):
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 image, best first."""
        ...

    def close(self) -> None: ...


def prominent(faces: list[Face], ratio: float = 0.25) -> list[Face]:
    """Faces at least `ratio` times the area of the largest: the ones that make a sample ambiguous.

    A small face in the background does not compete with the subject; a second face of similar size does.
    """
    if not faces:
        return []
    largest = max(face.area for face in faces)
    return [face for face in faces if face.area >= ratio * largest]


def _centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _inside(point: tuple[float, float], box: tuple[float, float, float, float]) -> bool:
    return box[0] <= point[0] < box[2] and box[1] <= point[1] < box[3]


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    overlap = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap
    return overlap / union if union > 0 else 0.0


def labelled_face(faces: list[Face], box: tuple[float, float, float, float]) -> Face | None:
    """The detection an annotation's subject box names, or None when none matches.

    Gated by centres both ways: the detection's centre lies inside the annotated box and the box's
    centre inside the detection. IoU alone would not do: annotated boxes are looser than a detector's
    (CelebA's wild boxes take in hair and chin, VGGFace2's are MTCNN boxes enlarged), so the subject's
    IoU can be low, while a small face in the background of a loose box, or a neighbour reaching into
    it, fails one of the two containments. Of several that pass, the one overlapping the box most.
    """
    centre = _centre(box)
    matches = [face for face in faces if _inside(_centre(face.box), box) and _inside(centre, face.box)]
    return max(matches, key=lambda face: _iou(face.box, box), default=None)
