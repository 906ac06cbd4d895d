"""Clips never cross a scene cut, even one the detector reports after a shot was split at its maximum length.

PySceneDetect's flash filter reports the cut that ends a strobe `min_scene_len` frames after it happened.
The cases here are staged so that the cut (frame 18) lies before the max-length split point (frame 20:
the strobe's first flash starts a shot at frame 10, and shots are split every 10 frames) and is reported
after it (frame 23): what a real strobe does to the real detector.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
from kit import item

from manifests.schema import PipelineDefaults
from pipeline.config import BuildConfig
from pipeline.faces import open_detector, open_landmarker
from pipeline.process import Models, Segments, process_item
from pipeline.sample.recording import Recording, write_recording
from pipeline.sample.render import Actor, Shot, render_video
from pipeline.scenes import SceneCuts

CUT, REPORTED, MIN_SCENE = 18, 23, 5
MAX_FRAMES = 10  # the strobe's first flash starts a shot at 10, so the split point is 20


def _strobe(t: int) -> int:
    """Which picture frame t shows: the first shot (0) until frame 10, then a strobe (every other frame a
    flash, 1) until the cut at 18, then the second shot (2)."""
    if t >= CUT:
        return 2
    return 1 if t >= 10 and t % 2 == 0 else 0


def _scene_cuts(frames: list[np.ndarray]) -> list[tuple[int, int]]:
    """(cut, frame at which it was reported) from the real detector, fed as the build feeds it."""
    scenes = SceneCuts(25.0, BuildConfig().scene_threshold, 160, MIN_SCENE)
    return [(cut, index) for index, frame in enumerate(frames) for cut in scenes.feed(frame[None])]


def test_a_late_cut_before_a_pending_split_closes_the_segment() -> None:
    rng = np.random.default_rng(0)
    first = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)
    pictures = (first, np.roll(first, 40, axis=1) // 2, 255 - first)
    frames = [pictures[_strobe(t)] for t in range(40)]
    reported = _scene_cuts(frames)
    assert (CUT, REPORTED) in reported  # the staged lateness, from the real detector

    asked: list[int] = []  # the "pictures" here are frame numbers: which frames the detector was asked about

    def detect(picture: int) -> list:
        asked.append(picture)
        return []

    segments = Segments(detect, every=5, max_frames=MAX_FRAMES, late=MIN_SCENE)  # type: ignore[arg-type]
    scenes = SceneCuts(25.0, BuildConfig().scene_threshold, 160, MIN_SCENE)
    ended = []
    for index, frame in enumerate(frames):
        cuts = scenes.feed(frame[None])
        ended += segments.add(index, index, cuts[-1] if cuts else None)  # type: ignore[arg-type]
    ended += segments.finish(len(frames))
    spans = [(start, start + max(detections) + 1) for start, detections in ended]
    cuts = sorted({cut for cut, _ in reported})
    assert spans[0][0] == 0 and spans[-1][1] == len(frames)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # every frame in one segment
    assert all(stop - start <= MAX_FRAMES for start, stop in spans)
    for cut in cuts:
        assert not any(start < cut < stop for start, stop in spans), (cut, spans)
    assert (10, CUT) in spans  # closed again at the late cut, not at the split point 20
    # each segment was sampled on its own grid, from its own first frame
    assert {t for start, stop in spans for t in [*range(start, stop, 5), stop - 1]} <= set(asked)


def test_no_built_clip_spans_a_late_cut(tmp_path: Path) -> None:
    """The same staging on a rendered face through the whole per-item path (real detector and landmarker):
    the face stays put across the cut, so only the cut separates the two clips."""
    actor = Actor("astronaut", (0.5, 0.5), 120)
    day, _ = render_video([Shot((actor,), 40, scene=1)], (320, 240), seed=5)
    night, _ = render_video([Shot((actor,), 40, scene=2)], (320, 240), seed=5)
    flash = np.clip(day.astype(np.int16) + 90, 0, 255).astype(np.uint8)
    frames = np.stack([(day, flash, night)[_strobe(t)][t] for t in range(len(day))])
    write_recording(tmp_path / "strobe.mp4", frames, 25, Recording(crf=12))
    strobe = item("strobe.mp4")
    defaults = PipelineDefaults(
        min_face_px=32, min_clip_frames=2 * MIN_SCENE, max_clip_frames=MAX_FRAMES, min_sharpness=0
    )
    models = Models(open_detector(), open_landmarker("mediapipe"))
    outcome = process_item(strobe, tmp_path, BuildConfig(), defaults, models, "f")
    metas = [json.loads(sample.members["json"]) for sample in outcome.samples]
    ranges = [(meta["key"], meta["source_range"]["start"], meta["source_range"]["end"]) for meta in metas]
    assert ranges, outcome.candidate_rows
    for key, start, end in ranges:
        assert end < CUT or start >= CUT, (key, start, end)
    assert any(start >= CUT for _, start, _ in ranges) and any(end < CUT for _, _, end in ranges)
