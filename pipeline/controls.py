"""Per-frame controls derived from FaceMesh landmarks: head pose, face box, and a blur score.

Head pose is a perspective-n-point fit of a small generic 3D face to a few rigid mesh points, not the
landmarker's own depth output: the points chosen (eye corners, nose, cheek edges) barely move with
expression, so talking and blinking do not leak into the angles, and the fit costs ~0.1 ms a frame.

Conventions (camera frame: x to the image right, y down, z into the scene; angles in degrees):
- yaw > 0: the subject turns to their left, i.e. the nose moves to the image right;
- pitch > 0: the subject looks up (the nose moves up in the image);
- roll > 0: the head tilts clockwise in the image as displayed (the eye line's angle atan2(dy, dx));
- the rotation taking the model (frontal, facing the camera) to the head is Rz(roll)·Rx(−pitch)·Ry(−yaw)
  with right-handed rotations about the camera axes: the head rolls, then nods about its own ear-to-ear
  axis, then turns about its own vertical axis.
"""

from __future__ import annotations

import cv2
import numpy as np

# A generic adult face in millimetres, from anthropometric averages (inter-canthal ~32 mm, bi-ocular
# ~90 mm, nose tip ~40 mm below the eye line and ~30 mm in front of the inner eye corners, cheeks
# ~135 mm apart), origin between the eyes, axes as the camera's for a frontal face. Keys are indices
# of mediapipe's face mesh; "right"/"left" are the subject's own sides.
FACE_MODEL: dict[int, tuple[float, float, float]] = {
    33: (-45.0, -1.0, 8.0),  # right eye, outer corner
    133: (-16.0, 1.0, 0.0),  # right eye, inner corner
    362: (16.0, 1.0, 0.0),  # left eye, inner corner
    263: (45.0, -1.0, 8.0),  # left eye, outer corner
    168: (0.0, -5.0, -12.0),  # nasion, between the eyes
    1: (0.0, 40.0, -30.0),  # nose tip
    2: (0.0, 46.0, -14.0),  # subnasale, where the nose meets the upper lip
    98: (-19.0, 39.0, -8.0),  # right nose wing
    327: (19.0, 39.0, -8.0),  # left nose wing
    234: (-68.0, 16.0, 50.0),  # right cheek edge, in front of the ear
    454: (68.0, 16.0, 50.0),  # left cheek edge, in front of the ear
}
_INDICES = np.array(list(FACE_MODEL))
_MODEL = np.array(list(FACE_MODEL.values()), np.float64)
# between the eye centres (mean of each eye's two corners): the length `scale` reports
INTEROCULAR_MM = float(FACE_MODEL[362][0] + FACE_MODEL[263][0] - FACE_MODEL[33][0] - FACE_MODEL[133][0]) / 2
# Focal length in units of the image's longer side. The build's 512 crops hold a face ~200-250 px
# wide, so this puts the face ~0.6 m from the camera, a typical talking-head framing. Measured on the
# sample, halving or doubling it moves the angles by under 1 degree for frontal heads and by 1-3 degrees
# for heads turned 30-50 degrees: the angles are comparable across clips, not metrology.
FOCAL_PER_SIDE = 2.0
POSE_COLUMNS = ("yaw", "pitch", "roll", "tx", "ty", "scale")  # head_pose's columns, in order


def head_pose(landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(T, 6) float32: yaw, pitch, roll (degrees, conventions above), tx, ty, scale (pixels).

    `landmarks` is (T, 478, 2) in pixels of images of `image_size` (width, height). tx, ty is the centre
    of the landmark box (`face_box_from_landmarks`); scale is the distance between the eye centres that a
    frontal face at the fitted depth would show, in pixels: unlike the distance measured in the image, it
    does not shrink when the head turns. A frame with any NaN among the model's points gives a NaN row.
    """
    width, height = image_size
    focal = FOCAL_PER_SIDE * max(width, height)
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], np.float64)
    boxes = face_box_from_landmarks(landmarks)
    pose = np.full((len(landmarks), len(POSE_COLUMNS)), np.nan, np.float32)
    pose[:, 3] = (boxes[:, 0] + boxes[:, 2]) / 2
    pose[:, 4] = (boxes[:, 1] + boxes[:, 3]) / 2
    for t, points in enumerate(np.ascontiguousarray(landmarks[:, _INDICES], np.float64)):
        if np.isnan(points).any():
            continue
        found, rvec, tvec = cv2.solvePnP(_MODEL, points, camera, None, flags=cv2.SOLVEPNP_SQPNP)
        if found and tvec[2, 0] > 0:
            pose[t, :3] = _angles(cv2.Rodrigues(rvec)[0])
            pose[t, 5] = focal * INTEROCULAR_MM / tvec[2, 0]
    return pose


def _angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """yaw, pitch, roll in degrees from R = Rz(roll)·Rx(−pitch)·Ry(−yaw).

    For R = Rz(c)·Rx(b)·Ry(a) the bottom row is (−cos b·sin a, sin b, cos b·cos a) and the middle column
    is (−sin c·cos b, cos c·cos b, sin b), which give a, b and c for |b| < 90°.
    """
    b = np.arcsin(np.clip(rotation[2, 1], -1.0, 1.0))
    a = np.arctan2(-rotation[2, 0], rotation[2, 2])
    c = np.arctan2(-rotation[0, 1], rotation[1, 1])
    return float(np.degrees(-a)), float(np.degrees(-b)), float(np.degrees(c))


def face_box_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(T, 4) float32 (x0, y0, x1, y1): the extent of the mesh, forehead to chin and cheek to cheek.

    The mesh stops at the upper forehead and does not cover hair or ears, so this box is tighter than a
    detector's; NaN rows stay NaN.
    """
    points = np.asarray(landmarks, np.float32)
    return np.concatenate([points.min(axis=1), points.max(axis=1)], axis=1)


# The side a face region is resampled to before measuring blur, so that a score means the same at every
# source resolution: it is the detail per face, not per pixel, that a 512x512 training crop keeps.
SHARPNESS_SIDE = 256


def sharpness(gray_crop: np.ndarray) -> float:
    """Variance of the Laplacian of a face region (uint8 grey levels), resolution-normalised.

    The region is resampled so that its longer side is SHARPNESS_SIDE px (area averaging when shrinking,
    bilinear when enlarging) before the 3x3 Laplacian: a sharp face keeps its score whether it was 300 or
    1500 px wide in the source, and a face smaller than SHARPNESS_SIDE, enlarged as a crop enlarges it,
    scores as blurry as it then looks. Higher is sharper; the score scales with the square of the
    contrast, so dim faces score lower. Pass the face's box (e.g. `face_box_from_landmarks`) cut from
    the grey frame, not the whole crop: a blurred background is no defect.
    """
    if gray_crop.ndim != 2 or min(gray_crop.shape) < 3:
        raise ValueError(f"expected a 2-D grey image of at least 3x3 pixels, got shape {gray_crop.shape}")
    factor = SHARPNESS_SIDE / max(gray_crop.shape)
    size = tuple(max(3, round(side * factor)) for side in gray_crop.shape[::-1])
    resample = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(gray_crop.astype(np.float32), size, interpolation=resample)
    return float(cv2.Laplacian(resized, cv2.CV_32F, ksize=1).var())
