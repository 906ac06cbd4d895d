"""`rp-eval run`: one method over a split's self- and cross-reenactment tasks, results to parquet.

Per task (one clip, or one cross pair): per-frame metrics -> the task's mean; per protocol: the mean and
std over tasks (eval.md §3), FID over every scored frame pooled, FVD over pinned windows for each seed.
A task that cannot be scored (missing or malformed output, unusable clip) is a row with its reason, and
nothing else is lost. Written to the run folder:
- `tasks.parquet`: one row per task: status, reason, frames, scored frames, each per-task metric, faces
  not found per metric, the evaluation crop;
- `summary.parquet`: one row per protocol and metric: value, std, tasks, frames, unit, direction, backend,
  status (`ok` | `weights missing` | `no face found` | `no tasks`);
- `run.json`: the method, the protocol config and its fingerprint, the split file's sha256, the weight
  files with their sha256, every backend, the frame-0 policy, task failures by reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pandas as pd

from eval.clips import EvalClip, load_clip
from eval.columns import COLUMNS
from eval.config import EvalConfig, Protocol
from eval.methods import Method, OutputsFolder, TaskFailed
from eval.metrics import pixel
from eval.metrics.fid import InceptionFeatures
from eval.metrics.frechet import frechet_between
from eval.metrics.fvd import I3DFeatures, window_starts
from eval.metrics.identity import ArcfaceIdentity, DlibIdentity, cosine
from eval.scorers import Scorers
from eval.tasks import Task
from model.animate import NoFaceError
from pipeline.decode import DecodeError
from pipeline.faces import FaceDetector
from pipeline.split import Split

FACE_METRICS = ("CSIM-dlib", "CSIM-arcface", "AED", "APD")  # need a face in the generated and the reference frame


def load_clips(
    split: Split, roots: dict[str, Path], config: EvalConfig, detector: FaceDetector, tick: Callable[[], None]
) -> tuple[dict[str, EvalClip], dict[str, str]]:
    """Every split clip at the evaluation crop, and the reason for each clip that could not be made."""
    clips, problems = {}, {}
    for clip in split.clips:
        try:
            if clip.dataset not in roots:
                raise FileNotFoundError(f"no root given for dataset {clip.dataset!r} (--root {clip.dataset}=DIR)")
            clips[clip.item_id] = load_clip(clip, roots[clip.dataset], config.size, detector, config.max_frames)
        except (NoFaceError, DecodeError, OSError, ValueError, av.FFmpegError) as exc:
            problems[clip.item_id] = f"{type(exc).__name__}: {exc}"
        tick()
    return clips, problems


def scored(protocol: Protocol, length: int, config: EvalConfig) -> slice:
    """Frames that count: in self-reenactment frame 0 is the source itself, skipped unless configured."""
    return slice(1 if protocol == "self" and not config.score_first_frame else 0, length)


@dataclass
class Pools:
    """What set-level metrics gather across tasks, per protocol."""

    fid_fake: list[np.ndarray] = field(default_factory=list)
    fid_real: list[np.ndarray] = field(default_factory=list)
    videos: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)  # (task id, generated, real)


def frame_metrics(
    scorers: Scorers, task: Task, generated: np.ndarray, reference: np.ndarray, source: np.ndarray
) -> dict[str, object]:
    """The per-task values of one scored task (`generated` and `reference` cut to the scored frames)."""
    row: dict[str, object] = {}
    if task.protocol == "self":
        for name, function in (
            ("L1", pixel.l1),
            ("PSNR", pixel.psnr),
            ("SSIM", pixel.ssim),
            ("PSNR-legacy-uint8", pixel.psnr_legacy_uint8),
        ):
            if scorers.active(name):
                row[name] = float(np.mean(function(generated, reference)))
        if scorers.active("LPIPS") and scorers.lpips is not None:
            row["LPIPS"] = float(np.mean(scorers.lpips.distances(generated, reference)))
    if scorers.active("tLP") and scorers.lpips is not None and len(generated) > 1:
        row["tLP"] = float(np.mean(scorers.lpips.tlp(generated, reference)))
    for name, network in (("CSIM-dlib", scorers.identity), ("CSIM-arcface", scorers.arcface)):
        if scorers.active(name) and network is not None:
            row.update(identity_similarity(network, scorers.config.identity_every, task, generated, reference, source))
    if scorers.face_motion is not None and (scorers.active("AED") or scorers.active("APD")):
        aed, apd = scorers.face_motion.distances(generated, reference)
        found = np.isfinite(aed) & np.isfinite(apd)
        row["face_motion_frames_without_face"] = int((~found).sum())
        for name, values in (("AED", aed), ("APD", apd)):
            if scorers.active(name):
                row[name] = float(np.mean(values[found])) if found.any() else float("nan")
    return row


def identity_similarity(
    network: DlibIdentity | ArcfaceIdentity,
    step: int,
    task: Task,
    generated: np.ndarray,
    reference: np.ndarray,
    source: np.ndarray,
) -> dict[str, object]:
    """CSIM: generated vs ground truth per frame (self), generated vs the source (cross), eval.md §6.6;
    every `step`-th scored frame; frames without a face (either side) are skipped and counted."""
    fakes = network.embed_all(generated[::step])
    reals = network.embed_all(reference[::step]) if task.protocol == "self" else [network.embed(source)] * len(fakes)
    values = [cosine(f, r) for f, r in zip(fakes, reals, strict=True) if f is not None and r is not None]
    return {
        network.name: float(np.mean(values)) if values else float("nan"),
        f"{network.name}_frames": len(fakes),
        f"{network.name}_frames_without_face": len(fakes) - len(values),
    }


def fvd_values(i3d: I3DFeatures, videos: list[tuple[str, np.ndarray, np.ndarray]], config: EvalConfig) -> list[float]:
    """One FVD per seed over the same windows of generated and real videos; features cached per window."""
    cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    length = config.fvd.clip_length
    values = []
    for seed in config.fvd.seeds:
        fake, real = [], []
        for task_id, generated, reference in videos:
            for start in window_starts(task_id, len(generated), length, config.fvd.windows_per_video, seed):
                if (task_id, start) not in cache:
                    pair = np.stack([generated[start : start + length], reference[start : start + length]])
                    features = i3d(pair)
                    cache[task_id, start] = features[0], features[1]
                fake.append(cache[task_id, start][0])
                real.append(cache[task_id, start][1])
        if len(fake) >= 2:
            values.append(frechet_between(np.stack(real), np.stack(fake)))
    return values


def summarise(
    protocol: Protocol, rows: list[dict[str, object]], pools: Pools, scorers: Scorers, config: EvalConfig
) -> list[dict[str, object]]:
    """One summary row per metric of the protocol."""
    done = [row for row in rows if row["protocol"] == protocol and row["status"] == "ok"]
    frames = int(sum(int(row["scored_frames"]) for row in done))  # type: ignore[call-overload]
    out = []
    for key in config.metrics:
        column = COLUMNS[key]
        if protocol not in column.protocols:
            continue
        record: dict[str, object] = {
            "protocol": protocol,
            "metric": key,
            "label": column.label,
            "higher_is_better": column.higher_is_better,
            "unit": column.unit,
            "backend": column.backend,
            "value": float("nan"),
            "std": float("nan"),
            "tasks": len(done),
            "frames": frames,
            "status": "ok",
            "note": "",
            "frames_without_face": without_face(key, done),
        }
        if key in scorers.missing:
            record.update(status="weights missing", note=scorers.missing[key])
        elif not done:
            record.update(status="no tasks", note="no task of this protocol could be scored")
        elif key == "FID" and scorers.inception is not None:
            record["value"] = frechet_between(np.concatenate(pools.fid_real), np.concatenate(pools.fid_fake))
            real = "the ground-truth frames" if protocol == "self" else "every frame of every split clip"
            record["note"] = f"real set: {real}"
        elif key == "FVD" and scorers.i3d is not None:
            values = fvd_values(scorers.i3d, pools.videos, config)
            if values:
                record.update(value=float(np.mean(values)), std=float(np.std(values)))
            record["note"] = (
                f"{config.fvd.clip_length}-frame windows, {config.fvd.windows_per_video} per video, seeds "
                f"{list(config.fvd.seeds)}; real: {'ground truth' if protocol == 'self' else 'driving clips'}"
            )
            if not values:
                record.update(status="no tasks", note=f"no video holds {config.fvd.clip_length} scored frames")
        else:
            values = np.array([row.get(key, np.nan) for row in done], np.float64)
            values = values[np.isfinite(values)]
            if len(values):
                record.update(value=float(values.mean()), std=float(values.std()), tasks=len(values))
            elif key in FACE_METRICS:  # (reached only when no pair had a face)
                record.update(status="no face found", note="no scored frame pair showed a face in both frames")
            else:
                record.update(status="no tasks", note="no task gave a finite value")
        out.append(record)
    return out


def without_face(metric: str, rows: list[dict[str, object]]) -> int:
    """Scored frames a face metric skipped because a face was missing (eval.md §3, §6.6); 0 for others."""
    column = {"AED": "face_motion_frames_without_face", "APD": "face_motion_frames_without_face"}.get(
        metric, f"{metric}_frames_without_face"
    )
    if metric not in FACE_METRICS:
        return 0
    return int(sum(int(row.get(column, 0) or 0) for row in rows))  # type: ignore[call-overload]


def write_atomic(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)


@dataclass
class RunResult:
    out: Path
    tasks: pd.DataFrame
    summary: pd.DataFrame
    info: dict[str, object]


def run_method(
    method: Method,
    tasks: list[Task],
    clips: dict[str, EvalClip],
    clip_problems: dict[str, str],
    scorers: Scorers,
    config: EvalConfig,
    tick: Callable[[], None],
) -> tuple[list[dict[str, object]], dict[str, Pools]]:
    """Generate (or read) and score every task."""
    rows: list[dict[str, object]] = []
    pools = {"self": Pools(), "cross": Pools()}
    for task in tasks:
        row: dict[str, object] = {
            "protocol": task.protocol,
            "task_id": task.task_id,
            "source": task.source,
            "driving": task.driving,
            "status": "ok",
            "reason": None,
            "detail": None,
            "frames": 0,
            "scored_frames": 0,
        }
        try:
            row.update(score_task(method, task, clips, clip_problems, scorers, config, pools[task.protocol]))
        except TaskFailed as failure:
            row.update(status="failed", reason=failure.reason, detail=failure.detail)
        rows.append(row)
        tick()
    return rows, pools


def score_task(
    method: Method,
    task: Task,
    clips: dict[str, EvalClip],
    clip_problems: dict[str, str],
    scorers: Scorers,
    config: EvalConfig,
    pool: Pools,
) -> dict[str, object]:
    for item in (task.source, task.driving):
        if item not in clips:
            raise TaskFailed("clip_unusable", f"{item}: {clip_problems.get(item, 'not in the split')}")
    source, driving = clips[task.source].frames[0], clips[task.driving].frames
    if isinstance(method, OutputsFolder):
        generated = method.read(task, config.size, len(driving))
    else:
        try:
            generated = method.generate(source, driving, fps=clips[task.driving].fps)
        except Exception as exc:  # a method's own failure is this task's, not the run's
            raise TaskFailed("generation_failed", f"{type(exc).__name__}: {exc}") from exc
        if generated.shape != driving.shape:
            raise TaskFailed("wrong_resolution", f"{method.name} returned {generated.shape}, expected {driving.shape}")
    window = scored(task.protocol, len(driving), config)
    fake, real = generated[window], driving[window]
    row: dict[str, object] = {
        "frames": len(generated),
        "scored_frames": len(fake),
        "crop_box": list(clips[task.driving].crop_box),
    }
    if len(fake) == 0:
        raise TaskFailed("wrong_length", "no frame left to score")
    row.update(frame_metrics(scorers, task, fake, real, source))
    if scorers.active("FID") and scorers.inception is not None:
        pool.fid_fake.append(scorers.inception(fake))
        if task.protocol == "self":
            pool.fid_real.append(scorers.inception(real))
    if scorers.active("FVD"):
        pool.videos.append((task.task_id, fake, real))
    return row


def cross_fid_reference(inception: InceptionFeatures, clips: dict[str, EvalClip]) -> np.ndarray:
    """Cross FID's real set: every frame of every usable split clip (the same for every method)."""
    return np.concatenate([inception(clip.frames) for clip in clips.values()])


