"""Colours exactly as the file says, at any frame size: tagged clips of known colour patches, written as real
sources write them (BT.709 limited range, full range, 10-bit BT.2020, 4:2:2 and 4:4:4, gray, VP9 at odd
sizes, untagged, sideways), read through the build's decoder, through the per-item build path, and back
from the shards through the training loader's decoder.

The truth is the RGB the test painted; H.264/HEVC/VP9 at a low crf keep a flat patch's centre within a
level or two, so the bound of 4 levels leaves room for the codec, not for a wrong matrix (BT.601 read as
BT.709 moves the green patch by 17 levels).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pytest
from kit import item

from manifests.schema import PipelineDefaults
from pipeline.config import BuildConfig
from pipeline.faces import open_detector, open_landmarker
from pipeline.process import Models, process_item
from pipeline.sample.recording import Recording, write_recording
from pipeline.sample.render import Actor, Shot, render_video
from pipeline.video_file import VideoFile
from training.examples import Framing, make_example

PATCHES = ((40, 160, 60), (200, 40, 40), (40, 60, 200), (224, 172, 140), (128, 128, 128), (235, 235, 30))
GRAYS = ((30, 30, 30), (90, 90, 90), (128, 128, 128), (170, 170, 170), (220, 220, 220), (245, 245, 245))
TOLERANCE = 4
CHART = {
    "bt709-limited": Recording(),
    "bt601-full": Recording(matrix="bt601", full_range=True),
    "yuvj420p": Recording(pix_fmt="yuvj420p", matrix="bt601", full_range=True),
    "bt2020-10bit": Recording(codec="libx265", pix_fmt="yuv420p10le", matrix="bt2020"),
    "bt2020-10bit-422": Recording(codec="libx265", pix_fmt="yuv422p10le", matrix="bt2020"),
    "bt709-422": Recording(pix_fmt="yuv422p"),
    "bt709-444-full": Recording(pix_fmt="yuv444p", full_range=True),
    "untagged": Recording(matrix=None),
    "gray-10bit": Recording(codec="libx265", pix_fmt="gray10le"),
    "vp9-odd": Recording(codec="libvpx-vp9", container="webm"),
    "phone-sideways": Recording(rotation=90, full_range=True),
}


def _chart(width: int, height: int, colours: tuple[tuple[int, int, int], ...]) -> tuple[np.ndarray, list]:
    """A 3x2 grid of flat patches filling the frame, and each patch's centre (x, y) and colour."""
    image = np.zeros((height, width, 3), np.uint8)
    centres = []
    for index, colour in enumerate(colours):
        col, row = index % 3, index // 3
        x0, x1 = col * width // 3, (col + 1) * width // 3
        y0, y1 = row * height // 2, (row + 1) * height // 2
        image[y0:y1, x0:x1] = colour
        centres.append(((x0 + x1) / 2, (y0 + y1) / 2, colour))
    return image, centres


def _patch(image: np.ndarray, x: float, y: float, half: int = 3) -> np.ndarray:
    xi, yi = round(x), round(y)
    return image[yi - half : yi + half + 1, xi - half : xi + half + 1].reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize("name", list(CHART))
