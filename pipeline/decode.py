"""An item's frames on the output timeline, at the size each stage needs (video files, frame folders, images).

`open_frames` reads the media's timeline (presentation times, orientation), maps the item's annotated
range onto it, and picks the media frame nearest in time to each output frame at the target rate; it
decodes nothing yet. Stages then ask for what they need: `small` streams every output frame of the
annotated region shrunk for detection and scene cuts, `read` decodes chosen output frames once more and
cuts a box at output size (the crops of kept clips), `batches` gives the region at full size (evaluation).
`open_video` gives a whole video file the same way, at its own mean rate (a driving video for rp-animate).
Nothing full-size is held beyond one frame, so a worker's memory does not grow with resolution or length.

Annotation frame numbers count frames at the rate the annotation states. When the file's own rate differs
(a re-encode, a different download), they are converted by time and the conversion is noted on the item;
a range that lies outside the media is refused with a reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np
from PIL import Image, ImageOps

from pipeline.sources.probe import IMAGE_SUFFIXES
from pipeline.sources.records import Refused, SourceItem, TooLarge
from pipeline.video_file import DecodeError, IntBox, VideoFile, even_box, shrunk_size

if TYPE_CHECKING:
    from pipeline.config import MediaLimits

__all__ = [
    "DecodeError",
    "FrameStream",
    "RangeError",
    "RegionError",
    "frame_files",
    "middle_frame",
    "open_frames",
    "open_video",
    "read_image",
]

REGION_MARGIN = 1.5  # the annotated crop is widened by this so the build's own crop has context
RATE_TOLERANCE = 0.01  # an annotation rate within 1 % of the file's is the same rate


class RangeError(Refused):
    """The annotated range does not lie in the media, or too little of it does (a permanent failure)."""

    reason = "range_outside_media"


class RegionError(Refused):
    """Nothing to cut: the annotated crop lies outside the picture, or the picture is under 2x2 pixels."""

    reason = "empty_region"


def _open_image(path: Path) -> Image.Image:
    """The image with its header read and no pixel decoded; PIL's own decompression-bomb refusal (not an
    OSError) is the TooLarge it means."""
    try:
        return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"{path}: {exc}") from exc


def read_image(path: Path, limits: MediaLimits | None = None) -> np.ndarray:
    """RGB, upright: a camera's EXIF orientation is applied as a player would. With `limits`, an image too
    large by its header is refused (TooLarge) before its pixels are decoded."""
    with _open_image(path) as image:
        if limits is not None:
            limits.check(path, *image.size)
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class Media(Protocol):
    """What a stream reads from: frame times, displayed size, decoded frames and their conversion."""

    times: np.ndarray
    fps: float

    @property
    def size(self) -> tuple[int, int]: ...

    def decode(self, indices: Sequence[int], *, fast: bool = False) -> Iterator[tuple[int, object]]: ...

    def convert(self, frame: object, box: IntBox, out_w: int, out_h: int) -> np.ndarray: ...

    def properties(self) -> dict[str, object]: ...


class FrameFolder:
    """A folder of extracted frames (VFHQ's processed clips): evenly spaced at the annotation's rate."""

    def __init__(self, path: Path, fps: float):
        self.files = frame_files(path)
        if not self.files:
            raise DecodeError(f"{path}: the frame folder holds no images")
        with _open_image(self.files[0]) as first:
            self._size = first.size
        self.fps = fps
        self.times = np.arange(len(self.files)) / fps

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def properties(self) -> dict[str, object]:
        """Extracted frames are images: PIL reads their colour and EXIF orientation, at a constant rate."""
        return {"media_codec": f"frames ({self.files[0].suffix.lstrip('.').lower()})", "media_vfr": False}

    def decode(self, indices: Sequence[int], *, fast: bool = False) -> Iterator[tuple[int, object]]:
        for index in sorted(set(int(i) for i in indices)):
            try:
                yield index, read_image(self.files[index])
            except OSError as exc:
                raise DecodeError(f"{self.files[index]}: {exc}") from exc

    def convert(self, frame: object, box: IntBox, out_w: int, out_h: int) -> np.ndarray:
        x0, y0, x1, y1 = box
        cut = frame[y0:y1, x0:x1]  # type: ignore[index]
        if cut.shape[1::-1] == (out_w, out_h):
            return np.ascontiguousarray(cut)
        method = cv2.INTER_AREA if cut.shape[1] >= out_w else cv2.INTER_CUBIC
        return cv2.resize(cut, (out_w, out_h), interpolation=method)


class Picture:
    """One decoded output frame, converted on demand to the sizes stages ask for (each size once).

    Pictures of the analysis pass hold the decoder's frame (4:2:0, a quarter of RGB's size) only while a
    stage may still ask for them: the scene detector at once, the face detector every k-th frame or when
    a shot ends.
    """

    def __init__(self, media: Media, frame: object, region: IntBox):
        self._media, self._frame, self._region = media, frame, region
        self._sizes: dict[tuple[int, int], np.ndarray] = {}

    def at(self, width: int, height: int) -> np.ndarray:
        if (width, height) not in self._sizes:
            self._sizes[width, height] = self._media.convert(self._frame, self._region, width, height)
        return self._sizes[width, height]


@dataclass(frozen=True)
class Span:
    """[start, end) of an item in seconds on its media's timeline, and how the annotation was read."""

    start: float
    end: float
    converted: str | None = None  # annotation frames at another rate than the file's, taken by time
    shortened: str | None = None  # a range running past the media's end, cut at it

    @property
    def note(self) -> str | None:
        return "; ".join(n for n in (self.converted, self.shortened) if n) or None


