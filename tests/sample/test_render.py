"""The synthetic media engine against the real components that will consume its output.

Faces are checked with mediapipe's own detector and landmarker, cuts with PySceneDetect, files with
PyAV: the sample dataset is only useful if those tools see in it what the geometry says is there.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import mediapipe as mp
import numpy as np
import pytest
from PIL import Image
from scenedetect import ContentDetector, detect

from pipeline.sample import portraits
from pipeline.sample.portraits import PORTRAITS, load_photo
from pipeline.sample.render import (
    Actor,
    FaceGeometry,
    Shot,
    render_still,
    render_video,
    write_audio,
    write_jpeg,
    write_mp4,
    write_png,
)

SIZE = (320, 320)
ONE = Shot((Actor("astronaut", (0.5, 0.5), 120),), 48, scene=3)
TWO_SCENES = [Shot((Actor("t1_b", (0.5, 0.5), 120),), 24, scene=scene) for scene in (4, 5)]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def detections(image: np.ndarray) -> list[tuple[float, ...]]:
    """Boxes (x0, y0, x1, y1) in pixels from mediapipe's full-range detector."""
    height, width = image.shape[:2]
    with mp.solutions.face_detection.FaceDetection(model_selection=1) as detector:
        found = detector.process(image).detections or []
    boxes = [d.location_data.relative_bounding_box for d in found]
    scale = (width, height, width, height)
    return [tuple(np.multiply((b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height), scale)) for b in boxes]


@pytest.fixture(scope="module")
def one_actor() -> tuple[np.ndarray, list[list[FaceGeometry]]]:
    return render_video([ONE], SIZE, seed=11)


def test_portraits_are_real_photos_with_consistent_geometry() -> None:
    for key, portrait in PORTRAITS.items():
        photo = load_photo(key)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[2] == 3
        x0, y0, x1, y1 = portrait.box
        height, width = photo.shape[:2]
        assert 0 <= x0 < x1 <= width + 1 and 0 <= y0 < y1 <= height + 1  # Hanks' chin touches the edge
        points = np.array(portrait.points)
        assert np.all((points >= (x0, y0)) & (points <= (x1, y1))), key
        assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # image-left comes first
    assert load_photo("t1_a") is load_photo("t1_f")  # one group photo, read once
    with pytest.raises(ValueError):
        load_photo("t1_a")[0, 0] = 0  # the cached photo is shared, so it is read-only


def test_missing_package_names_the_package_and_file(monkeypatch: pytest.MonkeyPatch) -> None:
    real = portraits.importlib.util.find_spec
    monkeypatch.setattr(
        portraits.importlib.util, "find_spec", lambda name: None if name == "insightface" else real(name)
    )
    portraits._load.cache_clear()  # the photo may be cached by an earlier test
    try:
        with pytest.raises(FileNotFoundError) as missing:
            load_photo("hanks")
        assert "insightface/data/images/Tom_Hanks_54745.png" in str(missing.value)
        assert "'insightface' package, which is not installed" in str(missing.value)
    finally:
        portraits._load.cache_clear()


def test_rendering_is_deterministic_and_seeded(one_actor) -> None:
    frames, geometry = one_actor
    again, geometry_again = render_video([ONE], SIZE, seed=11)
    assert frames.shape == (48, 320, 320, 3) and frames.dtype == np.uint8
    assert frames.tobytes() == again.tobytes()
    assert [g.box for f in geometry for g in f] == [g.box for f in geometry_again for g in f]
    other, other_geometry = render_video([ONE], SIZE, seed=12)
    assert np.abs(other.astype(np.int16) - frames).mean() > 1
    assert [g.box for f in other_geometry for g in f] != [g.box for f in geometry for g in f]


def test_geometry_moves_within_bounds(one_actor) -> None:
    _, geometry = one_actor
    assert all(len(faces) == 1 for faces in geometry)
    boxes = np.array([faces[0].box for faces in geometry])
    points = np.array([faces[0].points for faces in geometry])
    width = boxes[:, 2] - boxes[:, 0]
    center = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert np.all(np.abs(width / 120 - 1) <= 0.081)  # zoom within +-8 %
    assert np.all(np.abs(center[:, 0] - 160) <= 0.061 * 120 + 1)  # shift within +-6 % of the face
    assert np.all((points >= boxes[:, None, :2] - 2) & (points <= boxes[:, None, 2:] + 2))
    eyes = points[:, 1] - points[:, 0]
    (left_x, left_y), (right_x, right_y) = PORTRAITS["astronaut"].points[:2]
    photo_roll = np.arctan2(right_y - left_y, right_x - left_x)
    roll = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]) - photo_roll)
    # the head really moves: position, size and roll all change over two seconds
    assert np.ptp(center, axis=0).max() > 2 and np.ptp(width) > 1 and np.ptp(roll) > 1
    assert np.abs(roll).max() <= 8.5


