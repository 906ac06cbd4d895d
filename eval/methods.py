"""Where generated videos come from: our checkpoint, a baseline, or another method's outputs folder.

Every method gets the same inputs (the source frame and the driving frames at the evaluation crop) and
must return (T, S, S, 3) uint8 frames, T the driving length and S the evaluation size. A task that
cannot be scored raises `TaskFailed` with a reason code; the run records it for that task and goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import av
import numpy as np
from PIL import Image

from eval.frame_files import FrameSizeError, Header, read_header, read_png_folder, read_video
from eval.tasks import Task
from model.animate import Animator, SamplingOptions
from pipeline.crops import resize_square

REASONS = {
    "missing_output": "the outputs folder has no video for this task",
    "ambiguous_output": "the outputs folder has more than one file for this task (keep one)",
    "unreadable_output": "the video cannot be decoded",
    "wrong_resolution": "the video is not square at the evaluation size",
    "wrong_length": "the video has another number of frames than the driving clip",
    "wrong_frame_rate": "the video's frame rate is not the driving clip's",
    "clip_unusable": "the split clip could not be read or shows no face (see detail)",
    "generation_failed": "the method raised an error while generating",
    "internal_error": "an error the evaluation did not expect (its traceback is in run.json)",
}


# how far an output's mean frame rate may be from the driving clip's: Matroska's millisecond timestamps
# put 29.97 frames/s within 0.1 %; a video at another rate plays its motion at another speed
FPS_TOLERANCE = 0.01


class TaskFailed(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class Method(Protocol):
    name: str
    motion_mode: str  # absolute | relative | none | unknown: APD against the driver assumes absolute
    description: str
    control: bool  # a control bounds the measures (tables label it, never bold nor rank it)

    def generate(self, source: np.ndarray, driving: np.ndarray, fps: float | None = None) -> np.ndarray:
        """`fps`: the driving clip's frame rate, for methods conditioned on it (frame-wise ones ignore it)."""
        ...


class Ours:
    """Our checkpoint through `model.animate` (the code `rp-animate` runs), resized to the evaluation size."""

    motion_mode = "absolute"
    control = False

    def __init__(
        self, animator: Animator, options: SamplingOptions, name: str = "ours", warnings: list[str] | None = None
    ):
        self.animator, self.options, self.name = animator, options, name
        scale = "" if options.controlnet_scale == 1 else f", ControlNet scale {options.controlnet_scale:g}"
        self.description = (
            f"RealPortrait checkpoint, {options.num_steps} DDIM steps{scale}, native {animator.size}px, "
            f"{animator.precision}"
        )
        # what the run and the table footer must say about this checkpoint, e.g. that the evaluated split was not
        # held out of its training (training.heldout.checkpoint_warnings)
        self.warnings: list[str] = list(warnings or [])

    def generate(self, source: np.ndarray, driving: np.ndarray, fps: float | None = None) -> np.ndarray:
        """`fps` is the driving clip's frame rate, the model's fps condition (None: the model's default)."""
        generated = self.animator.generate(source, driving, self.options, fps=fps)
        return resize_square(generated, source.shape[0])


