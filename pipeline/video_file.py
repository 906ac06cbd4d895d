"""A video file as the build sees it: upright frames on a true timeline, decoded straight to the size needed.

Three things a naive reader gets wrong at real scale, and why this module exists:

- Geometry. Phones store portrait video sideways and say so in the display matrix; a reader that ignores
  it hands the detector faces lying on their side. Frames here come out upright (`rotation` is the
  counter-clockwise turn the display matrix asks for, as PyAV reports it).
- Time. A variable-frame-rate file has no fixed frame duration, so "frame n" is not "n / average fps".
  The presentation timestamps of every frame are read from the packets first (demuxing only, which costs
  next to nothing), and frames are chosen by time.
- Size. A 1080p or 4K frame in RGB is 6-25 MB; holding a clip of them is what made workers grow to
  gigabytes. Frames are converted from the decoder's YUV planes after cutting the region that is needed
  and shrinking it to the size the next stage wants, so nothing full-size outlives one frame.
"""

from __future__ import annotations

import io
import math
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.colour import ColourTags, IntBox, colour_tags, convert_planes

if TYPE_CHECKING:
    from pipeline.config import MediaLimits


class DecodeError(ValueError):
    """The media cannot be decoded (truncated, corrupt, unsupported): a permanent failure of the item."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


@dataclass(frozen=True)
class Orientation:
    """How the stored picture (as decoded) turns into the displayed one."""

    stored_w: int
    stored_h: int
    rotation: int  # counter-clockwise degrees, one of 0, 90, 180, 270

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as displayed."""
        if self.rotation in (90, 270):
            return self.stored_h, self.stored_w
        return self.stored_w, self.stored_h

    def upright(self, image: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(image, self.rotation // 90)) if self.rotation else image

    def to_stored(self, box: IntBox) -> IntBox:
        """A displayed box in stored pixels (where to cut before turning the cut upright)."""
        x0, y0, x1, y1 = box
        w, h = self.stored_w, self.stored_h
        if self.rotation == 90:
            return w - y1, x0, w - y0, x1
        if self.rotation == 180:
            return w - x1, h - y1, w - x0, h - y0
        if self.rotation == 270:
            return y0, h - x1, y1, h - x0
        return box

    def scaled_size(self, out_w: int, out_h: int) -> tuple[int, int]:
        """(width, height) in stored orientation of an output that is out_w x out_h once upright."""
        return (out_h, out_w) if self.rotation in (90, 270) else (out_w, out_h)


def _rotation(frame: object) -> int:
    degrees = round(getattr(frame, "rotation", 0) or 0) % 360
    if degrees % 90:
        raise DecodeError(f"display rotation of {degrees} degrees is not a multiple of 90")
    return degrees


def even_box(box: IntBox, width: int, height: int) -> IntBox:
    """The box with its corner moved to even pixels (4:2:0 chroma covers 2x2 pixels), inside width x height.

    Its far edges are widened to even pixels too, except at an odd-sized frame's last row or column, which
    the chroma plane still covers (its last sample stands for one pixel).
    """
    x0, y0, x1, y1 = box
    return x0 - x0 % 2, y0 - y0 % 2, min(x1 + x1 % 2, width), min(y1 + y1 % 2, height)


def convert_region(frame: object, box: IntBox, out_w: int, out_h: int) -> np.ndarray:
    """RGB (out_h, out_w, 3) of `box` (stored pixels) of a decoded frame, in stored orientation, in the
    colours the stream's matrix and range give (pipeline.colour). Planar YUV is cut and resized before it
    is converted; what pipeline.colour leaves alone goes through PyAV's own conversion of the whole frame.
    """
    rgb = convert_planes(frame, box, out_w, out_h)
    if rgb is not None:
        return rgb
    x0, y0, x1, y1 = box
    cut = frame.to_ndarray(format="rgb24")[y0:y1, x0:x1]  # type: ignore[attr-defined]
    if (x1 - x0, y1 - y0) == (out_w, out_h):
        return np.ascontiguousarray(cut)
    method = cv2.INTER_AREA if x1 - x0 >= out_w and y1 - y0 >= out_h else cv2.INTER_CUBIC
    return cv2.resize(cut, (out_w, out_h), interpolation=method)


@dataclass(frozen=True)
class Timeline:
    """What demuxing a file's packets tells (plus its first frame): the part of opening a video that reads
    the whole file, hence what the timeline cache keeps."""

    pts: np.ndarray
    times: np.ndarray
    fps: float
    stated_fps: float
    timestamped: bool
    codec: str
    orientation: Orientation
    pixel_format: str
    colour: ColourTags
    header: tuple[int, int, float]  # stored width, height and the header's duration (the limits' check)

    @property
    def frames(self) -> int:
        return len(self.times)


def _demux(source: Path | bytes, path: Path, limits: MediaLimits | None) -> Timeline:
    """Reads every packet's timestamp and decodes the first frame; with `limits`, a file too large by its
    header is refused (TooLarge) before its packets are demuxed."""
    import av

    try:
        with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source)) as container:
            stream = container.streams.video[0]
            header = stream.duration * stream.time_base if stream.duration and stream.time_base else None
            seconds = float(header if header is not None else (container.duration or 0) / av.time_base)
            size = (stream.codec_context.width, stream.codec_context.height, seconds)
            if limits is not None:
                limits.check(path, *size)
            stream.codec_context.thread_count = 1
            pts, first = [], None
            for packet in container.demux(stream):  # the first frame is decoded on the way (one open)
                if packet.size:
                    pts.append(packet.pts if packet.pts is not None else packet.dts)
                if first is None:
                    first = next(iter(stream.codec_context.decode(packet)), None)
            codec = stream.codec_context.name
            average = float(stream.average_rate or stream.guessed_rate or 0)
            time_base = stream.time_base
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise DecodeError(f"{path}: cannot open the video: {_first_line(exc)}") from exc
    if not pts:
        raise DecodeError(f"{path}: the video holds no frames")
    timestamped = not any(p is None for p in pts)
    if not timestamped:
        # no timestamps at all (raw elementary streams): frames are evenly spaced at the stated rate
        stamps = np.arange(len(pts), dtype=np.int64)
        times = stamps / (average or 25.0)
    else:
        stamps = np.unique(np.asarray(pts, dtype=np.int64))
        times = (stamps - stamps[0]) * float(time_base)
    span = times[-1] - times[0]
    # the mean rate over the file, the duration of the last frame counted as that of the others
    fps = (len(times) - 1) / span if span > 0 else (average or 25.0)
    if first is None:
        raise DecodeError(f"{path}: no frame could be decoded")
    orientation = Orientation(first.width, first.height, _rotation(first))
    stamps.setflags(write=False)  # shared by every VideoFile the cache hands it to
    times.setflags(write=False)
    return Timeline(
        stamps, times, fps, average or fps, timestamped, codec, orientation, first.format.name, colour_tags(first), size
    )


