"""Reading another method's frames from its files, and knowing whether the files kept them exactly.

Why lossless: ours and the baselines are scored on the frames they return, so another method's frames
must reach the metrics unchanged too, or its scores carry a codec's error the others do not (H.264
yuv420p, even at crf 0, decodes 44-45 dB PSNR away from the sample's 512x512 crops, up to 14 levels off
per pixel). Two layouts keep every pixel: an FFV1 video in an RGB pixel format (what
`pipeline.encode.encode_ffv1` writes), or a folder of PNG frames. Any other video is still read, for
compatibility, and reported as lossy with its codec and pixel format, so the run can say so. Videos are
read through the build's video module (`pipeline.video_file`), so another method's file is seen as a
player shows it: upright, in the colours its matrix and range tags give.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from pipeline.video_file import VideoFile

# Codecs that store pixels exactly; whether a file is lossless then depends on its pixel format only.
LOSSLESS_CODECS = frozenset({"ffv1", "png", "rawvideo", "utvideo", "huffyuv", "ffvhuff"})


class FrameSizeError(ValueError):
    """A frame folder whose images do not all have the first one's size."""


@dataclass(frozen=True)
class DecodedFrames:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    encoding: str  # e.g. "ffv1 bgr0", "h264 yuv420p", "png frames"
    lossless: bool


def exact_in_rgb(pixel_format: str) -> bool:
    """Whether 8-bit RGB frames survive this pixel format unchanged: RGB, grey or palette formats do; any
    YUV format rounds the colour conversion (and 4:2:0 or 4:2:2 also drop chroma samples)."""
    layout = av.VideoFormat(pixel_format)
    return layout.is_rgb or layout.has_palette or pixel_format.startswith("gray")


@dataclass(frozen=True)
class Header:
    """What an output says about itself before a frame is decoded."""

    size: tuple[int, int]  # (width, height) as displayed
    frames: int
    fps: float | None  # the mean rate; None for a PNG folder
    video: VideoFile | None = None  # the video, its timeline read: decoding it does not demux it again


def read_header(path: Path) -> Header:
    """Size, frame count and mean frame rate of a video (its timeline, one frame decoded for the size
    as displayed) or of a PNG folder (its first image's header, its file count). Raises what the readers
    raise (`read_video`, `read_png_folder`); an image PIL cannot open, or refuses as a decompression bomb,
    is a ValueError naming the image."""
    if path.is_dir():
        files = png_files(path)
        try:
            with Image.open(files[0]) as image:
                return Header(image.size, len(files), None)
        except (OSError, Image.DecompressionBombError) as exc:
            raise ValueError(f"{files[0]}: {exc}") from exc
    video = VideoFile(path)
    return Header(video.size, len(video), video.fps, video)


def read_video(source: Path | VideoFile) -> DecodedFrames:
    """Every frame of a video file (or of one already opened, `read_header`'s) as upright RGB, with its
    codec and pixel format. Raises `pipeline.video_file.DecodeError` (a ValueError naming the file) when
    the file cannot be decoded."""
    video = source if isinstance(source, VideoFile) else VideoFile(source)
    width, height = video.size
    whole = (0, 0, width, height)
    frames = [video.convert(frame, whole, width, height) for _, frame in video.decode(range(len(video)))]
    lossless = video.codec in LOSSLESS_CODECS and exact_in_rgb(video.pixel_format)
    return DecodedFrames(np.stack(frames), f"{video.codec} {video.pixel_format}", lossless)


def natural_key(path: Path) -> list[object]:
    """Sort key that puts frame_2.png before frame_10.png, so unpadded frame numbers keep their order."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def png_files(folder: Path) -> list[Path]:
    """A frame folder's PNG files in frame-number order (hidden files ignored). Raises ValueError naming
    the file when the folder holds anything else, or no frame."""
    files = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=natural_key)
    others = [p.name for p in files if p.suffix.lower() != ".png" or not p.is_file()]
    if others:
        raise ValueError(f"{folder / others[0]}: a frame folder holds PNG frames only (lossless)")
    if not files:
        raise ValueError(f"{folder}: no frames")
    return files


def read_png_folder(folder: Path) -> DecodedFrames:
    """A folder of PNG frames in frame-number order (`png_files`). Raises ValueError naming the file when
    the folder holds anything else or no frame, FrameSizeError when the sizes differ."""
    files = png_files(folder)
    frames = []
    for path in files:
        with Image.open(path) as image:
            if image.format != "PNG":
                raise ValueError(f"{path}: a {image.format} image, not a PNG")
            frame = np.asarray(image.convert("RGB"))
        if frames and frame.shape != frames[0].shape:
            height, width = frames[0].shape[:2]
            raise FrameSizeError(f"{path}: {frame.shape[1]}x{frame.shape[0]}, the first frame is {width}x{height}")
        frames.append(frame)
    return DecodedFrames(np.stack(frames), "png frames", True)
