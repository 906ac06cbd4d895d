"""Baselines that need no training, so that tables on the sample compare something real.

- `source-copy`: the source portrait repeated for every driving frame. It scores what a method that
  ignores the motion scores: perfect identity, no expression or pose transfer.
- `landmark-warp`: the source warped by the similarity transform (rotation, uniform scale, translation)
  that maps the driving video's first-frame landmarks onto each frame's, found with the pipeline's own
  FaceMesh landmarks. It transfers rigid head motion relative to the first frame (no expression), the
  simplest thing a reenactment method must beat.
- `driving-copy`: the driving clip returned unchanged. A leakage control, not a method: it carries the
  driver's identity into every frame, so cross-reenactment's leakage columns must read 1 for it (and 0
  for `source-copy`); its self-reenactment rows are the ground truth itself.

Source-copy and driving-copy are controls (`control = True`): they bound the measures, so tables label
them and never make them bold nor rank them.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.faces import LandmarkTracker


class SourceCopy:
    name = "source-copy"
    motion_mode = "none"
    control = True
    description = "the source frame repeated"

    def generate(self, source: np.ndarray, driving: np.ndarray, fps: float | None = None) -> np.ndarray:
        return np.repeat(source[None], len(driving), axis=0)


class DrivingCopy:
    name = "driving-copy"
    motion_mode = "absolute"
    control = True
    description = "the driving clip returned unchanged: a driver-identity leakage control (leaks everything)"

    def generate(self, source: np.ndarray, driving: np.ndarray, fps: float | None = None) -> np.ndarray:
        return driving.copy()


class LandmarkWarp:
    name = "landmark-warp"
    motion_mode = "relative"
    control = False
    description = "source warped by the similarity between driving and first-frame landmarks (pipeline FaceMesh)"

    def __init__(self, landmarker: LandmarkTracker):
        self.landmarker = landmarker

    def transforms(self, driving: np.ndarray) -> list[np.ndarray]:
        """A 2x3 similarity per frame: from the first frame with a face to this frame; a frame without a
        face keeps the previous frame's transform (identity before the first face)."""
        landmarks = self.landmarker.track(driving)
        found = np.flatnonzero(np.isfinite(landmarks[:, 0, 0]))
        identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        if len(found) == 0:
            return [identity] * len(driving)
        anchor = landmarks[found[0]]
        out, current = [], identity
        for points in landmarks:
            if np.isfinite(points[0, 0]):
                matrix, _ = cv2.estimateAffinePartial2D(anchor, points, method=cv2.LMEDS)
                current = matrix if matrix is not None else current
            out.append(current)
        return out

    def generate(self, source: np.ndarray, driving: np.ndarray, fps: float | None = None) -> np.ndarray:
        height, width = source.shape[:2]
        return np.stack(
            [
                cv2.warpAffine(source, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                for matrix in self.transforms(driving)
            ]
        )