def _shortened(item: SourceItem, past: bool, media_end: str) -> str | None:
    """The note of a range cut at the media's end (a download shorter than the annotated source, or a
    hostile end such as 1e308 s); a frame's rounding past the end is no such range."""
    if not past:
        return None
    return (
        f"the annotated range {item.start:g}-{item.end:g} ({item.time_unit}) runs past the media's end "
        f"({media_end}): shortened to it"
    )


def _span(item: SourceItem, media: Media) -> Span:
    """The item's span on the media's timeline; an annotated end past the media's is cut at it."""
    frame = 1.0 / media.fps
    duration = float(media.times[-1]) + frame
    if item.media_cut or item.start is None or item.end is None:
        return Span(0.0, duration)
    if item.time_unit == "sec":
        end = float(item.end) + (frame if item.end_inclusive else 0.0)
        past = _shortened(item, end > duration + frame, f"{duration:.2f} s")
        return Span(float(item.start), min(end, duration), shortened=past)
    stop = float(item.end) + (1 if item.end_inclusive else 0)
    stated = float(item.fps) if item.fps else None
    count = len(media.times)
    if stated is None or abs(stated - media.fps) <= RATE_TOLERANCE * media.fps:
        # frame numbers of this very file: frame n starts at its own timestamp
        first, last = int(item.start), min(math.ceil(stop) - 1, count - 1)
        if first >= count:
            raise RangeError(f"frames {first}-{last} start past the media's {count} frames")
        end = float(media.times[last]) + frame
        if last + 1 < count:
            end = min(end, float(media.times[last + 1]))
        past = _shortened(item, stop > count + 1, f"{count} frames")
        return Span(float(media.times[first]), end, shortened=past)
    converted = (
        f"annotation frames at {stated:g} fps, media at {media.fps:.2f} fps: "
        f"frames {item.start:g}-{stop - 1:g} taken by time"
    )
    end = stop / stated
    past = _shortened(item, end > duration + frame, f"{duration:.2f} s")
    return Span(float(item.start) / stated, min(end, duration), converted, past)