def write_run(
    out: Path,
    rows: list[dict[str, object]],
    summary: list[dict[str, object]],
    info: dict[str, object],
) -> RunResult:
    out.mkdir(parents=True, exist_ok=True)
    tasks_frame = pd.DataFrame(rows)
    summary_frame = pd.DataFrame(summary)
    for name, frame in (("tasks.parquet", tasks_frame), ("summary.parquet", summary_frame)):
        partial = out / f".{name}.partial"
        frame.to_parquet(partial, index=False)
        os.replace(partial, out / name)
    write_atomic(out / "run.json", (json.dumps(info, indent=2, sort_keys=True, default=str) + "\n").encode())
    return RunResult(out, tasks_frame, summary_frame, info)


def run_info(
    method: Method,
    label: str,
    config: EvalConfig,
    split_path: Path,
    scorers: Scorers,
    rows: list[dict[str, object]],
    clip_problems: dict[str, str],
    unexpected: list[str],
) -> dict[str, object]:
    failures = Counter(str(row["reason"]) for row in rows if row["status"] != "ok")
    return {
        "format": "realportrait-eval-run/1",
        "method": method.name,
        "label": label,
        "description": method.description,
        "motion_mode": method.motion_mode,
        "config": config.model_dump(mode="json"),
        "fingerprint": config.fingerprint(),
        "split": {"path": str(split_path), "sha256": hashlib.sha256(Path(split_path).read_bytes()).hexdigest()},
        "frame0": "scored" if config.score_first_frame else "self-reenactment frame 0 (the source) not scored",
        "crop": (
            f"one stable square per clip, {config.crop_scale} x the face (pipeline detector + stable_crop), "
            f"resized to {config.size}x{config.size} (area when shrinking, cubic when enlarging); background kept"
        ),
        "weights": [
            {"key": w.key, "file": w.path.name, "sha256": w.sha256, "problem": w.problem} for w in scorers.weights()
        ],
        "weights_missing": scorers.missing,
        "backends": {key: COLUMNS[key].backend for key in config.metrics},
        "tasks": len(rows),
        "failed": dict(sorted(failures.items())),
        "clip_problems": clip_problems,
        "unexpected_outputs": unexpected,
    }


