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