def choose_frames(times: np.ndarray, start: float, end: float, target_fps: float | None) -> np.ndarray:
    """Media frame indices, nearest in presentation time, of an output sequence over [start, end).

    The frames in the span are those on screen at some moment of it (the one showing at `start`
    included). Without a target rate every one of them is kept; with one, output frame j stands at
    start + j / target_fps and takes the frame whose timestamp is nearest (a frame repeats when the media
    is slower, frames are skipped when it is faster, and a variable rate is followed as it varies).
    """
    last_duration = float(np.median(np.diff(times))) if len(times) > 1 else np.inf
    following = np.append(times[1:], times[-1] + last_duration)
    inside = np.flatnonzero((times < end - 1e-6) & (following > start + 1e-6))
    if len(inside) == 0:
        return np.zeros(0, dtype=np.int64)
    if not target_fps:
        return inside.astype(np.int64)
    begin = max(start, float(times[inside[0]]))
    count = math.floor((end - begin) * target_fps + 1e-6)
    wanted = begin + np.arange(count) / target_fps
    right = np.clip(np.searchsorted(times, wanted), 1, max(len(times) - 1, 1))
    left = right - 1
    nearer_left = np.abs(wanted - times[left]) <= np.abs(times[np.minimum(right, len(times) - 1)] - wanted)
    chosen = np.where(nearer_left, left, right)
    return np.clip(chosen, inside[0], inside[-1]).astype(np.int64)


def widened(region: tuple[float, float, float, float], width: int, height: int) -> IntBox:
    """The annotated region grown by REGION_MARGIN, inside the picture, with even edges (4:2:0 chroma)."""
    x0, y0, x1, y1 = region
    cx, cy, half_w, half_h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * REGION_MARGIN / 2, (y1 - y0) * REGION_MARGIN / 2
    left, top = max(0, round(cx - half_w)), max(0, round(cy - half_h))
    right, bottom = min(width, round(cx + half_w)), min(height, round(cy + half_h))
    return even_box((left, top, right, bottom), width, height)


@dataclass
class FrameStream:
    """An item's output frames: which media frame each one is, and the (widened) annotated region."""

    fps: float
    source_fps: float  # the media's mean rate
    source_index: np.ndarray  # media frame index of every output frame
    source_time: np.ndarray  # its presentation time in seconds
    region: IntBox  # x0, y0, x1, y1 in displayed media pixels
    media_size: tuple[int, int]  # displayed (width, height)
    note: str | None  # how the annotated range was read, when it needed converting
    media: Media

    def __len__(self) -> int:
        return len(self.source_index)

    def small_size(self, max_side: int) -> tuple[int, int]:
        """The region's size shrunk to fit max_side (even, never enlarged)."""
        x0, y0, x1, y1 = self.region
        return shrunk_size(x1 - x0, y1 - y0, max_side)

    def pictures(self) -> Iterator[Picture]:
        """Every output frame, for analysis (decoded without the deblocking filter, see VideoFile.decode)."""
        for frame in self._decoded(range(len(self)), fast=True):
            yield Picture(self.media, frame, self.region)

    def small(self, max_side: int) -> Iterator[np.ndarray]:
        """Every output frame of the region, shrunk to fit max_side."""
        width, height = self.small_size(max_side)
        for picture in self.pictures():
            yield picture.at(width, height)

    def read(self, outputs: Sequence[int], box: IntBox, size: int) -> np.ndarray:
        """(len(outputs), size, size, 3): a square box (region pixels) of the given output frames, fully decoded."""
        return np.stack(list(self.crops(outputs, box, size)))

    def crops(self, outputs: Sequence[int], box: IntBox, size: int) -> Iterator[np.ndarray]:
        """`read` one frame at a time, so a long video's crops can go straight to where they are kept."""
        x0, y0 = self.region[:2]
        media_box = (box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0)
        for frame in self._decoded(outputs):
            yield self.media.convert(frame, media_box, size, size)

    def batches(self, size: int = 16) -> Iterator[np.ndarray]:
        """The region at full size, `size` output frames at a time (evaluation clips are short)."""
        x0, y0, x1, y1 = self.region
        frames = (self.media.convert(f, self.region, x1 - x0, y1 - y0) for f in self._decoded(range(len(self))))
        while batch := [frame for _, frame in zip(range(size), frames, strict=False)]:
            yield np.stack(batch)

    def _decoded(self, outputs: Sequence[int], *, fast: bool = False) -> Iterator[object]:
        """Decoded frames of the given output frames (ascending), each media frame decoded once if repeated."""
        wanted = self.source_index[np.asarray(outputs, dtype=np.int64)]
        decoded = self.media.decode(wanted.tolist(), fast=fast)
        current, frame = -1, None
        for media_index in wanted:
            while current < media_index:
                try:
                    current, frame = next(decoded)
                except StopIteration as exc:
                    raise DecodeError(f"media frame {int(media_index)} could not be decoded") from exc
            yield frame