class TimelineCache:
    """The timelines of the last files a worker opened, keyed by (path, size, mtime): CelebV-HQ and HDTF
    cut many clips from one raw video, and demuxing it again for each clip read the whole file each time.

    Bounded by files and by timestamps held (a 10-hour video has a million), so a worker's memory stays
    flat; the least recently used timeline goes first. `demuxed` counts the files it demuxed.
    """

    def __init__(self, max_files: int = 64, max_frames: int = 4_000_000):
        self.max_files, self.max_frames = max_files, max_frames
        self._timelines: OrderedDict[tuple[str, int, int], Timeline] = OrderedDict()
        self.demuxed = 0

    def timeline(self, path: Path, limits: MediaLimits | None) -> Timeline:
        try:
            info = os.stat(path)
        except OSError:
            return _demux(path, path, limits)  # PyAV's own error about the file, as ever
        key = (str(Path(path).resolve()), info.st_size, info.st_mtime_ns)
        held = self._timelines.get(key)
        if held is not None:
            self._timelines.move_to_end(key)
            if limits is not None:
                limits.check(path, *held.header)  # the refusal an uncached open gives
            return held
        self.demuxed += 1
        timeline = _demux(path, path, limits)
        self._timelines[key] = timeline
        while len(self._timelines) > self.max_files or (
            len(self._timelines) > 1 and sum(t.frames for t in self._timelines.values()) > self.max_frames
        ):
            self._timelines.popitem(last=False)
        return timeline

    def clear(self) -> None:
        self._timelines.clear()


TIMELINES = TimelineCache()  # one per process: a build worker keeps it across the items of its shards


