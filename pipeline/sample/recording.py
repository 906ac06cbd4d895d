"""Video files written the way real sources write them: tagged colour, 10-bit, odd sizes, sideways, variable rate.

The build has to read what YouTube, phones and studio cameras produce, so the sample and the tests write
their clips through this module with those properties, from frames whose colours and geometry they know:
HD downloads are BT.709 limited range, phones record full range, stored on their side with a display
matrix that turns them upright, at a variable frame rate; YouTube serves VP9, which allows odd sizes;
HDR and pro cameras record 10-bit BT.2020. Each property is set as the encoder's own options set it
(stream tags and the codec's VUI), and the pixels are converted to YUV with the matrix and range the tags
name, so a reader that honours the tags gets back the colours the frames were made with.

Written bytes are identical from run to run (one encoder thread; x264's `cpu-independent`).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# FFmpeg's AVColorSpace numbers of the matrices a source may name (None: the file names none)
MATRICES = {"bt709": 1, "bt601": 6, "bt2020": 9}
# each codec's own names for the tags, where its VUI is not written from the codec context
_X26X_MATRIX = {"bt709": "bt709", "bt601": "smpte170m", "bt2020": "bt2020nc"}
_X26X_PRIMARIES = {"bt709": "bt709", "bt601": "smpte170m", "bt2020": "bt2020"}
_X26X_TRANSFER = {"bt709": "bt709", "bt601": "smpte170m", "bt2020": "bt2020-10"}
TIME_BASE = Fraction(1, 90000)  # the MPEG clock: variable-rate timestamps keep their precision


@dataclass(frozen=True)
class Recording:
    """How a source wrote its file. The default is an HD YouTube download in H.264."""

    codec: str = "libx264"  # libx264, libx265 (10-bit), libvpx-vp9 (odd sizes)
    pix_fmt: str = "yuv420p"  # yuv420p, yuvj420p, yuv422p, yuv444p, yuv420p10le, ...
    matrix: str | None = "bt709"  # bt601, bt709, bt2020; None leaves the file untagged (read as BT.601)
    full_range: bool = False
    rotation: int = 0  # counter-clockwise degrees the display matrix turns the stored picture by
    times: tuple[float, ...] | None = None  # presentation times in seconds (variable rate); None: constant
    crf: int = 18
    container: str = "mp4"  # mp4, or webm / matroska (YouTube's VP9 comes in both)

    def __post_init__(self) -> None:
        if self.matrix is not None and self.matrix not in MATRICES:
            raise ValueError(f"unknown matrix {self.matrix!r}; known: {', '.join(MATRICES)}")
        if self.rotation % 90:
            raise ValueError(f"rotation must be a multiple of 90 degrees, got {self.rotation}")


def _vui(matrix: str | None) -> str:
    """x264's and x265's shared names for the colour description written into the bitstream."""
    if not matrix:
        return ""
    return f":colormatrix={_X26X_MATRIX[matrix]}:colorprim={_X26X_PRIMARIES[matrix]}:transfer={_X26X_TRANSFER[matrix]}"


def _codec_options(recording: Recording) -> dict[str, str]:
    vui, full = _vui(recording.matrix), recording.full_range
    if recording.codec == "libx264":
        params = f"threads=1:cpu-independent=1{vui}:fullrange={'on' if full else 'off'}"
        return {"crf": str(recording.crf), "preset": "veryfast", "x264-params": params}
    if recording.codec == "libx265":
        params = f"pools=none:frame-threads=1:log-level=error{vui}:range={'full' if full else 'limited'}"
        return {"crf": str(recording.crf), "preset": "ultrafast", "x265-params": params}
    if recording.codec == "libvpx-vp9":
        return {
            "crf": str(recording.crf),
            "b": "0",
            "threads": "1",
            "row-mt": "0",
            "deadline": "realtime",
            "cpu-used": "8",
        }
    raise ValueError(f"unsupported codec {recording.codec!r}: libx264, libx265 or libvpx-vp9")


def stored(frame: np.ndarray, rotation: int) -> np.ndarray:
    """An upright picture as a sideways camera stores it (the display matrix turns it back)."""
    return np.ascontiguousarray(np.rot90(frame, -(rotation // 90))) if rotation % 360 else frame


def encode_recording(frames: np.ndarray, fps: float | Fraction, recording: Recording = Recording()) -> bytes:
    """(T, H, W, 3) upright uint8 RGB -> the bytes of a file written as `recording` says."""
    times = recording.times
    if times is not None and len(times) != len(frames):
        raise ValueError(f"{len(times)} presentation times for {len(frames)} frames")
    rate = Fraction(fps).limit_denominator(1001)
    colorspace = MATRICES[recording.matrix] if recording.matrix else 2  # 2: unspecified
    color_range = 2 if recording.full_range else 1  # 2: JPEG (full), 1: MPEG (limited)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=recording.container, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(recording.codec, rate=rate)
        first = stored(frames[0], recording.rotation)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = recording.pix_fmt
        stream.time_base = TIME_BASE
        context = stream.codec_context
        context.time_base = TIME_BASE
        context.thread_count = 1
        context.colorspace, context.color_range = colorspace, color_range
        if recording.matrix:
            context.color_primaries = {"bt709": 1, "bt601": 6, "bt2020": 9}[recording.matrix]
            context.color_trc = {"bt709": 1, "bt601": 6, "bt2020": 14}[recording.matrix]
        context.options = _codec_options(recording)
        if recording.rotation % 360:
            stream.set_display_rotation(recording.rotation % 360)
        for index, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(stored(frame, recording.rotation), format="rgb24")
            # converted with the tagged matrix and range: what the file says is what its pixels mean
            picture = picture.reformat(
                format=recording.pix_fmt,
                dst_colorspace=colorspace if recording.matrix else MATRICES["bt601"],
                dst_color_range=color_range,
            )
            seconds = times[index] if times is not None else index / rate
            picture.pts, picture.time_base = round(Fraction(seconds).limit_denominator(10**6) / TIME_BASE), TIME_BASE
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def write_recording(
    path: str | os.PathLike, frames: np.ndarray, fps: float | Fraction, recording: Recording = Recording()
) -> Path:
    """Writes the file (through a temporary name, so a crash leaves no half file) and returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_bytes(encode_recording(frames, fps, recording))
    part.replace(path)
    return path


def variable_times(count: int, fps: float, seed: int, jitter: float = 0.45) -> tuple[float, ...]:
    """A phone's timestamps: frame durations that wander around 1/fps by up to `jitter` of it, seeded."""
    rng = np.random.default_rng(seed)
    steps = (1.0 + rng.uniform(-jitter, jitter, max(count - 1, 0))) / fps
    return tuple(float(t) for t in np.concatenate([[0.0], np.cumsum(steps)]))
