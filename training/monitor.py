"""What rank 0 reports: TensorBoard scalars, images and videos, and a console progress line with ETA.

Videos are TensorBoard image summaries holding an animated GIF (what `SummaryWriter.add_video` writes),
encoded with PIL so that no video library (moviepy) is needed. The console line is printed every
logging step rather than redrawn in place, so it reads the same in a terminal and in a cluster log.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import summary
from torch.utils.tensorboard.writer import FileWriter

BAR_WIDTH = 24


def gif_bytes(frames: np.ndarray, fps: float) -> bytes:
    """uint8 [L, H, W, 3] -> an endlessly looping animated GIF."""
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return buffer.getvalue()


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


@dataclass
class Window:
    """Sums over the steps since the last log line (the loss is summed on the device: `training.loss_tally`)."""

    steps: int = 0
    samples: int = 0
    data_seconds: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def add(self, samples: int, data_seconds: float) -> None:
        self.steps += 1
        self.samples += samples
        self.data_seconds += data_seconds

    def rates(self) -> dict[str, float]:
        """Global samples/s and the fraction of time spent waiting for data."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "samples_per_second": self.samples / elapsed,
            "data_wait_fraction": self.data_seconds / elapsed,
        }


class Monitor:
    """TensorBoard events in `log_dir` and the progress line of one stage (rank 0 only)."""

    def __init__(self, log_dir: Path, stage: str, total_steps: int, start_step: int) -> None:
        self.writer = FileWriter(str(log_dir))
        self.stage = stage
        self.total = total_steps
        self.start_step = start_step
        self.started = time.monotonic()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self.writer.add_summary(summary.scalar(tag, value), step)
        self.writer.flush()

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """uint8 [H, W, 3]."""
        self.writer.add_summary(summary.image(tag, image, dataformats="HWC"), step)
        self.writer.flush()

    def video(self, tag: str, frames: np.ndarray, fps: float, step: int) -> None:
        """uint8 [L, H, W, 3], shown animated in TensorBoard's image tab."""
        height, width = frames.shape[1:3]
        image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif_bytes(frames, fps))
        self.writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
        self.writer.flush()

    def progress(self, step: int, values: dict[str, float]) -> str:
        """The console line: bar, step, loss, lr, throughput, data wait, elapsed and ETA."""
        done = step / self.total
        filled = round(BAR_WIDTH * done)
        elapsed = time.monotonic() - self.started
        per_step = elapsed / max(step - self.start_step, 1)
        line = (
            f"[{self.stage}] |{'#' * filled}{'.' * (BAR_WIDTH - filled)}| {step}/{self.total} ({done:.0%}) "
            f"loss {values['loss']:.4f} lr {values['lr']:.2e} {values['samples_per_second']:.2f} samples/s "
            f"data {values['data_wait_fraction']:.0%} elapsed {format_duration(elapsed)} "
            f"ETA {format_duration(per_step * (self.total - step))}"
        )
        print(line, flush=True)
        return line

    def close(self) -> None:
        self.writer.close()