class OutputsFolder:
    """Another method's frames, read from `<folder>/<protocol>/<task id>` plus one of (see `eval.tasks` for
    the task ids and `eval.frame_files` for why lossless):

    - `.mkv`: FFV1 in an RGB pixel format (bgr0, gbrp), as `pipeline.encode.encode_ffv1` writes; lossless;
    - `/`: a folder of PNG frames, numbered in frame order (000000.png, 000001.png, ...); lossless;
    - `.mp4`: any video (H.264 yuv420p, say), accepted for compatibility. A file whose codec or pixel
      format loses information is scored all the same and counted in `warnings`, so the run and the
      tables say that this method's scores include compression loss the others do not have.

    Lossless or not is read from each file's codec and pixel format, never from its name. Frames must be
    square at the evaluation size, unless `resize` is set: then any square video is brought to the
    evaluation size with the crops' own resize rule (also counted in `warnings`). A video longer than the
    driving clip is accepted only when the run evaluates a prefix (`max_frames`), and cut to it.
    """

    SUFFIXES = (".mkv", "", ".mp4")  # "" is the PNG frame folder

    def __init__(
        self,
        folder: Path,
        name: str,
        *,
        motion_mode: str = "unknown",
        resize: bool = False,
        allow_longer: bool = False,
        control: bool = False,
    ):
        self.folder, self.name, self.motion_mode, self.control = Path(folder), name, motion_mode, control
        self.resize, self.allow_longer = resize, allow_longer
        self.description = f"frames read from {self.folder}"
        self.read_count = 0  # outputs decoded so far
        self.lossy: dict[str, str] = {}  # output path (relative to the folder) -> its encoding
        self.resized: dict[str, str] = {}  # output path -> its original size

    @staticmethod
    def lossless_path(task: Task) -> str:
        """The file `rp-eval inputs` asks other methods to write for `task` (relative to the outputs folder)."""
        return f"{task.protocol}/{task.task_id}.mkv"

    @property
    def warnings(self) -> list[str]:
        """Lines for the run's record and the table footer: what makes this method's scores differ from a
        lossless, native-size reading of its frames."""
        lines = []
        for counted, what in (
            (self.lossy, "were stored lossily; their scores include compression loss"),
            (self.resized, "were not at the evaluation size and were resized"),
        ):
            if counted:
                shown = ", ".join(f"{path} ({detail})" for path, detail in sorted(counted.items())[:3])
                more = f" and {len(counted) - 3} more" if len(counted) > 3 else ""
                lines.append(f"{len(counted)} of {self.read_count} outputs {what}: {shown}{more}")
        return lines

    def expected_files(self, task: Task) -> list[Path]:
        stem = self.folder / task.protocol / task.task_id
        return [Path(f"{stem}{suffix}") for suffix in self.SUFFIXES]

    def unexpected(self, tasks: list[Task]) -> list[str]:
        """Entries of `<protocol>/` folders that no task asks for (a misnamed output shows up here)."""
        expected = {path for task in tasks for path in self.expected_files(task)}
        found = [path for path in self.folder.glob("*/*") if not path.name.startswith(".")]
        return sorted(path.relative_to(self.folder).as_posix() for path in found if path not in expected)

    def find(self, task: Task) -> Path:
        present = [path for path in self.expected_files(task) if path.exists()]
        if not present:
            raise TaskFailed("missing_output", f"none of {', '.join(map(str, self.expected_files(task)))} exists")
        if len(present) > 1:
            raise TaskFailed("ambiguous_output", f"{' and '.join(map(str, present))} all exist: keep one")
        return present[0]

    def check_header(self, path: Path, size: int, length: int, fps: float | None) -> Header:
        """Size, length and frame rate from the file's header and timeline, before a frame is decoded: a
        wrong file costs a moment, not its decoding (and a huge one cannot take the run's memory). The
        decoders then give exactly the header's size and count (a PNG frame of another size is refused)."""
        with reading(path):
            header = read_header(path)
        width, height = header.size
        if height != width or (height != size and not self.resize):
            raise TaskFailed("wrong_resolution", f"{path}: {width}x{height}, expected {size}x{size}")
        if header.frames != length and not (self.allow_longer and header.frames > length):
            raise TaskFailed("wrong_length", f"{path}: {header.frames} frames, the driving clip has {length}")
        if fps and header.fps and abs(header.fps - fps) > FPS_TOLERANCE * fps:
            raise TaskFailed(
                "wrong_frame_rate", f"{path}: {header.fps:.3f} frames/s, the driving clip has {fps:.3f} frames/s"
            )
        return header

    def read(self, task: Task, size: int, length: int, fps: float | None = None) -> np.ndarray:
        """The task's frames at the evaluation size; `fps`, the driving clip's rate, is checked against a
        video's (a PNG folder has none)."""
        path = self.find(task)
        header = self.check_header(path, size, length, fps)
        with reading(path):
            decoded = read_png_folder(path) if header.video is None else read_video(header.video)
        frames = decoded.frames
        width, height = header.size
        relative = path.relative_to(self.folder).as_posix()
        self.read_count += 1
        if not decoded.lossless:
            self.lossy[relative] = decoded.encoding
        if height != size:
            self.resized[relative] = f"{width}x{height}"
        frames = frames[:length]
        return resize_square(frames, size) if height != size else frames


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """An output that cannot be read fails its task with the reason, naming the file."""
    try:
        yield
    except FrameSizeError as exc:  # names the frame file
        raise TaskFailed("wrong_resolution", str(exc)) from exc
    except (av.FFmpegError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TaskFailed("unreadable_output", named(path, exc)) from exc


def named(path: Path, exc: BaseException) -> str:
    """The error's message, with the output's path when the reader did not name it."""
    text = str(exc)
    return text if str(path) in text else f"{path}: {text}"
