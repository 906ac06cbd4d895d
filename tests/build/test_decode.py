"""True geometry and time: display rotation, presentation timestamps, annotation rates (real H.264 via PyAV)."""

from __future__ import annotations

import io
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from kit import item

from manifests.schema import get_spec
from pipeline.config import BuildConfig
from pipeline.decode import RangeError, choose_frames, open_frames
from pipeline.faces import open_detector, open_landmarker
from pipeline.process import Models, process_item
from pipeline.sample.render import Actor, Shot, render_video
from pipeline.sources.records import SourceItem
from pipeline.sources.scan import scan
from pipeline.video_file import Orientation

RATE_NOTE = r"annotation frames at 25 fps, media at (29\.99|30\.00) fps"  # 1/30 s in millisecond timestamps


def _write(path: Path, frames: np.ndarray, times: list[Fraction], rotation: int = 0) -> None:
    """An H.264 mp4 whose frames are shown at the given times (seconds), with a display rotation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.time_base = base
        stream.codec_context.time_base = base
        stream.codec_context.options = {"crf": "18", "preset": "veryfast", "bframes": "0"}
        if rotation:
            stream.set_display_rotation(rotation)
        for frame, time in zip(frames, times, strict=True):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts, picture.time_base = round(time / base), base
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))


def test_output_frames_are_chosen_by_presentation_time() -> None:
    thirty = np.arange(30) / 30  # one second at 30 fps -> 25 frames, one dropped every 6
    chosen = choose_frames(thirty, 0.0, 1.0, 25.0)
    assert len(chosen) == 25 and chosen[0] == 0 and np.sum(np.diff(chosen) == 2) == 5
    twenty_four = np.arange(24) / 24  # slower media: a frame repeats
    assert len(choose_frames(twenty_four, 0.0, 1.0, 25.0)) == 25
    assert np.array_equal(choose_frames(thirty, 0.0, 1.0, None), np.arange(30))
    # variable rate: dense then sparse; output frame j takes the frame nearest j / 25 s
    times = np.concatenate([np.arange(20) / 50, 0.4 + np.arange(1, 11) / 12.5])
    chosen = choose_frames(times, 0.0, 1.2, 25.0)
    wanted = np.arange(len(chosen)) / 25
    gaps = np.abs(times[chosen] - wanted)
    assert gaps.max() <= 0.5 / 12.5 + 1e-9
    assert len(choose_frames(times, 5.0, 6.0, 25.0)) == 0


def test_annotation_frames_at_another_rate_are_converted_by_time(tmp_path: Path) -> None:
    frames = np.zeros((60, 64, 64, 3), np.uint8)
    _write(tmp_path / "x.mp4", frames, [Fraction(i, 30) for i in range(60)])  # 2 s at 30 fps
    same = open_frames(item(media_cut=False, time_unit="frame", start=10, end=39, end_inclusive=True, fps=30.0),
                       tmp_path, None)  # fmt: skip
    assert same.note is None and same.source_index.tolist() == list(range(10, 40))
    # the annotation counts 25 fps frames: frames 10-34 are 0.4 s - 1.4 s, i.e. media frames 12-41
    other = open_frames(item(media_cut=False, time_unit="frame", start=10, end=34, end_inclusive=True, fps=25.0),
                        tmp_path, 25.0)  # fmt: skip
    assert other.note is not None and re.search(RATE_NOTE, other.note)
    assert len(other) == 25 and other.source_index[0] == 12 and other.source_index[-1] == 41
    with pytest.raises(RangeError, match="outside the media"):
        open_frames(item(media_cut=False, time_unit="frame", start=80, end=99, end_inclusive=True, fps=25.0),
                    tmp_path, 25.0)  # fmt: skip


def test_seconds_ranges_follow_each_datasets_convention(tmp_path: Path) -> None:
    frames = np.zeros((75, 32, 32, 3), np.uint8)
    _write(tmp_path / "x.mp4", frames, [Fraction(i, 25) for i in range(75)])
    # HDTF / CelebV-HQ: seconds, end exclusive: [1 s, 2 s) at 25 fps is frames 25..49
    stream = open_frames(item(media_cut=False, time_unit="sec", start=1.0, end=2.0, end_inclusive=False), tmp_path, 25)
    assert stream.source_index.tolist() == list(range(25, 50))
    # already cut media: the whole file, whatever the provenance range says
    whole = open_frames(item(media_cut=True, time_unit="sec", start=1.0, end=2.0), tmp_path, 25.0)
    assert len(whole) == 75


def test_a_variable_rate_clip_is_followed_by_its_timestamps(tmp_path: Path) -> None:
    """A bar moves at constant speed in time; frames come at uneven intervals (a phone under load)."""
    rng = np.random.default_rng(0)
    steps = rng.choice([Fraction(1, 60), Fraction(1, 20), Fraction(1, 40)], size=89)
    times = [Fraction(0), *np.cumsum(steps)]
    frames = np.zeros((len(times), 64, 256, 3), np.uint8)
    speed = 80  # pixels per second
    for frame, time in zip(frames, times, strict=True):
        x = round(float(time) * speed)
        frame[:, x : x + 8] = 255
    _write(tmp_path / "x.mp4", frames, times)
    stream = open_frames(item(), tmp_path, 25.0)
    assert stream.media.variable_rate  # type: ignore[attr-defined]
    duration = float(times[-1]) + float(np.median(steps))
    assert len(stream) == pytest.approx(duration * 25, abs=1)
    positions = [float(np.argmax(frame[32, :, 0] > 128)) for frame in stream.small(256)]
    expected = np.arange(len(positions)) / 25 * speed
    # each output frame shows the media frame nearest its time: within half the longest frame gap
    assert np.max(np.abs(np.array(positions) - expected)) <= speed * 0.5 / 20 + 2
    # indexing by average rate instead drifts far from the bar's true place
    by_count = np.round(np.arange(len(positions)) * len(times) / len(positions)).astype(int).clip(0, len(times) - 1)
    assert np.max(np.abs(np.array([float(times[i]) for i in by_count]) * speed - expected)) > 8


@pytest.fixture(scope="module")
def models() -> Models:
    return Models(open_detector(), open_landmarker())


def test_a_rotated_clip_is_built_with_the_face_upright(tmp_path: Path, models: Models) -> None:
    upright, _ = render_video([Shot((Actor("astronaut", (0.5, 0.45), 150),), 40, scene=7)], (480, 320), seed=3)
    stored = np.rot90(upright, -1, axes=(1, 2))  # a phone stores it sideways and says "turn 90 degrees back"
    _write(tmp_path / "x.mp4", stored, [Fraction(i, 25) for i in range(len(stored))], rotation=90)
    stream = open_frames(item(), tmp_path, 25.0)
    assert stream.media_size == (480, 320)
    first = next(stream.small(480))
    assert np.abs(first.astype(int) - upright[0].astype(int)).mean() < 6  # the displayed picture, not the stored
    defaults = get_spec("sample").defaults
    outcome = process_item(item(), tmp_path, BuildConfig(), defaults, models, "fp")
    assert outcome.source_row["status"] == "ok", outcome.candidate_rows
    poses = np.load(io.BytesIO(outcome.samples[0].members["pose.npy"]))
    assert abs(float(np.nanmedian(poses[:, 2]))) < 20  # roll: upright, not lying on its side


def test_orientation_maps_displayed_boxes_to_stored_pixels() -> None:
    stored = np.arange(6 * 10).reshape(6, 10)  # 10 wide, 6 high
    for rotation in (0, 90, 180, 270):
        turn = Orientation(10, 6, rotation)
        shown = turn.upright(stored)
        assert shown.shape[::-1] == turn.size
        box = (1, 2, 4, 5)
        x0, y0, x1, y1 = turn.to_stored(box)
        cut = turn.upright(stored[y0:y1, x0:x1])
        assert np.array_equal(cut, shown[2:5, 1:4]), rotation


def test_a_vfhq_meta_whose_fps_differs_from_its_video_is_converted_and_noted(tmp_path: Path, models: Models) -> None:
    """The meta file says 25 fps; the downloaded source runs at 30 (another YouTube rendition)."""
    from pipeline.sample import vfhq

    vfhq.write(tmp_path)
    raw = tmp_path / "raw" / "Zz9-yX_8wVu.mp4"
    with av.open(str(raw)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    # the same 2.4 s of picture at 30 fps: the frame at time t is the 25 fps frame nearest t
    at_thirty = frames[np.minimum(np.round(np.arange(72) / 30 * 25).astype(int), len(frames) - 1)]
    _write(raw, at_thirty, [Fraction(i, 30) for i in range(len(at_thirty))])
    scan("vfhq", tmp_path, out=tmp_path / "scan.parquet")
    rows = pd.read_parquet(tmp_path / "scan.parquet").to_dict("records")
    row = next(r for r in rows if "Zz9-yX_8wVu" in r["item_id"])
    scanned = SourceItem.from_row(row)
    assert scanned.fps == 25.0 and scanned.modality == "video"
    defaults = get_spec("sample").defaults
    outcome = process_item(scanned, tmp_path, BuildConfig(), defaults, models, "fp")
    assert re.search(RATE_NOTE, str(outcome.source_row["message"]))
    # VFHQ's clip F10-50 keeps frames 11..49 at 25 fps = 0.44 s .. 2.0 s: media frames 13..60 at 30 fps
    stream = open_frames(scanned, tmp_path, 25.0)
    assert stream.source_index[0] == round(11 / 25 * 30) and len(stream) == 39
