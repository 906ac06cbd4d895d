"""The default detector through the FaceDetector protocol, on a rendered frame with known faces."""

from __future__ import annotations

import numpy as np

from pipeline.faces import open_detector, prominent
from pipeline.sample.render import Actor, render_still


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def test_mediapipe_finds_the_faces_of_a_wide_frame_best_first() -> None:
    actors = [Actor("astronaut", (0.3, 0.5), 110), Actor("t1_b", (0.75, 0.45), 60)]
    image, geometry = render_still(actors, (640, 360), seed=4)
    detector = open_detector("mediapipe", model_dir="ignored", threads=4)  # the wheel's model, one thread
    faces = detector.detect(image)
    detector.close()
    assert [face.score for face in faces] == sorted((face.score for face in faces), reverse=True)
    assert len(faces) == 2
    for truth in geometry:
        match = max(faces, key=lambda face: iou(face.box, truth.box))
        assert iou(match.box, truth.box) > 0.5
        eyes = match.keypoints[:2]  # mediapipe: the subject's right eye (image left) first
        assert np.linalg.norm(eyes - truth.points[:2], axis=1).max() < 0.15 * (truth.box[2] - truth.box[0])
    assert len(prominent(faces)) == 2 and len(prominent(faces, ratio=0.5)) == 1
