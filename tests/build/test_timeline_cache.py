"""One raw file, many clips: its timeline is demuxed once per worker, and the samples do not change."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from kit import item
from test_decode import _write

from manifests.schema import get_spec
from pipeline.config import BuildConfig, MediaLimits
from pipeline.faces import open_detector, open_landmarker
from pipeline.process import Models, Outcome, process_item
from pipeline.sample.render import Actor, Shot, render_video
from pipeline.sources.records import TooLarge
from pipeline.video_file import TIMELINES, TimelineCache, VideoFile

CLIPS = [(0.0, 1.2), (1.2, 2.4), (2.4, 3.6)]  # seconds of one raw video, as CelebV-HQ and HDTF annotate


def _clip(k: int) -> object:
    start, end = CLIPS[k]
    return item(native_id=f"raw_{k}", media_cut=False, time_unit="sec", start=start, end=end, end_inclusive=False)


def _samples(outcome: Outcome) -> list[tuple[str, dict[str, bytes]]]:
    return [(sample.key, sample.members) for sample in outcome.samples]


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    frames, _ = render_video([Shot((Actor("astronaut", (0.5, 0.45), 110),), 90, scene=4)], (320, 240), seed=5)
    _write(root / "x.mp4", frames, [Fraction(i, 25) for i in range(len(frames))])
    return root


def test_clips_of_one_raw_file_demux_it_once_and_give_the_same_samples(raw: Path) -> None:
    cfg, defaults = BuildConfig(), get_spec("sample").defaults
    models = Models(open_detector(), open_landmarker())
    uncached = []
    before = TIMELINES.demuxed
    for k in range(len(CLIPS)):
        TIMELINES.clear()  # as if each clip went to another worker
        uncached.append(process_item(_clip(k), raw, cfg, defaults, models, "fp"))
    assert TIMELINES.demuxed - before == len(CLIPS)
    TIMELINES.clear()
    before = TIMELINES.demuxed
    cached = [process_item(_clip(k), raw, cfg, defaults, models, "fp") for k in range(len(CLIPS))]
    assert TIMELINES.demuxed - before == 1
    assert all(outcome.source_row["status"] == "ok" for outcome in cached), [o.source_row for o in cached]
    assert sum(len(outcome.samples) for outcome in cached) >= len(CLIPS)
    for one, other in zip(uncached, cached, strict=True):
        assert _samples(one) == _samples(other)  # byte for byte


def test_the_cache_is_bounded_and_sees_a_rewritten_file(raw: Path, tmp_path: Path) -> None:
    cache = TimelineCache(max_files=2)
    copies = []
    for k in range(3):
        copies.append(tmp_path / f"{k}.mp4")
        copies[-1].write_bytes((raw / "x.mp4").read_bytes())
    for path in copies:
        cache.timeline(path, None)
    assert cache.demuxed == 3
    cache.timeline(copies[0], None)  # the least recently used went first
    assert cache.demuxed == 4
    cache.timeline(copies[2], None)
    assert cache.demuxed == 4
    # a file rewritten in place (another size) is read again, and its new timeline is what comes back
    frames, _ = render_video([Shot((Actor("astronaut", (0.5, 0.45), 110),), 30, scene=4)], (320, 240), seed=5)
    _write(copies[2], frames, [Fraction(i, 25) for i in range(len(frames))])
    assert len(cache.timeline(copies[2], None).times) == 30 and cache.demuxed == 5
    # a cached timeline still gets the limits' refusal an uncached open gives
    limits = MediaLimits(max_pixels=10**9, max_seconds=0.5)
    TIMELINES.clear()
    VideoFile(copies[1])
    with pytest.raises(TooLarge):
        VideoFile(copies[1], limits)
