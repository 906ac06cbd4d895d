"""Per-protocol aggregates over a given set of tasks, from what a run folder keeps: one code path for a
run's own summary (its successful tasks) and for a table (the tasks that succeeded for every row).

Why: means taken over whichever tasks succeeded are not comparable between methods, and neither are FID
or FVD against real sets that differ. So a run keeps, beside `tasks.parquet`, the features of every
scored task (`features/<protocol>/<task id>.npz`: Inception features of the generated frames and, in
self-reenactment, of the ground truth; I3D features of every FVD window any configured seed draws, with
the window starts) and of every usable split clip (`features/clips/<clip file stem>.npz`, cross FID's
real set). Features are float32, as the networks return them, and read with `allow_pickle=False`.
A table recomputes every cell from these over its common task set, with the real sets taken from one
run folder for every row.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eval.columns import COLUMNS
from eval.config import FVDConfig
from eval.metrics.frechet import Moments, frechet, frechet_between
from eval.metrics.fvd import window_starts
from eval.tasks import file_stem

# run folders with tasks.parquet and features/ (tables need both); 3: FVD windows over whole videos, each
# video's AED anchored on its own frame 0, tasks appended to tasks.jsonl as they finish
RUN_FORMAT = "realportrait-eval-run/3"
# the tasks.parquet column of the frames FVD's windows are drawn from: the whole video, frame 0 included
# (a 16-frame self-reenactment clip holds no 16-frame window without it; `eval.run.task_features`)
FVD_FRAMES = "fvd_frames"
FEATURES = "features"


def task_features_path(run: Path, protocol: str, task_id: str) -> Path:
    return Path(run) / FEATURES / protocol / f"{task_id}.npz"


def clip_features_path(run: Path, item_id: str) -> Path:
    return Path(run) / FEATURES / "clips" / f"{file_stem(item_id)}.npz"


def save_features(path: Path, **arrays: np.ndarray) -> None:
    """Write the arrays atomically (a crash leaves the previous file or none, never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".npz", delete=False) as tmp:
        np.savez(tmp, **arrays)
    os.replace(tmp.name, path)