def test_mouth_moves_against_the_rigid_head(one_actor) -> None:
    frames, geometry = one_actor
    faces = [faces[0] for faces in geometry]
    x0, y0, x1, y1 = PORTRAITS["astronaut"].box
    jaw = np.array([(g.box[3] - g.box[1]) - (g.box[2] - g.box[0]) * (y1 - y0) / (x1 - x0) for g in faces])
    closed, opened = int(jaw.argmin()), int(jaw.argmax())
    assert jaw[opened] - jaw[closed] > 3  # pixels of jaw drop at a 120 px face
    # undo the rigid motion with the points the jaw does not move (eyes, nose), then compare regions
    rigid, _ = cv2.estimateAffinePartial2D(faces[closed].points[:3], faces[opened].points[:3])
    aligned = cv2.warpAffine(frames[closed], rigid, SIZE).astype(np.int16)
    target = faces[opened].points

    def residual(center: np.ndarray) -> float:
        cx, cy = np.rint(center).astype(int)
        patch = np.s_[cy - 8 : cy + 8, cx - 12 : cx + 12]
        return float(np.abs(aligned[patch] - frames[opened][patch]).mean())

    below_mouth = target[3:].mean(0) + np.array([0, 12])
    nose_bridge = 0.5 * target[:2].mean(0) + 0.5 * target[2]
    assert residual(below_mouth) > 3 * residual(nose_bridge) + 2


def test_mediapipe_finds_the_rendered_faces(one_actor) -> None:
    frames, geometry = one_actor
    for t in (0, 20, 40):
        found = detections(frames[t])
        assert len(found) == 1 and iou(found[0], geometry[t][0].box) > 0.5
    pair = Shot((Actor("astronaut", (0.27, 0.5), 100), Actor("t1_e", (0.73, 0.5), 100)), 1, scene=8)
    frames, geometry = render_video([pair], (384, 256), seed=2)
    found = detections(frames[0])
    assert len(found) == 2 and len(geometry[0]) == 2
    for face in geometry[0]:
        assert max(iou(box, face.box) for box in found) > 0.5
    empty, nobody = render_video([Shot((), 3, scene=9)], SIZE, seed=2)
    assert nobody == [[], [], []] and detections(empty[1]) == []


def test_facemesh_agrees_with_the_points(one_actor) -> None:
    frames, geometry = one_actor
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True) as mesh:
        for t in (5, 25, 45):
            landmarks = mesh.process(frames[t]).multi_face_landmarks
            assert landmarks, f"FaceMesh found no face in frame {t}"
            mesh_xy = np.array([(p.x, p.y) for p in landmarks[0].landmark]) * SIZE
            eyes = sorted([mesh_xy[468], mesh_xy[473]], key=lambda p: p[0])  # iris centres
            mouth = sorted([mesh_xy[61], mesh_xy[291]], key=lambda p: p[0])
            measured = np.array([*eyes, mesh_xy[1], *mouth])
            face = geometry[t][0]
            error = np.linalg.norm(measured - face.points, axis=1) / (face.box[2] - face.box[0])
            assert error.max() < 0.05, error


def test_still_is_one_seeded_frame() -> None:
    actors = [Actor("t1_c", (0.5, 0.5), 100)]
    image, geometry = render_still(actors, (200, 240), seed=3)
    assert image.shape == (240, 200, 3) and len(geometry) == 1 and geometry[0].portrait == "t1_c"
    assert render_still(actors, (200, 240), seed=3)[0].tobytes() == image.tobytes()
    assert render_still(actors, (200, 240), seed=4)[0].tobytes() != image.tobytes()


def test_mp4_is_deterministic_decodes_and_cuts_where_the_shots_change(tmp_path: Path) -> None:
    frames, _ = render_video(TWO_SCENES, SIZE, seed=1)
    write_mp4(tmp_path / "a.mp4", frames, 25)
    write_mp4(tmp_path / "b.mp4", frames, 25)
    data = (tmp_path / "a.mp4").read_bytes()
    assert data == (tmp_path / "b.mp4").read_bytes()
    assert data.find(b"moov") > data.find(b"mdat") > 0  # no faststart
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]  # no temporary left behind
    with av.open(str(tmp_path / "a.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.average_rate == 25
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(np.int16) - frames).mean() < 4
    scenes = detect(str(tmp_path / "a.mp4"), ContentDetector())
    assert [(start.frame_num, end.frame_num) for start, end in scenes] == [(0, 24), (24, 48)]


def test_truncated_mp4_is_unreadable(tmp_path: Path) -> None:
    frames, _ = render_video([ONE], (160, 128), seed=5)
    write_mp4(tmp_path / "clip.mp4", frames, 25)
    data = (tmp_path / "clip.mp4").read_bytes()
    (tmp_path / "broken.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(av.error.FFmpegError), av.open(str(tmp_path / "broken.mp4")) as container:
        for _ in container.decode(video=0):
            pass


def test_audio_and_images_are_deterministic_and_readable(tmp_path: Path) -> None:
    write_audio(tmp_path / "a.m4a", 2.0, seed=7)
    write_audio(tmp_path / "b.m4a", 2.0, seed=7)
    assert (tmp_path / "a.m4a").read_bytes() == (tmp_path / "b.m4a").read_bytes()
    with av.open(str(tmp_path / "a.m4a")) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert abs(len(samples) - 32000) <= 2048 and np.abs(samples).max() > 0.1
    image, _ = render_still([Actor("hanks", (0.5, 0.5), 90)], (160, 160), seed=1)
    write_png(tmp_path / "a.png", image)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), image)
    write_jpeg(tmp_path / "a.jpg", image)
    write_jpeg(tmp_path / "b.jpg", image)
    assert (tmp_path / "a.jpg").read_bytes() == (tmp_path / "b.jpg").read_bytes()
    assert np.abs(np.asarray(Image.open(tmp_path / "a.jpg")).astype(np.int16) - image).mean() < 4
