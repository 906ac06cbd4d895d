"""AED and APD from the pipeline's own face analysis: the offline extractor, named in every column.

Values are only comparable with the same extractor (eval.md §6.5), so the columns carry its name. All
come from the pipeline's 478 FaceMesh landmarks, tracked over each whole video (frame 0 included) in one
run. Each video is its own anchor: the generated video's motion counts from the generated frame 0, the
driver's from the driver's frame 0.

- `AED[mp478-rel]` (metric `AED`, the default): expression distance that ignores identity and is fair to
  both motion modes. Each video's motion is taken relative to its own first frame, with pose factored
  out first:
  1. pose: every frame is mapped onto the video's frame 0 by the least-squares affine map between their
     rigid upper-face points (eye corners, nose ridge and wings, forehead, temples and cheek edges, which
     expression barely moves). An affine camera's view of the rigid face removes translation, roll,
     scale and the foreshortening of yaw and pitch; only the depth parallax of the lips under large
     turns is left;
  2. motion: the aligned expression points (eyelids, brows, lips, mouth corners, chin) minus the same
     points in frame 0;
  3. identity: those displacements are written in frame 0's own affine face basis, x along the eye
     line (one unit = the distance between the eye centres) and y from between the eyes to the nose tip
     (one unit = that distance). A face wider, longer or sheared by any linear map shows the same
     coordinates for the same expression change, so a driver's face shape cancels.
  AED is, per frame, the mean over expression points of the Euclidean distance between the generated
  and the reference displacements, in those face units. Why each video anchors on its own frame 0, and
  the generated one not on the source image: an absolute-motion method copies the driver's expression,
  so its frame 0 already shows the driver's first expression, not the source's. Anchored on the source
  it would pay, on every frame, the gap between the source's expression and the driver's first frame
  (1.19 face units on one synthetic case, where perfect relative transfer scored 0). Anchored on their
  own frame 0, perfect absolute and perfect relative transfer both score 0; what is compared is the
  change of expression over the video, which both modes must follow. Frame 0 itself scores 0 for every
  method when it is scored (cross-reenactment).
- `AED[mp478-abs]` (metric `AED-legacy-abs`, only when listed): the earlier measure, kept for comparison
  with such tables. Seven absolute measures in the face's own frame (origin between the eyes, x along the
  eye line, unit the distance between the eye centres): both eye apertures, mouth aperture and width,
  both brow heights, and the lift of the mouth corners; the mean absolute difference between a generated
  frame and its reference, in interocular distances. It rewards copying the driver's face shape, and
  yaw and pitch read as expression.
- `APD[pnp-deg]`: head-pose distance. The pipeline's perspective-n-point head pose (`head_pose`); the mean
  absolute difference of yaw, pitch and roll in degrees. Translation is excluded (it measures framing).
The reference is the ground truth in self-reenactment and the driving frame in cross-reenactment; a frame
pair counts only when the landmarker finds the face in both, and the frames without are counted. Where a
frame 0 shows no face, AED anchors both videos on the first frame where both show one (the frames before
it count as without a face). APD against the driver is meaningful for absolute motion only (eval.md §3): the run records
each method's motion mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.controls import head_pose
from pipeline.faces import LandmarkTracker

AED_NAME, AED_ABSOLUTE_NAME, APD_NAME = "AED[mp478-rel]", "AED[mp478-abs]", "APD[pnp-deg]"
AED_UNIT = "face units (x: eye-centre distance, y: eyes to nose tip)"
BACKEND = "pipeline FaceMesh 478 landmarks (mediapipe, tracking); head pose by solvePnP (pipeline.controls)"
RELATIVE_BACKEND = (
    "pipeline FaceMesh 478 landmarks (mediapipe, tracking); 27 expression points relative to each "
    "video's own frame 0 (generated to generated, driver to driver) after an affine fit of 19 rigid points, "
    "in the face's own eye/nose basis"
)

RIGHT_EYE, LEFT_EYE = (33, 133), (362, 263)  # corners; "right" is the subject's own side
RIGHT_LIDS, LEFT_LIDS = (159, 145), (386, 374)
INNER_LIPS, MOUTH_CORNERS = (13, 14), (61, 291)
RIGHT_BROW, LEFT_BROW = 105, 334
NOSE_TIP = 1
EXPRESSION_MEASURES = (
    "right_eye_aperture",
    "left_eye_aperture",
    "mouth_aperture",
    "mouth_width",
    "right_brow_height",
    "left_brow_height",
    "mouth_corner_lift",
)
# Points that move with the skull, not with expression: eye corners, nasion and nose ridge, nose tip and
# wings, forehead, temples, cheek edges in front of the ears (the jaw line moves with the mouth: left out).
RIGID_POINTS = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 98, 327, 10, 151, 127, 356, 234, 454)
# Points that carry expression: upper and lower eyelids, brows, inner and outer lips, mouth corners, chin.
EXPRESSION_POINTS = (
    *(159, 158, 160, 145, 144, 153),  # right eyelids
    *(386, 385, 387, 374, 373, 380),  # left eyelids
    *(70, 105, 107, 300, 334, 336),  # brows
    *(13, 14, 0, 17, 61, 291, 81, 311),  # lips and mouth corners
    152,  # chin (the jaw opens)
)


def expression(landmarks: np.ndarray) -> np.ndarray:
    """(T, 7) absolute expression measures (`AED-legacy-abs`, see the module docstring) from (T, 478, 2)
    landmarks; NaN rows stay NaN."""
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


def face_basis(anchor: np.ndarray) -> np.ndarray:
    """2x2 matrix whose columns are the anchor face's x (right to left eye centre) and y (between the eyes
    to the nose tip) vectors in pixels: displacements solved in it do not depend on the face's shape."""
    points = np.asarray(anchor, np.float64)
    right_eye, left_eye = points[list(RIGHT_EYE)].mean(axis=0), points[list(LEFT_EYE)].mean(axis=0)
    return np.stack([left_eye - right_eye, points[NOSE_TIP] - (right_eye + left_eye) / 2], axis=1)


