"""TensorBoard output (scalars, frame grids, animated videos) and the console progress line."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from trainkit import images, scalars

from training.monitor import Monitor, format_duration, gif_bytes


def test_a_video_is_an_animated_gif_of_every_frame() -> None:
    frames = np.zeros((5, 16, 24, 3), dtype=np.uint8)
    for index in range(5):
        frames[index, :, index * 4 : index * 4 + 4] = 255
    gif = Image.open(io.BytesIO(gif_bytes(frames, fps=25)))
    assert gif.n_frames == 5 and gif.size == (24, 16) and gif.info["duration"] == 40
    for index in range(5):
        gif.seek(index)
        assert np.array_equal(np.asarray(gif.convert("RGB")), frames[index])


def test_events_read_back_with_tensorboard(tmp_path: Path) -> None:
    monitor = Monitor(tmp_path, "stage1", total_steps=10, start_step=0)
    monitor.scalars(3, {"train/loss": 0.5, "train/lr": 1e-4})
    grid = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    monitor.image("val/grid", grid, 3)
    monitor.video("val/clip0", np.stack([np.roll(grid, shift, axis=1) for shift in range(4)]), fps=12.5, step=3)
    monitor.close()
    assert scalars(tmp_path, "train/loss") == {3: 0.5} and scalars(tmp_path, "train/lr") == {3: pytest.approx(1e-4)}
    (png,) = images(tmp_path, "val/grid")
    assert np.array_equal(np.asarray(Image.open(png)), grid)
    (video,) = images(tmp_path, "val/clip0")
    assert Image.open(video).n_frames == 4


def test_the_progress_line_has_a_bar_the_numbers_and_an_eta(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    monitor = Monitor(tmp_path, "stage2", total_steps=200, start_step=100)
    monitor.started -= 50  # 50 s for the 50 steps since the resume: 1 s per step
    values = {"loss": 0.1234, "lr": 2e-5, "samples_per_second": 3.5, "data_wait_fraction": 0.04}
    line = monitor.progress(150, values)
    monitor.close()
    assert capsys.readouterr().out.strip() == line
    assert line.startswith("[stage2] |" + "#" * 18 + "." * 6 + "| 150/200 (75%)")
    assert "loss 0.1234" in line and "lr 2.00e-05" in line and "3.50 samples/s" in line and "data 4%" in line
    assert line.endswith("ETA 0:00:50")
    assert format_duration(3 * 3600 + 62.4) == "3:01:02"
