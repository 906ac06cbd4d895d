"""Face detection and square crops for readers outside the build (driving videos, evaluation clips).

The build streams its media (see pipeline.process); these are for readers that must crop exactly as the
build does: the same detection size, the same one-square-per-clip
framing (`stable_crop` with the build's `crop_scale`) and the same resampling. `read_driving` is the
whole preparation of a driving video file for the model (`rp-animate`, `rp-eval --method ours`): what the
model reads at inference is then framed as what it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import BuildConfig
from pipeline.decode import DecodeError, video_reader
from pipeline.faces import Face, FaceDetector, prominent
from pipeline.tracking import stable_crop

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels

BUILD = BuildConfig()  # the build's defaults: the framing the released models are trained on
DECODE_BATCH = 32  # full-size frames decoded at a time when preparing a driving video
FrameBatches = Callable[[Sequence[int]], np.ndarray]  # frame indices -> those frames, (n, H, W, 3) uint8 RGB


class NoFaceError(ValueError):
    """No face was found where one is needed (a source image, or every sampled driving frame)."""


def unscaled(face: Face, scale_x: float, scale_y: float) -> Face:
    """A detection on a shrunk frame, in the full-size frame's pixels."""
    x0, y0, x1, y1 = face.box
    box = (x0 / scale_x, y0 / scale_y, x1 / scale_x, y1 / scale_y)
    points = None if face.keypoints is None else face.keypoints / np.array([scale_x, scale_y])
    return Face(box, face.score, points)


def detect_shrunk(detector: FaceDetector, frame: np.ndarray, max_side: int) -> list[Face]:
    """Faces of a frame shrunk to fit max_side (as the build detects), in the frame's own pixels."""
    scale = min(1.0, max_side / max(frame.shape[:2]))
    if scale == 1.0:
        return detector.detect(frame)
    small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return [unscaled(face, scale, scale) for face in detector.detect(small)]


def crop_resize(frames: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """(T, size, size, 3): area resampling when shrinking, cubic when enlarging, as the build's crops."""
    x0, y0, x1, y1 = box
    method = cv2.INTER_AREA if x1 - x0 > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f[y0:y1, x0:x1], (size, size), interpolation=method) for f in frames])


def largest_face_box(
    detector: FaceDetector, image: np.ndarray, max_side: int = BUILD.detect_max_side
) -> tuple[float, float, float, float] | None:
    """The box of the largest prominent face in an RGB frame, detected as the build does, or None."""
    faces = prominent(detect_shrunk(detector, image, max_side))
    if not faces:
        return None
    return max(faces, key=lambda face: face.area).box


def sampled_face_boxes(
    read: FrameBatches,
    length: int,
    detector: FaceDetector,
    *,
    every: int = BUILD.detect_every,
    max_side: int = BUILD.detect_max_side,
) -> list[tuple[float, float, float, float] | None]:
    """The largest face's box (or None) on every `every`-th frame and the last, as the build samples a clip.

    Frames are read `DECODE_BATCH` at a time, so a long full-size video is never held whole.
    """
    indices = sorted({*range(0, length, every), length - 1})
    boxes = []
    for first in range(0, len(indices), DECODE_BATCH):
        boxes += [largest_face_box(detector, frame, max_side) for frame in read(indices[first : first + DECODE_BATCH])]
    return boxes


def fit_crop_box(
    boxes: list[tuple[float, float, float, float] | None], width: int, height: int, crop_scale: float = BUILD.crop_scale
) -> tuple[Box, int]:
    """(one fixed square holding every detected box (`stable_crop`), sampled frames that showed no face).

    Raises NoFaceError when no sampled frame shows a face.
    """
    found = [box for box in boxes if box is not None]
    if not found:
        raise NoFaceError(f"no face was found in any of the {len(boxes)} sampled driving frames")
    return stable_crop(np.array(found), crop_scale, width, height), len(boxes) - len(found)


def driving_crop_box(
    frames: np.ndarray,
    detector: FaceDetector,
    *,
    every: int = BUILD.detect_every,
    crop_scale: float = BUILD.crop_scale,
    max_side: int = BUILD.detect_max_side,
) -> tuple[Box, int]:
    """The build's square for frames (T, H, W, 3) in memory: see `sampled_face_boxes` and `fit_crop_box`."""
    boxes = sampled_face_boxes(
        lambda indices: frames[list(indices)], len(frames), detector, every=every, max_side=max_side
    )
    return fit_crop_box(boxes, frames.shape[2], frames.shape[1], crop_scale)


@dataclass(frozen=True)
class DrivingCrops:
    """A driving video prepared for the model: its face crops, where they were cut, and its frame rate."""

    frames: np.ndarray  # (T, size, size, 3) uint8
    box: Box  # in the video's pixels
    sampled_without_face: int  # frames the detector ran on that showed no face (the square holds the others)
    fps: float


def read_driving(path: Path, detector: FaceDetector, size: int, max_frames: int | None = None) -> DrivingCrops:
    """A driving video file -> the square face crops at `size` the motion encoder reads, and its fps.

    One fixed square per video, found as the build finds a clip's (`sampled_face_boxes`, `fit_crop_box`),
    cut and resized with the build's rule (`crop_resize`). The video is decoded twice, `DECODE_BATCH`
    frames at a time (detection, then crops), so memory holds the crops, not the full-size video (1000
    frames of 1080p would be 6 GB). `max_frames` keeps the first N frames. Raises DecodeError, NoFaceError.
    """
    reader = video_reader(path)
    length = len(reader) if max_frames is None else min(len(reader), max_frames)
    if length == 0:
        raise DecodeError(f"{path}: the video holds no frames")

    def read(indices: Sequence[int]) -> np.ndarray:
        try:
            return reader.get_batch(list(indices)).asnumpy()
        except Exception as exc:  # decord raises its own error types with FFmpeg's words
            raise DecodeError(f"{path}: decoding failed: {str(exc).splitlines()[0][:200]}") from exc

    height, width = read([0]).shape[1:3]
    box, missed = fit_crop_box(sampled_face_boxes(read, length, detector), width, height)
    crops = np.empty((length, size, size, 3), np.uint8)
    for first in range(0, length, DECODE_BATCH):
        last = min(first + DECODE_BATCH, length)
        crops[first:last] = crop_resize(read(range(first, last)), box, size)
    return DrivingCrops(crops, box, missed, float(reader.get_avg_fps()))
