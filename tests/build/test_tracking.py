"""The subject's track survives missed detections, and a second face never takes over its run."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.config import BuildConfig
from pipeline.faces import Face, open_detector
from pipeline.sample.render import Actor, Shot, render_video, write_mp4
from pipeline.tracking import Run, face_runs, iou


def _face(x: float, y: float, side: float = 50.0) -> Face:
    return Face((x, y, x + side, y + side), 0.9)


def _xs(run: Run) -> np.ndarray:
    return run.boxes[:, 0]


def test_a_larger_face_during_a_missed_stretch_does_not_take_over_the_subject() -> None:
    subject = {0: 100.0, 5: 102.0, 20: 106.0, 25: 108.0, 29: 110.0}  # x of a 50 px face at y = 100
    other = _face(400, 50, 80)  # 2.6x the area, far to the right, from frame 10 on
    samples = {i: [_face(x, 100)] for i, x in subject.items()}
    samples |= {10: [other], 15: [other]}  # the subject is missed twice: the default tolerance
    samples[20].append(other)
    runs = face_runs(samples, 30, prominent_ratio=0.25)
    assert [(r.start, r.stop) for r in runs] == [(0, 30)]
    boxes = runs[0].boxes
    # bridged by interpolation between its detections at 5 and 20, never on the other face
    assert boxes[5:21, 0] == pytest.approx(np.linspace(102, 106, 16))
    assert boxes[:, 2] - boxes[:, 0] == pytest.approx(np.full(30, 50.0)) and np.all(boxes[:, 1] == 100)
    assert runs[0].multi_face_fraction == pytest.approx(1 / 7)  # only frame 20 shows both

    # a subject small enough to drop out of `prominent` next to the newcomer is still followed
    big = _face(400, 20, 200)
    crowded = {i: [_face(x, 100), big] if i >= 20 else [_face(x, 100)] for i, x in subject.items()}
    crowded |= {10: [big], 15: [big]}
    assert [(r.start, r.stop, r.boxes[20, 0]) for r in face_runs(crowded, 30, 0.25)] == [(0, 30, 106.0)]


def test_a_gap_longer_than_the_tolerance_ends_the_run_and_no_run_mixes_people() -> None:
    other = _face(400, 50, 80)
    samples = {0: [_face(100, 100)], 5: [_face(101, 100)], 25: [_face(104, 100)], 29: [_face(104, 100)]}
    samples |= {10: [other], 15: [other], 20: [other]}  # three misses of the subject
    runs = face_runs(samples, 30, prominent_ratio=0.25)
    # the subject's run stops at its last detection; the other face gets its own run from where it
    # appeared; the subject starts a new run when the other one has gone
    assert [(r.start, r.stop) for r in runs] == [(0, 6), (10, 21), (25, 30)]
    assert np.all(_xs(runs[0]) <= 101) and np.all(_xs(runs[1]) == 400) and np.all(_xs(runs[2]) == 104)
    # one more sample of tolerance bridges the same gap
    assert [(r.start, r.stop) for r in face_runs(samples, 30, 0.25, max_missed=3)] == [(0, 30)]


def test_the_gate_rejects_a_face_of_another_size_or_too_far_away_during_a_gap() -> None:
    subject = {0: [_face(100, 100)], 5: [_face(100, 100)], 20: [_face(100, 100)]}
    in_place = _face(75, 75, 100)  # centred on the subject but twice its size: somebody in front
    near = _face(150, 100)  # same size, one side to the right: a neighbour cheek to cheek
    for stranger in (in_place, near):
        runs = face_runs(subject | {10: [stranger], 15: [stranger]}, 21, 0.25)
        assert [(r.start, r.stop) for r in runs] == [(0, 21)]
        assert np.all(_xs(runs[0]) == 100)


def test_a_steadily_moving_face_is_kept_through_a_gap_and_a_stopped_one_too() -> None:
    # 20 px per sample on a 50 px face: 0.4 sides, and 1.2 sides across two missed samples, which only
    # the track's velocity predicts
    moving = {i: [_face(10 + 4 * i, 100)] for i in (*range(0, 50, 5), 49) if i not in (20, 25)}
    moving |= {20: [], 25: []}
    runs = face_runs(moving, 50, prominent_ratio=0.25)
    assert [(r.start, r.stop) for r in runs] == [(0, 50)]
    assert _xs(runs[0]) == pytest.approx(10 + 4 * np.arange(50.0))
    # a face that stops while it is missed is still where the track last saw it
    stopping = {i: [_face(10 + 4 * min(i, 15), 100)] for i in (*range(0, 50, 5), 49) if i not in (20, 25)}
    stopping |= {20: [], 25: []}
    assert [(r.start, r.stop) for r in face_runs(stopping, 50, 0.25)] == [(0, 50)]


def _decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_on_a_real_clip_the_subject_keeps_its_run_while_hidden_and_a_larger_face_shows(tmp_path: Path) -> None:
    """Real frames, encoded and decoded as H.264, and the real mediapipe detector.

    The renderer has no occluder, so the test makes one: two renders with the same seed and scenery,
    the subject alone and the subject with a larger second face, share the subject's pixels (its motion
    is seeded by its actor index). The clip takes the second render for frames 18-32, and for frames
    18-27 a flat grey card covers the subject's face (its ground-truth box, enlarged), as a hand or a
    passer-by would: the detector then misses the subject on two sampled frames while the other face
    is the largest (the only) one it finds.
    """
    count, hidden, shown = 60, range(18, 28), range(18, 33)
    subject = Actor("astronaut", (0.28, 0.5), 90)
    other = Actor("t1_b", (0.75, 0.45), 130)
    alone, truth = render_video([Shot((subject,), count, scene=7)], (640, 360), seed=3)
    both, truth_both = render_video([Shot((subject, other), count, scene=7)], (640, 360), seed=3)
    frames = alone.copy()
    frames[shown.start : shown.stop] = both[shown.start : shown.stop]
    for t in hidden:
        x0, y0, x1, y1 = truth[t][0].box
        pad = 0.25 * (x1 - x0)
        frames[t, max(0, int(y0 - pad)) : int(y1 + pad), max(0, int(x0 - pad)) : int(x1 + pad)] = 128
    write_mp4(tmp_path / "clip.mp4", frames, 25)
    decoded = _decoded(tmp_path / "clip.mp4")
    assert len(decoded) == count

    k = BuildConfig().detect_every
    indices = sorted({*range(0, count, k), count - 1})
    detector = open_detector()
    samples = {i: detector.detect(decoded[i]) for i in indices}
    detector.close()
    other_box = truth_both[25][1].box
    # what the test stages: the subject is found on every sampled frame but the hidden ones, where the
    # larger face is the only one found
    for i in indices:
        on_subject = [f for f in samples[i] if iou(f.box, truth[i][0].box) > 0.5]
        assert len(on_subject) == (0 if i in hidden else 1), (i, samples[i])
    assert [i for i in indices if i in hidden] == [20, 25]
    assert all(len(samples[i]) == 1 and iou(samples[i][0].box, other_box) > 0.5 for i in (20, 25))

    runs = face_runs(samples, count, BuildConfig().filters.prominent_ratio)
    assert [(r.start, r.stop) for r in runs] == [(0, count)]
    overlap = [iou(runs[0].boxes[t], truth[t][0].box) for t in range(count)]
    assert min(overlap) > 0.5, overlap  # on the subject on every frame, the bridged ones included
    assert max(iou(runs[0].boxes[t], truth_both[t][1].box) for t in shown) == 0.0
    assert runs[0].multi_face_fraction == pytest.approx(1 / len(indices))  # frame 30 shows both
