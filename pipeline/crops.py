"""Face detection and square crops for readers outside the build (driving videos, evaluation clips).

The build streams its media (see pipeline.process); these are for readers that must crop exactly as the
build does: the same detection size, the same one-square-per-clip framing (`stable_crop` with the build's
`crop_scale`) and the same resampling. `read_driving` is the whole preparation of a driving video file for
the model (`rp-animate`): it reads through the build's video module (`pipeline.decode.open_video`), so the
frames are upright, in the colours the file means, and taken by presentation time, and what the model
reads at inference is framed as what it was trained on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import BuildConfig
from pipeline.decode import DecodeError, open_video
from pipeline.faces import Face, FaceDetector, prominent
from pipeline.tracking import stable_crop
from pipeline.video_file import shrunk_size

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) pixels

BUILD = BuildConfig()  # the build's defaults: the framing the released models are trained on


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


def resize_square(frames: np.ndarray, size: int) -> np.ndarray:
    """Square frames (T, S, S, 3) to (T, size, size, 3) with the same rule as the crops (no copy at `size`)."""
    if frames.shape[1:3] == (size, size):
        return frames
    return crop_resize(frames, (0, 0, frames.shape[2], frames.shape[1]), size)


def largest_face_box(
    detector: FaceDetector, image: np.ndarray, max_side: int = BUILD.detect_max_side
) -> tuple[float, float, float, float] | None:
    """The box of the largest prominent face in an RGB frame, detected as the build does, or None."""
    faces = prominent(detect_shrunk(detector, image, max_side))
    if not faces:
        return None
    return max(faces, key=lambda face: face.area).box


def sampled_indices(length: int, every: int = BUILD.detect_every) -> list[int]:
    """The frames the detector runs on, as the build samples a clip: every `every`-th and the last."""
    return sorted({*range(0, length, every), length - 1})


def even_square(box: Box, width: int, height: int) -> Box:
    """A square with even corner and side, inside width x height.

    4:2:0 chroma covers 2x2 pixels: an even square is cut from the decoder's planes without a half-pixel
    shift, and stays square (the video module widens an odd edge to the next even pixel).
    """
    x0, y0, x1, _ = box
    side = min(x1 - x0 + (x1 - x0) % 2, width - width % 2, height - height % 2)
    x0 = min(x0 - x0 % 2, (width - side) - (width - side) % 2)
    y0 = min(y0 - y0 % 2, (height - side) - (height - side) % 2)
    return x0, y0, x0 + side, y0 + side


def fit_crop_box(
    boxes: list[tuple[float, float, float, float] | None], width: int, height: int, crop_scale: float = BUILD.crop_scale
) -> tuple[Box, int]:
    """(one fixed even square holding every detected box (`stable_crop`), sampled frames that showed no face).

    Raises NoFaceError when no sampled frame shows a face.
    """
    found = [box for box in boxes if box is not None]
    if not found:
        raise NoFaceError(f"no face was found in any of the {len(boxes)} sampled driving frames")
    return even_square(stable_crop(np.array(found), crop_scale, width, height), width, height), len(boxes) - len(found)


def driving_crop_box(
    frames: np.ndarray,
    detector: FaceDetector,
    *,
    every: int = BUILD.detect_every,
    crop_scale: float = BUILD.crop_scale,
    max_side: int = BUILD.detect_max_side,
) -> tuple[Box, int]:
    """The build's square for frames (T, H, W, 3) in memory: detections on `sampled_indices`, `fit_crop_box`."""
    boxes = [largest_face_box(detector, frames[index], max_side) for index in sampled_indices(len(frames), every)]
    return fit_crop_box(boxes, frames.shape[2], frames.shape[1], crop_scale)


@dataclass(frozen=True)
class DrivingCrops:
    """A driving video prepared for the model: its face crops, where they were cut, and its frame rate."""

    frames: np.ndarray  # (T, size, size, 3) uint8, frame j showing the video at time j / fps
    box: Box  # in the video's pixels as displayed
    sampled_without_face: int  # frames the detector ran on that showed no face (the square holds the others)
    fps: float  # the video's mean rate


def read_driving(path: Path, detector: FaceDetector, size: int, max_frames: int | None = None) -> DrivingCrops:
    """A driving video file -> the square face crops at `size` the motion encoder reads, and its fps.

    Frames are upright and taken at evenly spaced times at the video's mean rate (`open_video`), so a
    variable-rate video drives the model with its true timing and the animation lasts as long as the video.
    One fixed square per video, found as the build finds a clip's (detection at the build's size on
    `sampled_indices`, `fit_crop_box`), cut at `size` from the decoder's planes as the build cuts its crops.
    The video is decoded twice (detection, then crops) and no full-size frame outlives its conversion, so
    memory holds the crops, not the video. `max_frames` keeps the first N frames. Raises DecodeError,
    NoFaceError.
    """
    stream = open_video(Path(path))
    if max_frames is not None:
        kept = slice(0, max_frames)
        stream = dataclasses.replace(
            stream, source_index=stream.source_index[kept], source_time=stream.source_time[kept]
        )
    length = len(stream)
    if length == 0:
        raise DecodeError(f"{path}: the video holds no frames")
    x0, y0, x1, y1 = stream.region
    width, height = x1 - x0, y1 - y0
    small_w, small_h = shrunk_size(width, height, BUILD.detect_max_side)
    scale = np.array([width / small_w, height / small_h] * 2)
    sampled = set(sampled_indices(length))
    boxes = []
    for index, picture in enumerate(stream.pictures()):
        if index in sampled:
            found = largest_face_box(detector, picture.at(small_w, small_h))
            boxes.append(None if found is None else tuple(np.array(found) * scale))
    box, missed = fit_crop_box(boxes, width, height)
    crops = np.empty((length, size, size, 3), np.uint8)
    for index, crop in enumerate(stream.crops(range(length), box, size)):
        crops[index] = crop
    media_box = (box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0)
    return DrivingCrops(crops, media_box, missed, stream.fps)
