"""AED and APD from the pipeline's own face analysis: the offline extractor, named in every column.

Values are only comparable with the same extractor (eval.md §6.5), so the columns carry its name:
- `AED[mp478-face]`: expression distance. From the pipeline's 478 FaceMesh landmarks, seven measures in
  the face's own frame (origin between the eyes, x along the eye line, unit the distance between the eye
  centres, so head position, roll and face size cancel): both eye apertures, mouth aperture and width,
  both brow heights, and the lift of the mouth corners. AED is the mean absolute difference of those
  measures between a generated frame and its reference, in interocular distances.
- `APD[pnp-deg]`: head-pose distance. The pipeline's perspective-n-point head pose (`head_pose`); the mean
  absolute difference of yaw, pitch and roll in degrees. Translation is excluded (it measures framing).
The reference is the ground truth in self-reenactment and the driving frame in cross-reenactment; a frame
pair counts only when the landmarker finds the face in both, and the frames without are counted.
APD against the driver is meaningful for absolute motion only (eval.md §3): the run records each method's
motion mode.
"""

from __future__ import annotations

import numpy as np

from pipeline.controls import head_pose
from pipeline.faces import LandmarkTracker

AED_NAME, APD_NAME = "AED[mp478-face]", "APD[pnp-deg]"
BACKEND = "pipeline FaceMesh 478 landmarks (mediapipe 0.10.21, tracking); head pose by solvePnP (pipeline.controls)"

RIGHT_EYE, LEFT_EYE = (33, 133), (362, 263)  # corners; "right" is the subject's own side
RIGHT_LIDS, LEFT_LIDS = (159, 145), (386, 374)
INNER_LIPS, MOUTH_CORNERS = (13, 14), (61, 291)
RIGHT_BROW, LEFT_BROW = 105, 334
EXPRESSION_MEASURES = (
    "right_eye_aperture",
    "left_eye_aperture",
    "mouth_aperture",
    "mouth_width",
    "right_brow_height",
    "left_brow_height",
    "mouth_corner_lift",
)


def expression(landmarks: np.ndarray) -> np.ndarray:
    """(T, 7) expression measures (see the module docstring) from (T, 478, 2) landmarks; NaN rows stay NaN."""
    points = np.asarray(landmarks, np.float64)
    right_eye = points[:, list(RIGHT_EYE)].mean(axis=1)
    left_eye = points[:, list(LEFT_EYE)].mean(axis=1)
    origin = (right_eye + left_eye) / 2
    axis = left_eye - right_eye
    unit = np.linalg.norm(axis, axis=1, keepdims=True)
    x_axis = axis / unit
    y_axis = np.stack([-x_axis[:, 1], x_axis[:, 0]], axis=1)  # x turned 90 degrees: down the face
    centred = points - origin[:, None]
    local = np.stack([(centred * x_axis[:, None]).sum(-1), (centred * y_axis[:, None]).sum(-1)], axis=-1)
    local = local / unit[:, :, None]

    def gap(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(local[:, a] - local[:, b], axis=1)

    eye_y_right = local[:, list(RIGHT_EYE), 1].mean(axis=1)
    eye_y_left = local[:, list(LEFT_EYE), 1].mean(axis=1)
    lips_y = local[:, list(INNER_LIPS), 1].mean(axis=1)
    return np.stack(
        [
            gap(*RIGHT_LIDS),
            gap(*LEFT_LIDS),
            gap(*INNER_LIPS),
            gap(*MOUTH_CORNERS),
            eye_y_right - local[:, RIGHT_BROW, 1],
            eye_y_left - local[:, LEFT_BROW, 1],
            lips_y - local[:, list(MOUTH_CORNERS), 1].mean(axis=1),
        ],
        axis=1,
    )


class FaceMotion:
    """Per-frame AED and APD of generated frames against reference frames (same size, same count)."""

    def __init__(self, landmarker: LandmarkTracker):
        self.landmarker = landmarker

    def analyse(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((T, 7) expression measures, (T, 3) yaw/pitch/roll degrees) of one clip; NaN where no face."""
        landmarks = self.landmarker.track(frames)
        size = (frames.shape[2], frames.shape[1])
        return expression(landmarks), head_pose(landmarks, size)[:, :3].astype(np.float64)

    def distances(self, generated: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((T,) AED, (T,) APD) per frame, NaN where either frame shows no face."""
        expr_gen, pose_gen = self.analyse(generated)
        expr_ref, pose_ref = self.analyse(reference)
        return np.abs(expr_gen - expr_ref).mean(axis=1), np.abs(pose_gen - pose_ref).mean(axis=1)