def unexpected_outputs(folder: Path, tasks: list[Task]) -> list[str]:
    """Videos in an outputs folder that no task asks for (a misnamed file shows up here)."""
    expected = {task.relative_path for task in tasks}
    found = {path.relative_to(folder).as_posix() for path in folder.glob("*/*.mp4")}
    return sorted(found - expected)


def evaluate(
    method: Method,
    split: Split,
    split_path: Path,
    roots: dict[str, Path],
    tasks: list[Task],
    scorers: Scorers,
    detector: FaceDetector,
    out: Path,
    *,
    label: str | None = None,
    progress: Callable[[str, int], Callable[[], None]] | None = None,
) -> RunResult:
    """The whole run (see the module docstring). `progress(description, total)` returns a tick function."""
    config = scorers.config
    start = progress or (lambda description, total: lambda: None)
    clips, clip_problems = load_clips(split, roots, config, detector, start("cropping clips", len(split.clips)))
    rows, pools = run_method(method, tasks, clips, clip_problems, scorers, config, start(method.name, len(tasks)))
    if scorers.active("FID") and scorers.inception is not None and clips:
        pools["cross"].fid_real.append(cross_fid_reference(scorers.inception, clips))
    summary = [
        record
        for protocol in ("self", "cross")
        for record in summarise(protocol, rows, pools[protocol], scorers, config)
        if any(task.protocol == protocol for task in tasks)
    ]
    unexpected = unexpected_outputs(method.folder, tasks) if isinstance(method, OutputsFolder) else []
    info = run_info(method, label or method.name, config, split_path, scorers, rows, clip_problems, unexpected)
    return write_run(out, rows, summary, info)