class VideoFile:
    """One video file (or a file's bytes, as a shard holds its clips): its frames' presentation times and
    orientation, and decoding by frame index."""

    def __init__(self, source: Path | bytes, limits: MediaLimits | None = None, *, name: str = "clip"):
        """Reads the timeline (a file's from the process's TimelineCache when it was read before); with
        `limits`, a file too large by its header is refused (TooLarge) before its packets are demuxed, which
        for a 10-hour file is the cost to avoid. Bytes are named `name` in errors."""
        self._data = source if isinstance(source, bytes) else None
        self.path = Path(name) if isinstance(source, bytes) else Path(source)
        if isinstance(source, bytes):
            timeline = _demux(source, self.path, limits)
        else:
            timeline = TIMELINES.timeline(self.path, limits)
        self.pts, self.times, self.fps = timeline.pts, timeline.times, timeline.fps
        self.stated_fps, self._timestamped, self.codec = timeline.stated_fps, timeline.timestamped, timeline.codec
        self.orientation, self.pixel_format, self.colour = timeline.orientation, timeline.pixel_format, timeline.colour

    def _open(self):  # type: ignore[no-untyped-def] - an av.container.InputContainer
        import av

        return av.open(io.BytesIO(self._data) if self._data is not None else str(self.path))

    def __len__(self) -> int:
        return len(self.times)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as displayed."""
        return self.orientation.size

    @property
    def variable_rate(self) -> bool:
        """Frame durations that differ by more than a tenth (a phone's or a screen recorder's output)."""
        steps = np.diff(self.times)
        return len(steps) > 1 and float(steps.max() - steps.min()) > 0.1 * float(np.median(steps))

    def properties(self) -> dict[str, object]:
        """What the file is, as the build's manifest records it (the report lists sources by these)."""
        return {
            "media_codec": self.codec,
            "media_format": self.pixel_format,
            "media_matrix": self.colour.matrix,
            "media_range": "full" if self.colour.full_range else "limited",
            "media_rotation": self.orientation.rotation,
            "media_vfr": self.variable_rate,
        }

    def convert(self, frame: object, box: IntBox, out_w: int, out_h: int) -> np.ndarray:
        """Upright RGB (out_h, out_w, 3) of a displayed box of a decoded frame."""
        turn = self.orientation
        stored = even_box(turn.to_stored(box), turn.stored_w, turn.stored_h)
        return turn.upright(convert_region(frame, stored, *turn.scaled_size(out_w, out_h)))

    def frames(self, indices: Sequence[int], out_w: int, out_h: int) -> np.ndarray:
        """(len(indices), out_h, out_w, 3): whole upright frames in the order asked, a repeated index decoded once."""
        width, height = self.size
        converted = {
            index: self.convert(frame, (0, 0, width, height), out_w, out_h) for index, frame in self.decode(indices)
        }
        missing = sorted(set(int(i) for i in indices) - set(converted))
        if missing:
            raise DecodeError(f"{self.path}: frames {missing[:5]} could not be decoded")
        return np.stack([converted[int(index)] for index in indices])

    def decode(self, indices: Sequence[int], *, fast: bool = False) -> Iterator[tuple[int, object]]:
        """(index, av.VideoFrame) for each wanted frame index, ascending, decoded from the keyframe before it.

        One seek to the first wanted frame, then one sequential decode to the last: what a clip or a run of
        clips costs. Each frame stays valid while referenced. `fast` skips H.264's deblocking filter (about
        a third of the decode at 1080p): fine for finding faces and cuts in shrunk frames, never used for
        the pixels that go into a sample.
        """
        import av

        wanted = sorted(set(int(i) for i in indices))
        if not wanted:
            return
        last = wanted[-1]
        position = 0
        try:
            with self._open() as container:
                stream = container.streams.video[0]
                stream.codec_context.thread_count = 1
                if fast:
                    stream.codec_context.options = {"skip_loop_filter": "all"}
                if self._timestamped and wanted[0] > 0:
                    container.seek(int(self.pts[wanted[0]]), stream=stream, backward=True, any_frame=False)
                cursor = 0
                counter = -1
                for frame in container.decode(stream):
                    counter += 1
                    if self._timestamped and frame.pts is not None:
                        index = int(np.searchsorted(self.pts, frame.pts))
                    else:
                        index = counter
                    while cursor < len(wanted) and wanted[cursor] < index:
                        cursor += 1  # a frame the decoder dropped: its neighbour stands in below
                    if cursor < len(wanted) and wanted[cursor] == index:
                        position = index
                        yield index, frame
                        cursor += 1
                    if index >= last or cursor >= len(wanted):
                        return
        except av.FFmpegError as exc:
            raise DecodeError(f"{self.path}: decoding failed after frame {position}: {_first_line(exc)}") from exc


def shrunk_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The largest even (w, h) within max_side on the longer side, never enlarged."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, math.floor(width * scale / 2) * 2), max(2, math.floor(height * scale / 2) * 2)


def displayed_size(path: Path) -> tuple[int, int]:
    """(width, height) of a video as displayed: annotations are drawn on the picture players show.

    A header gives the stored size only, and PyAV exposes the display matrix only on decoded frames, so
    the first frame is decoded (cheap; no full file read as `VideoFile` does for its timeline).
    """
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            first = next(container.decode(stream), None)
            if first is None:
                raise DecodeError(f"{path}: no frame could be decoded")
            return Orientation(first.width, first.height, _rotation(first)).size
    except (av.FFmpegError, IndexError, OSError) as exc:
        raise DecodeError(f"{path}: cannot open the video: {_first_line(exc)}") from exc
