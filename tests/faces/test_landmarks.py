"""mediapipe FaceMesh through the LandmarkTracker protocol, on rendered clips whose geometry is known."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.faces import POINTS, LandmarkTracker, open_landmarker
from pipeline.sample.render import Actor, FaceGeometry, Shot, render_still, render_video

SIZE = (512, 512)  # the build's crop size
IRIS = (468, 473)  # iris centres: the subject's right eye (image left), then left
NOSE_TIP = 1


@pytest.fixture(scope="module")
def clip() -> tuple[np.ndarray, list[list[FaceGeometry]]]:
    return render_video([Shot((Actor("hanks", (0.45, 0.5), 230),), 24, scene=3)], SIZE, seed=5)


def assert_on_geometry(points: np.ndarray, face: FaceGeometry) -> None:
    """Irises and nose tip within 6 % of the inter-eye distance of the rendered ground truth."""
    tolerance = 0.06 * np.linalg.norm(face.points[1] - face.points[0])
    found = points[[*IRIS, NOSE_TIP]]
    assert np.linalg.norm(found - face.points[:3], axis=1).max() < tolerance


def test_track_gives_pixels_of_the_given_frames(landmarker: LandmarkTracker, clip) -> None:
    frames, geometry = clip
    landmarks = landmarker.track(frames)
    assert landmarks.shape == (len(frames), POINTS, 2) and landmarks.dtype == np.float32
    assert np.isfinite(landmarks).all()
    for points, faces in zip(landmarks, geometry, strict=True):
        assert_on_geometry(points, faces[0])
    # a generator works as well (the build streams decoded frames), and half-size frames give half pixels
    small = landmarker.track(frame[::2, ::2] for frame in frames[:4])
    assert small.shape == (4, POINTS, 2)
    np.testing.assert_allclose(small[:, IRIS], landmarks[:4, IRIS] / 2, atol=4)


def test_frames_without_a_face_are_nan_rows(landmarker: LandmarkTracker, clip) -> None:
    frames, _ = clip
    empty, _ = render_video([Shot((), 3, scene=3)], SIZE, seed=5)  # the same scenery, nobody in it
    landmarks = landmarker.track(np.concatenate([frames[:4], empty, frames[4:8]]))
    missing = np.isnan(landmarks).all(axis=(1, 2))
    assert missing.tolist() == [False] * 4 + [True] * 3 + [False] * 4
    assert np.isfinite(landmarks[~missing]).all()
    assert landmarker.track([]).shape == (0, POINTS, 2)


def test_a_clip_does_not_inherit_the_previous_clips_tracking_state(landmarker: LandmarkTracker) -> None:
    """Without the reset, clip B's first frame is meshed in clip A's last face region: measured here, it
    then loses the face on that frame and the next frames differ by up to 4 px while the tracker settles."""
    clip_a, _ = render_video([Shot((Actor("hanks", (0.35, 0.45), 240),), 8, scene=3)], SIZE, seed=2)
    clip_b, _ = render_video([Shot((Actor("astronaut", (0.6, 0.55), 220),), 8, scene=5)], SIZE, seed=3)
    fresh = open_landmarker()
    expected = fresh.track(clip_b)
    fresh.close()
    landmarker.track(clip_a)
    np.testing.assert_array_equal(landmarker.track(clip_b), expected)


def test_single_on_still_images(landmarker: LandmarkTracker) -> None:
    image, (face,) = render_still([Actor("astronaut", (0.5, 0.45), 200)], SIZE, seed=9)
    points = landmarker.single(image)
    assert points is not None and points.shape == (POINTS, 2) and points.dtype == np.float32
    assert_on_geometry(points, face)
    nobody, _ = render_still([], SIZE, seed=9)
    assert landmarker.single(nobody) is None
    with pytest.raises(ValueError, match="RGB uint8"):
        landmarker.single(image.astype(np.float32))
    with pytest.raises(ValueError, match="unknown landmark backend"):
        open_landmarker("dlib")
