"""H.264 clips that are byte-identical for identical frames, on any CPU; lossless FFV1 clips for evaluation.

x264 needs one thread and `cpu-independent` for that: without the latter its lookahead picked
different bytes from run to run on an AVX-512 machine (measured), and with it files also match across
CPUs. Byte-stable clips are what make a rebuild (or a resumed build) reproduce its shards exactly.

What the project writes says what its pixels mean: H.264 clips are converted to YUV with the BT.709
matrix in limited range and tagged so (in the stream and in x264's VUI), and every reader of them (the
training loader's decoder, PyAV, players) converts them back with the same matrix. Untagged, a reader
would have to guess, and readers guess differently (by frame size, or BT.601 always).
"""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

# what the clips are written with, as FFmpeg numbers them (AVColorSpace, AVColorRange) and as x264 names them
BT709, LIMITED = 1, 1
X264_TAGS = "colormatrix=bt709:fullrange=off"


def encode_h264(frames: np.ndarray, fps: float | Fraction, *, crf: int = 18, preset: str = "veryfast") -> bytes:
    """(T, H, W, 3) uint8 RGB -> an mp4 (libx264, yuv420p, BT.709 limited range) held in memory; H and W
    must be even.

    The moov atom stays at the end of the file, as a camera or an interrupted download leaves it.
    """
    height, width = frames.shape[1:3]
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {width}x{height}")
    rate = Fraction(fps).limit_denominator(1001)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.colorspace, stream.codec_context.color_range = BT709, LIMITED
        stream.codec_context.options = {
            "crf": str(crf),
            "preset": preset,
            "x264-params": f"threads=1:cpu-independent=1:{X264_TAGS}",
        }
        mux_frames(container, stream, frames, rate, yuv=True)
    return buffer.getvalue()


def mux_frames(
    container: av.container.OutputContainer,
    stream: av.VideoStream,
    frames: np.ndarray,
    rate: Fraction,
    *,
    yuv: bool = False,
) -> None:
    """Encode RGB frames at `rate` with consecutive timestamps, then flush the encoder. With `yuv` each frame
    is converted to the stream's pixel format with the BT.709 limited-range matrix its tags name (the
    encoder's own conversion would use BT.601)."""
    for index in range(len(frames)):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[index]), format="rgb24")
        if yuv:
            frame = frame.reformat(format=stream.pix_fmt, dst_colorspace=BT709, dst_color_range=LIMITED)
        frame.pts, frame.time_base = index, 1 / rate
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def encode_ffv1(frames: np.ndarray, fps: float | Fraction) -> bytes:
    """(T, H, W, 3) uint8 RGB -> a Matroska file (FFV1, bgr0) held in memory that decodes to exactly `frames`.

    Why this format: evaluation compares pixels, so inputs given to and outputs read from other methods
    must not carry a codec's error. FFV1 is lossless; bgr0 keeps RGB (any YUV format would round the
    colour conversion, and 4:2:0 would also halve the chroma). FFV1 version 3 is the archival profile
    (RFC 9043). One thread and a bit-exact muxer (no random segment id, no date) keep the bytes identical
    from run to run. Any frame size works.
    """
    height, width = frames.shape[1:3]
    rate = Fraction(fps).limit_denominator(1001)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("ffv1", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "bgr0"
        stream.codec_context.thread_count = 1
        stream.codec_context.options = {"level": "3", "threads": "1"}
        mux_frames(container, stream, frames, rate)
    return buffer.getvalue()
