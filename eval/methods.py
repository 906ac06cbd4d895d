"""Where generated videos come from: our checkpoint, a baseline, or another method's outputs folder.

Every method gets the same inputs (the source frame and the driving frames at the evaluation crop) and
must return (T, S, S, 3) uint8 frames, T the driving length and S the evaluation size. A task that
cannot be scored raises `TaskFailed` with a reason code; the run records it for that task and goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from eval.tasks import Task
from model.animate import Animator, SamplingOptions, resize_square
from pipeline.decode import video_reader

REASONS = {
    "missing_output": "the outputs folder has no video for this task",
    "unreadable_output": "the video cannot be decoded",
    "wrong_resolution": "the video is not square at the evaluation size",
    "wrong_length": "the video has another number of frames than the driving clip",
    "clip_unusable": "the split clip could not be read or shows no face (see detail)",
    "generation_failed": "the method raised an error while generating",
}


class TaskFailed(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class Method(Protocol):
    name: str
    motion_mode: str  # absolute | relative | none | unknown: APD against the driver assumes absolute
    description: str

    def generate(self, source: np.ndarray, driving: np.ndarray, fps: float | None = None) -> np.ndarray:
        """`fps`: the driving clip's frame rate, for methods conditioned on it (frame-wise ones ignore it)."""
        ...


class Ours:
    """Our checkpoint through `model.animate` (the code `rp-animate` runs), resized to the evaluation size."""

    motion_mode = "absolute"

    def __init__(self, animator: Animator, options: SamplingOptions, name: str = "ours"):
        self.animator, self.options, self.name = animator, options, name
        self.description = (
            f"RealPortrait checkpoint, {options.num_steps} DDIM steps, native {animator.size}px, {animator.precision}"
        )

    def generate(self, source: np.ndarray, driving: np.ndarray, fps: float | None = None) -> np.ndarray:
        """`fps` is the driving clip's frame rate, the model's fps condition (None: the model's default)."""
        generated = self.animator.generate(source, driving, self.options, fps=fps)
        return resize_square(generated, source.shape[0])


class OutputsFolder:
    """Another method's videos, one mp4 per task at `<folder>/<protocol>/<task file>.mp4` (see `eval.tasks`).

    They must be square at the evaluation size, unless `resize` is set: then any square video is brought
    to the evaluation size with the crops' own resize rule (recorded in the run). A video longer than the
    driving clip is accepted only when the run evaluates a prefix (`max_frames`), and cut to it.
    """

    def __init__(
        self, folder: Path, name: str, *, motion_mode: str = "unknown", resize: bool = False, allow_longer: bool = False
    ):
        self.folder, self.name, self.motion_mode = Path(folder), name, motion_mode
        self.resize, self.allow_longer = resize, allow_longer
        self.description = f"videos read from {self.folder}"

    def read(self, task: Task, size: int, length: int) -> np.ndarray:
        path = self.folder / task.relative_path
        if not path.is_file():
            raise TaskFailed("missing_output", f"{path} does not exist")
        try:
            reader = video_reader(path)
            frames = reader.get_batch(list(range(len(reader)))).asnumpy()
        except Exception as exc:  # DecodeError, or decord's own error types with FFmpeg's words
            raise TaskFailed("unreadable_output", f"{path}: {exc}") from exc
        if len(frames) == 0:
            raise TaskFailed("unreadable_output", f"{path}: no frames")
        height, width = frames.shape[1:3]
        if height != width or (height != size and not self.resize):
            raise TaskFailed("wrong_resolution", f"{path}: {width}x{height}, expected {size}x{size}")
        if len(frames) != length and not (self.allow_longer and len(frames) > length):
            raise TaskFailed("wrong_length", f"{path}: {len(frames)} frames, the driving clip has {length}")
        frames = frames[:length]
        return resize_square(frames, size) if height != size else frames
