"""Hostile values and hostile files through the build: each item becomes one row with its reason (or a note),
never an internal_error, and the rest of the build goes on.

Real files only: H.264 clips rendered with a known face, a PNG whose header claims 20000x20000 pixels,
symlinks out of the dataset root. The worker is the real one (pipeline.runner.ShardWorker, run here outside
Ray), and the last test runs `rp-data build` as users do. Limits are made small through the build config
(max_pixels between 320x240 and 480x320, max_seconds below a 3 s clip).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from buildkit import rp_data

from manifests.schema import get_spec
from pipeline.config import BuildConfig, MediaLimits
from pipeline.decode import RangeError, open_frames
from pipeline.runner import ShardWorker, WorkShard
from pipeline.sample.render import Actor, Shot, render_video, write_mp4, write_png
from pipeline.shards import publish_if_current
from pipeline.sources.records import SourceItem, TooLarge
from pipeline.video_file import DecodeError, VideoFile

MAX_PIXELS = 100_000  # 320x240 (76,800) passes, 480x320 (153,600) does not
MAX_SECONDS = 2.5


def _face_clip(path: Path, seconds: float, size: tuple[int, int] = (320, 240)) -> None:
    """An H.264 clip at 25 fps of one centred face (the astronaut), which the build finds."""
    frames, _ = render_video([Shot((Actor("astronaut", (0.5, 0.45), 90),), round(seconds * 25), scene=3)], size, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, frames, 25)


def _one_pixel_clip(path: Path) -> None:
    """A 1x1 H.264 clip (4:4:4, which allows odd sizes): a picture too small to cut anything from."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 1, 1, "yuv444p"
        for _ in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((1, 1, 3), 100, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A real PNG whose header states width x height (its pixel data is one row: no decoder gets that far)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    pixels = zlib.compress(b"\x00" * (width + 1))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def _item(native_id: str, media_path: str, modality: str = "video", **values: object) -> SourceItem:
    dataset = {"video": "celebvhq", "image": "ffhq", "frames": "vfhq"}[modality]
    base: dict[str, object] = {
        "dataset": dataset,
        "native_id": native_id,
        "modality": modality,
        "media_path": media_path,
        "media_status": "present",
        "split": "unsplit",
        "identity": None,
        "identity_kind": "none",
        "license_tag": "t:t",
    }
    return SourceItem(**(base | values))


def _hostile_root(tmp_path: Path) -> tuple[Path, list[SourceItem]]:
    """A dataset root of real files and one item per hostile case (ids name the case)."""
    root = tmp_path / "root"
    _face_clip(root / "face_2s.mp4", 2.0)
    _face_clip(root / "long_3s.mp4", 3.0)
    _face_clip(root / "wide_480x320.mp4", 1.0, (480, 320))
    _one_pixel_clip(root / "one_pixel.mp4")
    write_png(root / "wide_480x320.png", np.zeros((320, 480, 3), np.uint8))
    _png_claiming(root / "bomb.png", 20_000, 20_000)
    for index in range(2):
        write_png(root / "frames" / f"{index:08d}.png", np.zeros((64, 64, 3), np.uint8))
    _face_clip(tmp_path / "outside.mp4", 1.0)
    os.symlink(tmp_path / "outside.mp4", root / "linked.mp4")
    seconds = {"media_cut": False, "time_unit": "sec", "end_inclusive": False}
    items = [
        _item("too_many_pixels", "wide_480x320.mp4"),
        _item("too_long", "long_3s.mp4"),
        _item("image_too_many_pixels", "wide_480x320.png", "image"),
        _item("image_bomb", "bomb.png", "image"),
        _item("end_inf_media_absent", "not_on_disk.mp4", start=0.0, end=float("inf"), **seconds),
        _item("crop_without_width", "face_2s.mp4", geometry_space="media", crop=(40.0, 10.0, 40.0, 200.0)),
        _item("frames_at_zero_fps", "frames", "frames", fps=0.0),
        _item("dot_dot", "../outside.mp4"),
        _item("symlink_out", "linked.mp4"),
        _item("end_1e308", "face_2s.mp4", start=0.0, end=1e308, **seconds),
        _item("end_1e308_from_1_9s", "face_2s.mp4", start=1.9, end=1e308, **seconds),
        _item(
            "crop_off_the_picture",
            "face_2s.mp4",
            media_cut=False,
            geometry_space="media",
            crop=(1e3, 1e3, 1.1e3, 1.1e3),
        ),
        _item("one_pixel", "one_pixel.mp4"),
    ]
    return root, items


def _worker_rows(tmp_path: Path, root: Path, items: list[SourceItem]) -> pd.DataFrame:
    """The source rows the build's worker commits for one work shard of these items, by item id."""
    cfg = BuildConfig(max_pixels=MAX_PIXELS, max_seconds=MAX_SECONDS)
    worker = ShardWorker(cfg.model_dump_json(), "fp", str(tmp_path / "out"))
    defaults = get_spec("sample").defaults.model_dump(mode="json")
    shard = WorkShard("mixed-00000", "mixed", str(root), defaults, [item.row() for item in items], token="a1")
    summary = worker.process(shard)
    assert isinstance(summary, dict), summary  # not a StorageFault
    # the worker stages; the driver publishes the current dispatch (pipeline/shards.py)
    assert publish_if_current(tmp_path / "out" / "shards", shard.work, "a1", "a1", list(summary["staged"]))
    rows = pd.read_parquet(tmp_path / "out" / "shards" / "mixed-00000.parquet")
    sources = rows[rows.kind == "source"]
    assert sorted(sources.item_id) == sorted(item.item_id for item in items)  # each item recorded once
    return sources.set_index("item_id")


def test_each_hostile_item_is_one_permanent_row_with_its_reason(tmp_path: Path) -> None:
    root, items = _hostile_root(tmp_path)
    rows = _worker_rows(tmp_path, root, items)
    outside = (tmp_path / "outside.mp4").resolve()

    def row(native_id: str) -> pd.Series:
        dataset = next(item.dataset for item in items if item.native_id == native_id)
        return rows.loc[f"{dataset}/{native_id}"]

    refused = {
        "too_many_pixels": ("too_large", f"480x320 is 153600 pixels, above max_pixels={MAX_PIXELS}"),
        "too_long": ("too_large", f"3.0 s long, above max_seconds={MAX_SECONDS:g}"),
        "image_too_many_pixels": ("too_large", f"above max_pixels={MAX_PIXELS}"),
        "image_bomb": ("too_large", "decompression bomb"),  # PIL's own limit, refused from the header
        "end_inf_media_absent": ("invalid_value", "end inf is not a finite number"),  # not missing_media: unopened
        "crop_without_width": ("invalid_value", "crop: (40, 10, 40, 200) has no area"),
        "frames_at_zero_fps": ("invalid_value", "fps 0.0 is not above 0"),
        "dot_dot": ("media_outside_root", f"resolves to {outside}, outside the dataset root"),
        "symlink_out": ("media_outside_root", f"resolves to {outside}, outside the dataset root"),
        "end_1e308_from_1_9s": ("range_outside_media", "leaves 2 frame(s) of the 16 a clip needs"),
        "crop_off_the_picture": (
            "empty_region",
            "crop (1000.0, 1000.0, 1100.0, 1100.0) lies outside the 320x240 picture",
        ),
        "one_pixel": ("empty_region", "the 1x1 picture is under 2x2 pixels"),
    }
    for native_id, (reason, words) in refused.items():
        found = row(native_id)
        assert (found.status, found.reason, found.error_class) == ("failed", reason, "permanent"), native_id
        assert words in found.message, (native_id, found.message)
    # a finite but absurd end (1e308 s) is cut at the media's end, with a note: 2 s at 25 fps
    shortened = row("end_1e308")
    assert shortened.status != "failed" and shortened.frames == 50
    assert "range 0-1e+308 (sec) runs past the media's end (2.00 s): shortened to it" in shortened.message
    assert "internal_error" not in set(rows.reason.dropna())


def test_a_file_is_refused_from_its_header_before_its_packets_are_read(tmp_path: Path) -> None:
    """A 480x320 mp4 with its index first (faststart), cut after 3 kB: the header is whole, the packets are
    not. Without limits the timeline read reaches the missing packets and fails; with them, the header
    alone refuses it."""
    path = tmp_path / "cut.mp4"
    noise = np.random.default_rng(0).integers(0, 255, (50, 320, 480, 3), dtype=np.uint8)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 480, 320, "yuv420p"
        for frame in noise:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    os.truncate(path, 3000)
    with pytest.raises(DecodeError):
        VideoFile(path)
    with pytest.raises(TooLarge, match=f"cut.mp4: 480x320 is 153600 pixels, above max_pixels={MAX_PIXELS}"):
        VideoFile(path, MediaLimits(MAX_PIXELS, MAX_SECONDS))


def test_frame_ranges_past_the_end_are_shortened_with_a_note(tmp_path: Path) -> None:
    """TalkingHead-1KH's frame numbers of the file itself, and VFHQ's at another rate, both past a 2 s clip."""
    _face_clip(tmp_path / "x.mp4", 2.0)  # 50 frames at 25 fps
    frames = {"media_cut": False, "time_unit": "frame", "end_inclusive": True}
    same = open_frames(_item("same", "x.mp4", start=10, end=10**6, **frames), tmp_path, 25.0, min_frames=16)
    assert same.source_index.tolist() == list(range(10, 50))
    assert same.note == "the annotated range 10-1e+06 (frame) runs past the media's end (50 frames): shortened to it"
    other = open_frames(_item("other", "x.mp4", start=0, end=10**6, fps=30.0, **frames), tmp_path, 25.0)
    assert len(other) == 50 and other.note is not None
    assert other.note.startswith("annotation frames at 30 fps, media at 25.00 fps: frames 0-1e+06 taken by time; ")
    assert other.note.endswith("runs past the media's end (2.00 s): shortened to it")
    with pytest.raises(RangeError, match=r"\(50 frames\): shortened to it, which leaves 4 frame\(s\) of the 16"):
        open_frames(_item("tail", "x.mp4", start=46, end=10**6, **frames), tmp_path, 25.0, min_frames=16)
    # a range within one frame of the end is the annotation's rounding, not a range past it: no note
    rounding = open_frames(_item("rounding", "x.mp4", start=0, end=50, **frames), tmp_path, 25.0)
    assert rounding.note is None and len(rounding) == 50


def _celebvhq_root(root: Path) -> None:
    """CelebV-HQ's layout: one raw 3 s download (a face at the centre) and clips of celebvhq_info.json."""
    _face_clip(root / "downloaded_celebvhq" / "raw" / "abcdefghijk.mp4", 3.0, (320, 240))
    bbox = {"top": 0.1, "bottom": 0.8, "left": 0.3, "right": 0.7}

    def clip(start: object, end: object, **box: float) -> dict[str, object]:
        return {"ytb_id": "abcdefghijk", "duration": {"start_sec": start, "end_sec": end}, "bbox": bbox | box}

    clips = {
        "abcdefghijk_0": clip(0.0, 2.0),
        "abcdefghijk_1": clip(0.0, 1e308),
        "abcdefghijk_2": clip(2.95, 1e308),
        "abcdefghijk_3": clip("inf", 2.0),
        "abcdefghijk_4": clip(-1.0, 2.0),
        "abcdefghijk_5": clip(0.0, 2.0, left=0.5, right=0.5),
    }
    (root / "celebvhq_info.json").write_text(json.dumps({"meta_info": {}, "clips": clips}))


def _mead_root(root: Path, outside: Path) -> None:
    """MEAD's layout with two takes: one 480x320 (above max_pixels), one a symlink out of the root."""
    level = root / "M003" / "video" / "front" / "angry" / "level_1"
    _face_clip(level / "001.mp4", 1.0, (480, 320))
    _face_clip(outside, 1.0)
    os.symlink(outside, level / "002.mp4")


@pytest.mark.slow
def test_the_build_records_every_hostile_item_once_and_goes_on(tmp_path: Path, sample_config: str) -> None:
    celebvhq, mead, out = tmp_path / "celebvhq", tmp_path / "mead", tmp_path / "out"
    _celebvhq_root(celebvhq)
    _mead_root(mead, tmp_path / "elsewhere" / "take.mp4")
    sources = ["--source", f"celebvhq={celebvhq}", "--source", f"mead={mead}"]
    common = [
        *sources,
        "--out",
        str(out),
        "--workers",
        "1",
        "--config",
        sample_config,
        f"--set=max_pixels={MAX_PIXELS}",
    ]
    rp_data("build", *common)
    rp_data("build", *common, "--retry-failed")  # the refusals hold when the disk is read again
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert "internal_error" not in set(manifest.reason.dropna())
    sources_rows = manifest[manifest.kind == "source"]
    assert sources_rows.item_id.is_unique  # each item once, whatever happened to it
    rows = sources_rows.set_index("item_id")
    assert rows.loc["celebvhq/abcdefghijk_0", "status"] != "failed"
    shortened = rows.loc["celebvhq/abcdefghijk_1"]
    assert shortened.status != "failed" and shortened.frames == 75  # 0-3 s at 25 fps
    assert "range 0-1e+308 (sec) runs past the media's end (3.00 s): shortened to it" in shortened.message
    expected = {
        "celebvhq/abcdefghijk_2": ("range_outside_media", "leaves 1 frame(s) of the 16 a clip needs"),
        "mead/M003/front/angry/level_1/001": ("too_large", f"above max_pixels={MAX_PIXELS}"),
        "mead/M003/front/angry/level_1/002": ("media_outside_root", "outside the dataset root"),
    }
    for item_id, (reason, words) in expected.items():
        row = rows.loc[item_id]
        assert (row.status, row.reason, row.error_class, row.attempt) == ("failed", reason, "permanent", 1), item_id
        assert words in row.message, (item_id, row.message)
    invalid = manifest[(manifest.kind == "annotation") & (manifest.reason == "invalid_value")]
    assert sorted(invalid.message) == [
        "celebvhq/abcdefghijk_3: start inf is not a finite number >= 0",
        "celebvhq/abcdefghijk_4: start -1.0 is not a finite number >= 0",
        "clip 'abcdefghijk_5': bbox {'top': 0.1, 'bottom': 0.8, 'left': 0.5, 'right': 0.5} is not a box inside 0..1",
    ]
    assert set(invalid.item_id) == {"celebvhq/celebvhq_info.json"}
    assert not manifest.item_id.str.contains("abcdefghijk_[345]$").any()  # no source row: never planned
