"""Reading frames from every media kind the adapters yield (video files, frame folders, images).

The build decodes each source frame once: `open_frames` resamples an item's range to the output rate
by choosing source frames (nearest in time), cuts the annotated region out of each frame as it is
decoded, and hands the frames on in small batches, so memory stays bounded by what a stage keeps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.sources.probe import IMAGE_SUFFIXES
from pipeline.sources.records import SourceItem


class DecodeError(ValueError):
    """The media cannot be decoded (truncated, corrupt, unsupported): a permanent failure of the item."""


REGION_MARGIN = 1.5  # the annotated crop is widened by this so the build's own crop has context


def read_image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _video_reader(path: Path):  # type: ignore[no-untyped-def] - decord has no type hints
    from decord import VideoReader, cpu

    try:
        return VideoReader(str(path), ctx=cpu(0), num_threads=1)
    except Exception as exc:  # decord raises RuntimeError/DECORDError with FFmpeg's words
        raise DecodeError(f"cannot open the video: {str(exc).splitlines()[0][:200]}") from exc


def middle_frame(item: SourceItem, root: Path) -> np.ndarray:
    """The frame in the middle of the item (of its annotated range when the media is still uncut)."""
    path = root / item.media_path
    if item.modality == "image":
        return read_image(path)
    if item.modality == "frames":
        files = frame_files(path)
        return read_image(files[len(files) // 2])
    reader = _video_reader(path)
    count = len(reader)
    index = count // 2
    if not item.media_cut and item.start is not None and item.end is not None:
        middle = (item.start + item.end) / 2
        index = round(middle * reader.get_avg_fps()) if item.time_unit == "sec" else round(middle)
    return reader[min(max(index, 0), count - 1)].asnumpy()


def item_range(item: SourceItem, count: int, fps: float) -> tuple[int, int]:
    """[first, last] source frame indices (inclusive) the item covers in media of `count` frames."""
    if item.media_cut or item.start is None or item.end is None:
        return 0, count - 1
    if item.time_unit == "sec":
        first, last = math.ceil(item.start * fps - 1e-6), math.ceil(item.end * fps - 1e-6) - 1
    else:
        first, last = int(item.start), int(item.end) - (0 if item.end_inclusive else 1)
    return max(first, 0), min(last, count - 1)


def resample(first: int, last: int, source_fps: float, target_fps: float | None) -> np.ndarray:
    """Source frame indices, nearest in time, of an output sequence at `target_fps`."""
    if last < first:
        return np.zeros(0, dtype=np.int64)
    if not target_fps or abs(target_fps - source_fps) < 1e-3:
        return np.arange(first, last + 1, dtype=np.int64)
    count = math.floor((last - first + 1) / source_fps * target_fps + 1e-6)
    times = np.arange(count) / target_fps
    return np.minimum(first + np.round(times * source_fps).astype(np.int64), last)


def widened(region: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = region
    cx, cy, half_w, half_h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * REGION_MARGIN / 2, (y1 - y0) * REGION_MARGIN / 2
    return (
        max(0, round(cx - half_w)),
        max(0, round(cy - half_h)),
        min(width, round(cx + half_w)),
        min(height, round(cy + half_h)),
    )


@dataclass
class FrameStream:
    """An item's frames at the output rate, cut to its (widened) annotated region."""

    fps: float
    source_fps: float
    source_index: np.ndarray  # source frame number of every output frame
    region: tuple[int, int, int, int]  # x0, y0, x1, y1 in media pixels
    media_size: tuple[int, int]
    _read: object  # callable(list[int]) -> (n, h, w, 3) uint8 full frames

    def __len__(self) -> int:
        return len(self.source_index)

    def batches(self, size: int = 16) -> Iterator[np.ndarray]:
        x0, y0, x1, y1 = self.region
        for start in range(0, len(self.source_index), size):
            wanted = self.source_index[start : start + size]
            unique, inverse = np.unique(wanted, return_inverse=True)
            frames = self._read(unique.tolist())  # type: ignore[operator]
            yield np.ascontiguousarray(frames[inverse, y0:y1, x0:x1])


def open_frames(item: SourceItem, root: Path, target_fps: float | None) -> FrameStream:
    """Opens a video file or frame folder item; decoding happens as `batches` is iterated."""
    path = root / item.media_path
    if item.modality == "frames":
        files = frame_files(path)
        if not files:
            raise ValueError("the frame folder holds no images")
        first = read_image(files[0])
        height, width = first.shape[:2]
        source_fps = float(item.fps or target_fps or 25.0)
        count = len(files)

        def read(indices: list[int]) -> np.ndarray:
            return np.stack([read_image(files[i]) for i in indices])
    else:
        reader = _video_reader(path)
        count = len(reader)
        height, width = reader[0].shape[:2]
        reader.seek(0)
        source_fps = float(reader.get_avg_fps())

        def read(indices: list[int]) -> np.ndarray:
            try:
                return reader.get_batch(indices).asnumpy()
            except Exception as exc:  # a file that opens but breaks mid-way
                raise DecodeError(f"decoding frames {indices[0]}-{indices[-1]} failed: {exc}") from exc

    first_index, last_index = item_range(item, count, source_fps)
    region = item.crop_in_media(width, height)
    box = widened(region, width, height) if region else (0, 0, width, height)
    fps = float(target_fps or source_fps)
    return FrameStream(
        fps, source_fps, resample(first_index, last_index, source_fps, target_fps), box, (width, height), read
    )