def test_each_tagged_format_converts_to_the_painted_colours(tmp_path: Path, name: str) -> None:
    recording = CHART[name]
    colours = GRAYS if recording.pix_fmt.startswith("gray") else PATCHES
    width, height = (193, 97) if recording.codec == "libvpx-vp9" else (192, 96)
    chart, centres = _chart(width, height, colours)
    path = write_recording(tmp_path / f"chart.{recording.container}", np.stack([chart] * 3), 25, recording)
    video = VideoFile(path)
    assert video.size == (width, height)  # displayed size, upright whatever the file stores
    _, frame = next(video.decode([1]))
    whole = video.convert(frame, (0, 0, width, height), width, height)
    # a region cut and shrunk, as the build's crops are: the colours must not depend on the path taken
    region = (width // 3, 0, width, height)
    shrunk = video.convert(frame, region, 64, 48)
    pyav = np.rot90(frame.to_ndarray(format="rgb24"), (round(frame.rotation) % 360) // 90)
    for x, y, colour in centres:
        assert np.abs(_patch(whole, x, y) - colour).max() <= TOLERANCE, (name, colour, _patch(whole, x, y))
        # FFmpeg's own conversion of the same frame agrees (it is off by up to 3 levels itself)
        assert np.abs(_patch(whole, x, y) - _patch(pyav, x, y)).max() <= TOLERANCE, (name, colour)
        if x > region[0] + 8:
            sx, sy = (x - region[0]) * 64 / (width - region[0]), y * 48 / height
            assert np.abs(_patch(shrunk, sx, sy, 1) - colour).max() <= TOLERANCE, (name, colour)
    assert video.properties()["media_rotation"] == recording.rotation
    assert video.properties()["media_range"] == ("full" if recording.full_range or "gray" in name else "limited")


def _face_clip(size: tuple[int, int]) -> tuple[np.ndarray, list[tuple[float, float, tuple[int, int, int]]]]:
    """A talking face with two colour patches painted beside it, inside the crop the build will cut."""
    width, height = size
    frames, _ = render_video([Shot((Actor("astronaut", (0.5, 0.5), 0.4 * height),), 24, scene=3)], size, seed=2)
    side = round(0.09 * height)
    spots = []
    for (cx, cy), colour in zip(((0.28, 0.3), (0.72, 0.3)), PATCHES[:2], strict=True):
        x, y = round(cx * width), round(cy * height)
        frames[:, y - side : y + side, x - side : x + side] = colour
        spots.append((float(x), float(y), colour))
    return frames, spots


BUILT = {
    "bt709-limited": ((320, 240), Recording()),
    "bt601-full": ((320, 240), Recording(matrix="bt601", full_range=True)),
    "bt2020-10bit": ((320, 240), Recording(codec="libx265", pix_fmt="yuv420p10le", matrix="bt2020")),
    "vp9-odd": ((641, 481), Recording(codec="libvpx-vp9", container="webm")),
}


@pytest.fixture(scope="module")
def models() -> Models:
    return Models(open_detector(), open_landmarker("mediapipe"))


@pytest.mark.parametrize("name", list(BUILT))
def test_the_build_keeps_the_colours_and_the_shard_decoder_reads_them_back(
    tmp_path: Path, name: str, models: Models
) -> None:
    size, recording = BUILT[name]
    frames, spots = _face_clip(size)
    path = write_recording(tmp_path / f"clip.{recording.container}", frames, 25, recording)
    chart = item(path.name, native_id=name)
    defaults = PipelineDefaults(min_face_px=32, min_clip_frames=8, min_sharpness=0)
    outcome = process_item(chart, tmp_path, BuildConfig(output_size=256), defaults, models, "f")
    assert outcome.source_row["status"] == "ok", (outcome.source_row, outcome.candidate_rows)
    sample = outcome.samples[0]
    meta = json.loads(sample.members["json"])
    x0, y0, x1, _ = meta["crop_box"]
    scale = 256 / (x1 - x0)
    with av.open(io.BytesIO(sample.members["mp4"])) as container:
        decoded = [f for f in container.decode(video=0)]
        assert (decoded[0].colorspace, decoded[0].color_range) == (1, 1)  # written as BT.709 limited, and tagged so
        through_pyav = np.stack([f.to_ndarray(format="rgb24") for f in decoded])
    framing = Framing(mode="video", resolution=256, num_frames=meta["frames"])
    through_loader = make_example(sample.members, framing, np.random.default_rng(0)).frames
    assert through_loader.shape == through_pyav.shape
    for x, y, colour in spots:
        u, v = (x - x0) * scale, (y - y0) * scale
        assert 8 <= u < 248 and 8 <= v < 248, (name, u, v)  # the patch lies in the crop
        for t in (0, len(through_pyav) - 1):
            built, loaded = _patch(through_pyav[t], u, v), _patch(through_loader[t], u, v)
            assert np.abs(built - colour).max() <= TOLERANCE, (name, colour, built)
            assert np.abs(loaded - colour).max() <= TOLERANCE, (name, colour, loaded)
            # the same colours as FFmpeg's conversion, within the 3 levels FFmpeg's own rounding is off by
            assert np.abs(loaded - built).max() <= 3, (name, colour, loaded, built)
