"""The training loss of every stage of a run, read back from its TensorBoard logs and drawn as one PNG.

A researcher's first question of a run is whether both stages learned; one picture with a panel per
stage (the logged loss and its running mean, stage 2 starting where stage 1 handed over) answers it
without starting TensorBoard.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LOSS_TAG = "train/loss"


def logged_scalars(log_dir: Path, tag: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one scalar of a TensorBoard folder, in step order; empty when it was never logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return [], []
    scalars = sorted(events.Scalars(tag), key=lambda event: event.step)
    return [event.step for event in scalars], [event.value for event in scalars]


def stage_losses(tensorboard_dir: Path) -> dict[str, tuple[list[int], list[float]]]:
    """Each stage's (steps, losses), stages in name order (stage1, stage2); a stage without a loss is an error."""
    stages = sorted(path for path in tensorboard_dir.iterdir() if path.is_dir()) if tensorboard_dir.is_dir() else []
    if not stages:
        raise FileNotFoundError(f"{tensorboard_dir}: no stage folder of TensorBoard logs (was the run trained?)")
    losses = {path.name: logged_scalars(path, LOSS_TAG) for path in stages}
    empty = [name for name, (steps, _) in losses.items() if not steps]
    if empty:
        raise ValueError(f"{tensorboard_dir}: no {LOSS_TAG} logged for stage(s) {', '.join(empty)}")
    return losses


def running_mean(values: list[float], window: int) -> np.ndarray:
    """Trailing mean over up to `window` values: the trend through the noise of small batches."""
    cumulative = np.cumsum(np.insert(np.asarray(values, dtype=float), 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def plot_loss_curves(tensorboard_dir: Path, out: Path, title: str) -> dict[str, tuple[float, float]]:
    """Writes the PNG; returns each stage's (mean of its first tenth, mean of its last tenth) of the loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = stage_losses(tensorboard_dir)
    figure, axes = plt.subplots(1, len(losses), figsize=(5 * len(losses), 3.6), squeeze=False)
    summary: dict[str, tuple[float, float]] = {}
    for axis, (stage, (steps, values)) in zip(axes[0], losses.items(), strict=True):
        tenth = max(1, len(values) // 10)
        summary[stage] = (float(np.mean(values[:tenth])), float(np.mean(values[-tenth:])))
        axis.plot(steps, values, color="0.7", linewidth=0.8, label="logged")
        axis.plot(steps, running_mean(values, max(1, len(values) // 10)), color="C0", label="running mean")
        axis.set_title(f"{stage}: {summary[stage][0]:.3f} -> {summary[stage][1]:.3f}")
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("diffusion loss")
        axis.grid(alpha=0.3)
        axis.legend(loc="upper right", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return summary