def open_media(item: SourceItem, root: Path, limits: MediaLimits | None = None) -> Media:
    path = root / item.media_path
    if item.modality == "frames":
        return FrameFolder(path, float(item.fps or 25.0))
    return VideoFile(path, limits)


def open_frames(
    item: SourceItem,
    root: Path,
    target_fps: float | None,
    *,
    limits: MediaLimits | None = None,
    min_frames: int = 1,
) -> FrameStream:
    """Reads an item's timeline and orientation; decoding happens as frames are asked for.

    With `limits`, media too large are refused (TooLarge) from the header, and again from the timeline
    just read (a header can lack a duration, or lie; a frame folder has none). A range running past the
    media's end is shortened with a note, or refused (RangeError) when under `min_frames` output frames
    of it remain; a region with nothing to cut is refused (RegionError) before any frame is decoded.
    """
    media = open_media(item, root, limits)
    width, height = media.size
    if limits is not None:
        limits.check(root / item.media_path, width, height, float(media.times[-1]))
    span = _span(item, media)
    chosen = choose_frames(media.times, span.start, span.end, target_fps)
    if len(chosen) == 0 and item.start is not None and not item.media_cut:
        raise RangeError(
            f"the annotated range {item.start:g}-{item.end:g} ({item.time_unit}) lies outside the media "
            f"({len(media.times)} frames, {float(media.times[-1]):.2f} s)" + (f"; {span.note}" if span.note else "")
        )
    if span.shortened and len(chosen) < min_frames:
        raise RangeError(f"{span.shortened}, which leaves {len(chosen)} frame(s) of the {min_frames} a clip needs")
    return FrameStream(
        fps=float(target_fps or media.fps),
        source_fps=float(media.fps),
        source_index=chosen,
        source_time=media.times[chosen],
        region=_region(item, width, height),
        media_size=(width, height),
        note=span.note,
        media=media,
    )


def _region(item: SourceItem, width: int, height: int) -> IntBox:
    """The part of the picture the stages see: the widened annotated crop, or all of it (even-sized)."""
    crop = item.crop_in_media(width, height)
    box = widened(crop, width, height) if crop else (0, 0, width, height)
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        if crop is None:
            raise RegionError(f"{item.media_path}: the {width}x{height} picture is under 2x2 pixels: nothing to cut")
        shown = tuple(round(v, 1) for v in crop)
        raise RegionError(f"{item.media_path}: the annotated crop {shown} lies outside the {width}x{height} picture")
    return box


def open_video(path: Path) -> FrameStream:
    """A whole video file as frames at evenly spaced times at its mean rate (a driving video).

    Output frame j shows what the file shows at j / fps, so a variable-rate file keeps its timing and its
    duration (its frame count stays the same); a constant-rate file gives each of its frames once.
    """
    media = VideoFile(path)
    width, height = media.size
    chosen = choose_frames(media.times, 0.0, float(media.times[-1]) + 1.0 / media.fps, media.fps)
    return FrameStream(
        fps=float(media.fps),
        source_fps=float(media.fps),
        source_index=chosen,
        source_time=media.times[chosen],
        region=(0, 0, width, height),
        media_size=(width, height),
        note=None,
        media=media,
    )


def middle_frame(item: SourceItem, root: Path) -> np.ndarray:
    """The upright frame in the middle of the item (of its annotated range when the media is still uncut)."""
    if item.modality == "image":
        return read_image(root / item.media_path)
    stream = open_frames(item, root, None)
    if len(stream) == 0:
        raise RangeError("the item holds no frame")
    width, height = stream.media_size
    index = int(stream.source_index[len(stream) // 2])
    frame = next(stream.media.decode([index]))[1]
    return stream.media.convert(frame, (0, 0, width, height), width, height)