def relative_motion(landmarks: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """(T, len(EXPRESSION_POINTS), 2) pose-free displacements of the expression points from the anchor,
    in the anchor's face units (see the module docstring); NaN where a frame or the anchor has no face."""
    points = np.asarray(landmarks, np.float64)
    out = np.full((len(points), len(EXPRESSION_POINTS), 2), np.nan)
    base = np.asarray(anchor, np.float64)
    if not np.isfinite(base).all():
        return out
    to_face_units = np.linalg.inv(face_basis(base)).T
    target = base[list(RIGID_POINTS)]
    rest = base[list(EXPRESSION_POINTS)]
    for t, frame in enumerate(points):
        if not np.isfinite(frame).all():
            continue
        rigid = np.column_stack([frame[list(RIGID_POINTS)], np.ones(len(RIGID_POINTS))])
        affine, *_ = np.linalg.lstsq(rigid, target, rcond=None)  # (3, 2): frame pixels -> anchor pixels
        moved = np.column_stack([frame[list(EXPRESSION_POINTS)], np.ones(len(EXPRESSION_POINTS))]) @ affine
        out[t] = (moved - rest) @ to_face_units
    return out


def expression_distance(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(T,) AED[mp478-rel]: per frame, the mean over expression points of the Euclidean distance between
    two `relative_motion` arrays."""
    return np.linalg.norm(generated - reference, axis=-1).mean(axis=1)


def anchored_expression_distance(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(T,) AED[mp478-rel] of two whole landmark videos (T, 478, 2), each anchored on its own frame 0
    (see the module docstring for why); NaN where either video has no face.

    When either frame 0 shows no face (a model's first frame can be unrecognisable), both videos are
    anchored on the first frame where both show one, so one bad frame does not cost the whole video;
    the frames before it have no value. Perfect transfer still scores 0 from any common anchor."""
    both = np.flatnonzero(np.isfinite(generated).all(axis=(1, 2)) & np.isfinite(reference).all(axis=(1, 2)))
    out = np.full(len(generated), np.nan)
    if len(both):
        k = int(both[0])
        out[k:] = expression_distance(
            relative_motion(generated[k:], generated[k]), relative_motion(reference[k:], reference[k])
        )
    return out


@dataclass(frozen=True)
class Motion:
    """One whole video's face analysis, per frame; NaN where the landmarker finds no face."""

    landmarks: np.ndarray  # (T, 478, 2), frame 0 the video's anchor
    expression: np.ndarray  # (T, 7) absolute measures (`expression`)
    pose: np.ndarray  # (T, 3) yaw, pitch, roll in degrees


@dataclass(frozen=True)
class MotionDistances:
    """Per-frame distances between a generated video and its reference; NaN where a face is missing."""

    aed: np.ndarray  # AED[mp478-rel]
    aed_absolute: np.ndarray  # AED[mp478-abs]
    apd: np.ndarray  # APD[pnp-deg]


class FaceMotion:
    """Per-frame AED and APD of a generated video against a reference video (same size, same count)."""

    def __init__(self, landmarker: LandmarkTracker):
        self.landmarker = landmarker

    def analyse(self, frames: np.ndarray) -> Motion:
        """One whole video, tracked in one run; frame 0 is its anchor.

        Frame 0 is fed twice and its second, tracked, landmarks are kept: FaceMesh places a detected
        first frame differently from tracked ones (measured on a still clip: 0.07 face units at the
        mouth), which would otherwise read as an expression change in every frame."""
        tracked = self.landmarker.track(np.concatenate([frames[:1], frames]))[1:]
        size = (frames.shape[2], frames.shape[1])
        return Motion(tracked, expression(tracked), head_pose(tracked, size)[:, :3].astype(np.float64))

    def distances(self, generated: np.ndarray, reference: Motion, first_scored: int = 0) -> MotionDistances:
        """A whole generated video against the reference video's analysis (`analyse`, computed once per
        clip for every method: `eval.ground_truth`), each anchored on its own frame 0; the distances of
        frames `first_scored` onwards (in self-reenactment frame 0 is the source itself, not scored)."""
        gen, ref = self.analyse(generated), reference
        scored = slice(first_scored, None)
        return MotionDistances(
            anchored_expression_distance(gen.landmarks, ref.landmarks)[scored],
            np.abs(gen.expression - ref.expression).mean(axis=1)[scored],
            np.abs(gen.pose - ref.pose).mean(axis=1)[scored],
        )
