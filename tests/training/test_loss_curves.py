"""The loss-curve PNG of a run (`training.loss_curves`), read back from real TensorBoard event files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from training.loss_curves import LOSS_TAG, plot_loss_curves, running_mean


def write_stage(folder: Path, losses: list[float], tag: str = LOSS_TAG) -> None:
    writer = SummaryWriter(str(folder))
    for step, loss in enumerate(losses, start=1):
        writer.add_scalar(tag, loss, step)
    writer.close()


def test_both_stages_are_drawn_and_summarised(tmp_path: Path) -> None:
    write_stage(tmp_path / "tensorboard" / "stage1", list(np.linspace(1.0, 0.1, 50)))
    write_stage(tmp_path / "tensorboard" / "stage2", list(np.linspace(0.3, 0.2, 20)))
    out = tmp_path / "curves.png"
    summary = plot_loss_curves(tmp_path / "tensorboard", out, title="test")
    assert list(summary) == ["stage1", "stage2"]
    first, last = summary["stage1"]
    assert first == pytest.approx(np.mean(np.linspace(1.0, 0.1, 50)[:5]), rel=1e-5) and last < 0.15
    assert summary["stage2"][0] > summary["stage2"][1]
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 2 * image.height


def test_a_stage_without_a_logged_loss_is_named(tmp_path: Path) -> None:
    write_stage(tmp_path / "tensorboard" / "stage1", [1.0, 0.5])
    write_stage(tmp_path / "tensorboard" / "stage2", [1.0], tag="train/lr")
    with pytest.raises(ValueError, match="stage2"):
        plot_loss_curves(tmp_path / "tensorboard", tmp_path / "curves.png", title="test")
    with pytest.raises(FileNotFoundError, match="was the run trained"):
        plot_loss_curves(tmp_path / "missing", tmp_path / "curves.png", title="test")


def test_the_running_mean_trails_over_its_window() -> None:
    assert running_mean([1.0, 3.0, 5.0, 7.0], 2) == pytest.approx([1.0, 2.0, 4.0, 6.0])