def load_features(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a features file (numeric only: pickled objects are refused)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the features file is missing (the run folder is incomplete)")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def fid(real: Iterable[np.ndarray], fake: Iterable[np.ndarray]) -> float:
    """FID between two streams of (N, 2048) feature blocks."""
    moments = []
    for blocks in (real, fake):
        accumulated = Moments()
        for block in blocks:
            accumulated.add(block)
        moments.append(accumulated)
    return frechet(*moments)


def fid_values(
    fake_run: Path, real_run: Path, protocol: str, task_ids: list[str], clip_ids: list[str]
) -> tuple[float, int]:
    """(FID, real frames): generated frames of `task_ids` from `fake_run`; the real set from `real_run`:
    the ground truth of the same tasks (self) or every frame of the clips `clip_ids` (cross)."""
    fake = (load_features(task_features_path(fake_run, protocol, t))["inception_fake"] for t in task_ids)
    if protocol == "self":
        real_blocks = [task_features_path(real_run, protocol, t) for t in task_ids]
        key = "inception_real"
    else:
        real_blocks = [clip_features_path(real_run, c) for c in clip_ids]
        key = "inception"
    counted = [0]

    def real() -> Iterable[np.ndarray]:
        for path in real_blocks:
            block = load_features(path)[key]
            counted[0] += len(block)
            yield block

    return fid(real(), fake), counted[0]


def fvd_values(
    fake_run: Path, real_run: Path, protocol: str, tasks: list[tuple[str, int]], fvd: FVDConfig
) -> list[float]:
    """One FVD per seed over the same windows of generated (`fake_run`) and real (`real_run`) videos;
    `tasks` holds (task id, frames FVD reads: `FVD_FRAMES`). Raises KeyError when a window is missing from
    a file (the runs were made with other FVD settings)."""
    fake_windows: dict[str, dict[int, np.ndarray]] = {}
    real_windows: dict[str, dict[int, np.ndarray]] = {}
    for task_id, _ in tasks:
        for run, key, store in ((fake_run, "i3d_fake", fake_windows), (real_run, "i3d_real", real_windows)):
            arrays = load_features(task_features_path(run, protocol, task_id))
            store[task_id] = dict(zip(arrays["i3d_starts"].tolist(), arrays[key], strict=True))
    values = []
    for seed in fvd.seeds:
        fake, real = [], []
        for task_id, length in tasks:
            for start in window_starts(task_id, length, fvd.clip_length, fvd.windows_per_video, seed):
                fake.append(fake_windows[task_id][start])
                real.append(real_windows[task_id][start])
        if len(fake) >= 2:
            values.append(frechet_between(np.stack(real), np.stack(fake)))
    return values


def fvd_starts(task_id: str, length: int, fvd: FVDConfig) -> list[int]:
    """Every window start any configured seed draws for a task (features are taken once per window)."""
    return sorted(
        {s for seed in fvd.seeds for s in window_starts(task_id, length, fvd.clip_length, fvd.windows_per_video, seed)}
    )


def task_mean(tasks: pd.DataFrame, metric: str) -> tuple[float, float, int]:
    """(mean, std, tasks with a finite value) of a per-task metric; NaN mean when no task has one."""
    if metric not in tasks.columns:
        return float("nan"), float("nan"), 0
    values = pd.to_numeric(tasks[metric], errors="coerce").to_numpy(np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), 0
    return float(values.mean()), float(values.std()), len(values)


def without_face(metric: str, tasks: pd.DataFrame) -> int:
    """Scored frames a face metric skipped because a face was missing (eval.md §3, §6.6); 0 for others."""
    column = COLUMNS[metric].without_face
    if column is None or column not in tasks.columns:
        return 0
    return int(pd.to_numeric(tasks[column], errors="coerce").fillna(0).sum())


def succeeded(tasks: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The rows of `protocol` whose status is ok, indexed by task id."""
    rows = tasks[(tasks["protocol"] == protocol) & (tasks["status"] == "ok")]
    return rows.set_index("task_id", drop=False)


def common_tasks(runs: list[tuple[str, pd.DataFrame]], protocol: str) -> tuple[list[str], dict[str, list[str]]]:
    """The tasks of `protocol` that succeeded for every (label, tasks) run, in the first run's order, and
    for each task left out the reason per row that lacks it ("<label>: <reason>")."""
    if not runs:
        return [], {}
    every: dict[str, None] = {}
    for _, tasks in runs:
        every.update(dict.fromkeys(tasks.loc[tasks["protocol"] == protocol, "task_id"]))
    kept, dropped = [], {}
    for task_id in every:
        reasons = []
        for label, tasks in runs:
            row = tasks[(tasks["protocol"] == protocol) & (tasks["task_id"] == task_id)]
            if row.empty:
                reasons.append(f"{label}: not run")
            elif row.iloc[0]["status"] != "ok":
                detail = row.iloc[0].get("reason")
                reasons.append(f"{label}: {detail or row.iloc[0]['status']}")
        if reasons:
            dropped[task_id] = reasons
        else:
            kept.append(task_id)
    return kept, dropped


@dataclass(frozen=True)
class Aggregate:
    """One metric of one protocol over one task set."""

    value: float
    std: float
    tasks: int  # tasks the value is taken over (for a face metric: those with a face)
    status: str  # ok | no face found | no tasks | windows differ
    note: str = ""


def aggregate(
    metric: str,
    protocol: str,
    tasks: pd.DataFrame,
    run: Path,
    reference: Path,
    fvd: FVDConfig,
    clip_ids: list[str],
) -> Aggregate:
    """`metric` over the successful task rows `tasks` of `run`; FID and FVD against the real sets kept in
    `reference` (the run itself for its summary, one run for every row of a table)."""
    nan = float("nan")
    if tasks.empty:
        return Aggregate(nan, nan, 0, "no tasks", "no task of this protocol could be scored")
    ids = [str(t) for t in tasks["task_id"]]
    if metric == "FID":
        try:
            value, real_frames = fid_values(run, reference, protocol, ids, clip_ids)
        except ValueError as exc:
            return Aggregate(nan, nan, len(ids), "no tasks", f"FID: {exc}")
        real = (
            f"the ground truth of these {len(ids)} tasks"
            if protocol == "self"
            else f"every frame of {len(clip_ids)} split clips"
        )
        return Aggregate(value, nan, len(ids), "ok", f"real set: {real} ({real_frames} frames)")
    if metric == "FVD":
        lengths = [int(n) for n in tasks[FVD_FRAMES]]
        try:
            values = fvd_values(run, reference, protocol, list(zip(ids, lengths, strict=True)), fvd)
        except KeyError as exc:
            return Aggregate(nan, nan, len(ids), "windows differ", f"FVD window {exc} is missing: other FVD settings")
        if not values:
            shortest = min(lengths)
            why = f"no video holds a {fvd.clip_length}-frame window (the shortest has {shortest} frames)"
            return Aggregate(nan, nan, len(ids), "too short", why)
        note = (
            f"{fvd.clip_length}-frame windows, {fvd.windows_per_video} per video, seeds {list(fvd.seeds)}; "
            f"real: {'ground truth' if protocol == 'self' else 'driving clips'} of these {len(ids)} tasks"
        )
        return Aggregate(float(np.mean(values)), float(np.std(values)), len(ids), "ok", note)
    value, std, count = task_mean(tasks, metric)
    if count:
        return Aggregate(value, std, count, "ok")
    if COLUMNS[metric].without_face is not None:
        return Aggregate(nan, nan, 0, "no face found", "no scored frame pair showed a face in both frames")
    return Aggregate(nan, nan, 0, "no tasks", "no task gave a finite value")
