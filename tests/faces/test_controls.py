"""Head pose, face box and blur score: synthetic projections with known angles, then real meshed frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.controls import (
    FACE_MODEL,
    FOCAL_PER_SIDE,
    INTEROCULAR_MM,
    face_box_from_landmarks,
    head_pose,
    sharpness,
)
from pipeline.faces import POINTS, LandmarkTracker
from pipeline.sample.render import Actor, Shot, render_video

SIZE = (512, 512)
FOCAL = FOCAL_PER_SIDE * max(SIZE)
DISTANCE_MM = 600.0
EYE_CORNERS = (33, 263)  # outer corners: the subject's right eye (image left), then left
NOSE_TIP = 1


def about(axis: int, degrees: float) -> np.ndarray:
    """A right-handed rotation about camera axis 0 (x, right), 1 (y, down) or 2 (z, into the scene)."""
    vector = np.zeros(3)
    vector[axis] = np.radians(degrees)
    return cv2.Rodrigues(vector)[0]


def project(yaw: float, pitch: float, roll: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """(1, 478, 2) landmarks of the generic face turned by the documented convention, 600 mm away.

    The points head_pose does not read are set to the model points' centroid, so the face box is the
    model points' extent.
    """
    rotation = about(2, roll) @ about(0, -pitch) @ about(1, -yaw)
    model = np.array(list(FACE_MODEL.values()))
    camera = model @ rotation.T + (15.0, -10.0, DISTANCE_MM)
    pixels = FOCAL * camera[:, :2] / camera[:, 2:] + np.array(SIZE) / 2
    pixels += np.random.default_rng(seed).normal(0, noise, pixels.shape)
    landmarks = np.tile(pixels.mean(0), (1, POINTS, 1))
    landmarks[0, list(FACE_MODEL)] = pixels
    return landmarks.astype(np.float32)


def test_the_convention_means_what_the_docstring_says() -> None:
    def nose_from_eyes(landmarks: np.ndarray) -> np.ndarray:
        return landmarks[0, NOSE_TIP] - landmarks[0, list(EYE_CORNERS)].mean(0)

    frontal = nose_from_eyes(project(0, 0, 0))
    assert nose_from_eyes(project(30, 0, 0))[0] > frontal[0] + 10  # turned to their left: nose to image right
    assert nose_from_eyes(project(0, 20, 0))[1] < frontal[1] - 10  # looking up: nose moves up
    right_eye, left_eye = project(0, 0, 15)[0, list(EYE_CORNERS)]
    dx, dy = left_eye - right_eye
    assert np.degrees(np.arctan2(dy, dx)) == pytest.approx(15, abs=0.5)  # clockwise on screen


@pytest.mark.parametrize(
    "angles", [(0, 0, 0), (30, 0, 0), (-30, 0, 0), (0, 20, 0), (0, -20, 0), (0, 0, 15), (25, -15, 10), (-40, 10, -20)]
)
def test_known_rotations_are_recovered(angles: tuple[float, float, float]) -> None:
    landmarks = project(*angles, noise=0.5, seed=sum(angles) + 100)
    pose = head_pose(landmarks, SIZE)
    assert pose.shape == (1, 6) and pose.dtype == np.float32
    np.testing.assert_allclose(pose[0, :3], angles, atol=2.0)
    box = face_box_from_landmarks(landmarks)[0]
    np.testing.assert_allclose(pose[0, 3:5], (box[:2] + box[2:]) / 2, atol=1e-3)
    # the eye distance of a frontal face at the fitted depth: unchanged when the head turns
    assert pose[0, 5] == pytest.approx(FOCAL * INTEROCULAR_MM / DISTANCE_MM, rel=0.02)


def test_nan_in_nan_out() -> None:
    landmarks = np.concatenate([project(10, 5, 0), np.full((1, POINTS, 2), np.nan, np.float32), project(0, 0, 0)])
    pose = head_pose(landmarks, SIZE)
    assert np.isnan(pose[1]).all() and np.isfinite(pose[[0, 2]]).all()
    assert np.isnan(face_box_from_landmarks(landmarks)[1]).all()
    assert head_pose(np.empty((0, POINTS, 2), np.float32), SIZE).shape == (0, 6)


@pytest.fixture(scope="module")
def hanks(landmarker: LandmarkTracker):
    """A rendered clip of a real photo whose head is turned (to its left) and rolls over time."""
    frames, geometry = render_video([Shot((Actor("hanks", (0.5, 0.5), 220),), 40, scene=3)], SIZE, seed=2)
    return frames, geometry, landmarker.track(frames)


def test_pose_on_real_frames_is_finite_smooth_and_follows_the_roll(hanks) -> None:
    _, geometry, landmarks = hanks
    pose = head_pose(landmarks, SIZE)
    assert np.isfinite(pose).all()
    assert np.abs(np.diff(pose[:, :3], axis=0)).max() < 3.0  # degrees between consecutive frames
    assert pose[:, :2].std(axis=0).max() < 1.5  # the render only rolls: yaw and pitch hold still
    eyes = np.array([faces[0].points[1] - faces[0].points[0] for faces in geometry])
    true_roll = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]))
    assert np.ptp(true_roll) > 3
    assert (pose[:, 2] - true_roll).std() < 1.0
    widths = np.array([faces[0].box[2] - faces[0].box[0] for faces in geometry])
    assert np.ptp(widths) / widths.mean() > 0.05  # the render zooms, and scale follows it
    ratio = pose[:, 5] / widths
    assert ratio.std() / ratio.mean() < 0.02
    for (tx, ty), faces in zip(pose[:, 3:5], geometry, strict=True):
        x0, y0, x1, y1 = faces[0].box
        assert x0 < tx < x1 and y0 < ty < y1


def test_yaw_and_roll_change_sign_in_a_mirrored_frame(landmarker: LandmarkTracker, hanks) -> None:
    frames, _, landmarks = hanks
    pose = head_pose(landmarks[:8], SIZE)
    mirrored = head_pose(landmarker.track(frames[:8, :, ::-1]), SIZE)
    assert pose[:, 0].min() > 10 and mirrored[:, 0].max() < -10
    assert np.abs(pose[:, 0] + mirrored[:, 0]).max() < 5
    assert np.abs(pose[:, 2] + mirrored[:, 2]).max() < 2
    assert np.abs(pose[:, 1] - mirrored[:, 1]).max() < 3


def test_face_box_covers_the_face(hanks) -> None:
    _, geometry, landmarks = hanks
    boxes = face_box_from_landmarks(landmarks)
    assert boxes.shape == (len(landmarks), 4) and boxes.dtype == np.float32
    for box, faces in zip(boxes, geometry, strict=True):
        points = faces[0].points
        assert np.all(points >= box[:2]) and np.all(points <= box[2:])
        x0, y0, x1, y1 = faces[0].box
        overlap = max(0, min(box[2], x1) - max(box[0], x0)) * max(0, min(box[3], y1) - max(box[1], y0))
        assert overlap > 0.6 * (box[2] - box[0]) * (box[3] - box[1])


def face_crop(side: int, face_px: float) -> np.ndarray:
    """The grey face region of one rendered frame (the same face at any resolution)."""
    frames, geometry = render_video([Shot((Actor("astronaut", (0.5, 0.5), face_px),), 1, scene=3)], (side, side), 5)
    x0, y0, x1, y1 = (round(v) for v in geometry[0][0].box)
    return cv2.cvtColor(frames[0], cv2.COLOR_RGB2GRAY)[y0:y1, x0:x1]


def test_sharpness_falls_with_blur_and_ignores_resolution() -> None:
    crop = face_crop(512, 300)
    scores = [sharpness(cv2.GaussianBlur(crop, (0, 0), sigma)) if sigma else sharpness(crop) for sigma in (0, 1, 2, 4)]
    assert scores == sorted(scores, reverse=True) and scores[2] < 0.5 * scores[0]

    large, small = face_crop(1024, 600), face_crop(256, 150)
    raw = [cv2.Laplacian(c.astype(np.float32), cv2.CV_32F).var() for c in (large, crop)]
    assert raw[1] > 3 * raw[0]  # per pixel, the larger render looks much smoother ...
    assert sharpness(large) == pytest.approx(scores[0], rel=0.2)  # ... per face it is as sharp
    # a small face is enlarged to the measuring size, as the build enlarges it into a crop: it loses some
    assert 0.4 * scores[0] < sharpness(small) < scores[0]
    with pytest.raises(ValueError, match="2-D grey image"):
        sharpness(np.zeros((8, 8, 3), np.uint8))
