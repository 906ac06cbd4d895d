"""`rp-eval run`: one method over a split's self- and cross-reenactment tasks, results in a run folder.

Tasks are scored one at a time, and memory stays flat however large the split is: a task's clips are
made when it needs them (`eval.clips.ClipStore`, a cache of two clips), its per-frame metrics reduced to
the task's means, its FID and FVD features taken at once and written to the run folder; no frames are
kept after their task. A task that cannot be scored (missing or malformed output, unusable clip, the
method's own error) is a row with its reason, and nothing else is lost. Written to the run folder:
- `tasks.parquet`: one row per task: status, reason, frames, scored frames, each per-task metric, faces
  not found per metric, the evaluation crop;
- `features/`: per scored task, and per usable split clip, the FID and FVD features (`eval.task_sets`);
  the summary and every table are computed from them and from `tasks.parquet`;
- `summary.parquet`: one row per protocol and metric over the tasks that succeeded: value, std, tasks,
  frames, unit, direction, backend, status (`ok` | `weights missing` | `no face found` | `no tasks`);
- `run.json`: the method, its warnings, the protocol config and its fingerprint, the split file's sha256,
  the weight files by metric and path with their sha256, every backend and the installed versions of the
  libraries behind it, the frame-0 policy, task failures by reason, the clips of cross FID's real set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pandas as pd

from eval import run_log
from eval.clips import ClipStore, ClipUnusable, EvalClip, load_clip
from eval.columns import COLUMNS
from eval.config import EvalConfig, Protocol
from eval.ground_truth import GroundTruthCache, Truth, Versions
from eval.library_versions import metric_versions
from eval.methods import Method, OutputsFolder, TaskFailed
from eval.metrics import perceptual, pixel
from eval.metrics.identity import ArcfaceIdentity, DlibIdentity, cosine
from eval.metrics.identity import leakage as identity_leakage
from eval.run_log import Journal
from eval.scorers import Scorers
from eval.task_sets import (
    FVD_FRAMES,
    RUN_FORMAT,
    aggregate,
    clip_features_path,
    fvd_starts,
    save_features,
    succeeded,
    task_features_path,
    without_face,
)
from eval.tasks import Task
from eval.weights import REGISTRY, LoadedWeights
from model.animate import NoFaceError
from pipeline.decode import DecodeError
from pipeline.faces import FaceDetector
from pipeline.split import Split


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


def frame_metrics(
    scorers: Scorers, task: Task, generated: np.ndarray, driving: Truth, source: Truth, window: slice
) -> dict[str, object]:
    """The per-task values of one scored task: `generated` is the whole video, `driving` the driving clip's
    ground-truth side and `source` the source clip's (its frame 0 is the source image), `window` the
    frames that count (`scored`). Face motion reads the whole videos, since each is anchored on its own
    frame 0 (`eval.metrics.face_motion`); every other metric reads the scored frames only."""
    row: dict[str, object] = {}
    fake, real = generated[window], driving.clip.frames[window]
    if task.protocol == "self":
        for name, function in (
            ("L1", pixel.l1),
            ("PSNR", pixel.psnr),
            ("SSIM", pixel.ssim),
            ("PSNR-legacy-uint8", pixel.psnr_legacy_uint8),
        ):
            if scorers.active(name):
                row[name] = float(np.mean(function(fake, real)))
    paired = task.protocol == "self" and scorers.active("LPIPS")
    temporal = scorers.active("tLP") and len(fake) > 1
    if scorers.lpips is not None and (paired or temporal):
        measured = scorers.lpips.measure(fake, real if paired else None)  # one pass per generated frame
        if measured.distances is not None:
            row["LPIPS"] = float(np.mean(measured.distances))
        if temporal:
            reference_steps = driving.lpips_steps()[window.start or 0 : len(generated) - 1]
            row["tLP"] = float(np.mean(perceptual.tlp(measured.steps, reference_steps)))
    for name, network in (("CSIM-dlib", scorers.identity), ("CSIM-arcface", scorers.arcface)):
        leaks = task.protocol == "cross" and any(scorers.active(f"{name}-{kind}") for kind in ("driver", "leak"))
        if network is not None and (scorers.active(name) or leaks):
            step = scorers.config.identity_every
            row.update(identity_similarity(network, step, task, generated, driving, source, window, leakage=leaks))
    motion = [name for name in ("AED", "APD", "AED-legacy-abs") if scorers.active(name)]
    if scorers.face_motion is not None and motion:
        distances = scorers.face_motion.distances(generated, driving.motion(), window.start or 0)
        values = {"AED": distances.aed, "APD": distances.apd, "AED-legacy-abs": distances.aed_absolute}
        found = np.logical_and.reduce([np.isfinite(values[name]) for name in motion])
        row["face_motion_frames_without_face"] = int((~found).sum())
        for name in motion:
            row[name] = float(np.mean(values[name][found])) if found.any() else float("nan")
    return row


def identity_similarity(
    network: DlibIdentity | ArcfaceIdentity,
    step: int,
    task: Task,
    generated: np.ndarray,
    driving: Truth,
    source: Truth,
    window: slice,
    *,
    leakage: bool = False,
) -> dict[str, object]:
    """CSIM: generated vs ground truth per frame (self), generated vs the source (cross), eval.md §6.6;
    every `step`-th scored frame; frames without a face (either side) are skipped and counted. With
    `leakage` (cross only), also the driver-identity leakage columns `<network>-driver` and
    `<network>-leak` against the same frames of the driving clip (`identity.leakage`). The ground-truth
    side (driving frames, source image) comes from `Truth`, computed once per clip."""
    indices = list(range(len(generated)))[window][::step]
    fakes = network.embed_all(generated[indices])
    source_embedding = source.embeddings(network, [0])[0] if task.protocol == "cross" else None
    reals = driving.embeddings(network, indices) if task.protocol == "self" else [source_embedding] * len(fakes)
    values = [cosine(f, r) for f, r in zip(fakes, reals, strict=True) if f is not None and r is not None]
    row: dict[str, object] = {
        network.name: float(np.mean(values)) if values else float("nan"),
        f"{network.name}_frames": len(fakes),
        f"{network.name}_frames_without_face": len(fakes) - len(values),
    }
    if leakage and task.protocol == "cross":
        leak = identity_leakage(fakes, driving.embeddings(network, indices), source_embedding)
        for key, value in ((f"{network.name}-driver", leak.to_driver), (f"{network.name}-leak", leak.share)):
            row.update({key: value, f"{key}_frames": len(fakes), f"{key}_frames_without_face": leak.frames_skipped})
    return row


def task_features(
    scorers: Scorers, config: EvalConfig, task: Task, generated: np.ndarray, driving: Truth, window: slice
) -> dict:
    """A scored task's FID and FVD features (float32, as the networks give them): taken as soon as the task
    is scored so that its frames can go; every FVD window any configured seed draws is taken once. The
    real side comes from `driving` (`eval.ground_truth`), computed once per clip for every method.

    FID reads the scored frames. FVD's windows are drawn from the whole videos, frame 0 included, in both
    protocols: a 16-frame self-reenactment clip without its frame 0 holds no 16-frame I3D window, and
    the column would be empty on the test clips the paper's protocol uses (`eval.task_sets.FVD_FRAMES`)."""
    arrays: dict[str, np.ndarray] = {}
    if scorers.active("FID") and scorers.inception is not None:
        arrays["inception_fake"] = scorers.inception(generated[window]).astype(np.float32)
        if task.protocol == "self":
            arrays["inception_real"] = driving.inception()[window]
    if scorers.active("FVD") and scorers.i3d is not None:
        length = config.fvd.clip_length
        starts = fvd_starts(task.task_id, len(generated), config.fvd)
        arrays["i3d_starts"] = np.array(starts, np.int64)
        arrays["i3d_fake"] = scorers.i3d.windows(generated, starts, length).astype(np.float32)
        arrays["i3d_real"] = driving.i3d(starts).reshape(len(starts), -1)
    return arrays


def summarise(
    protocol: Protocol, tasks: pd.DataFrame, scorers: Scorers, config: EvalConfig, out: Path, clip_ids: list[str]
) -> list[dict[str, object]]:
    """One summary row per metric of the protocol, over the tasks that succeeded (`eval.task_sets`)."""
    done = succeeded(tasks, protocol) if len(tasks) else tasks
    frames = int(pd.to_numeric(done["scored_frames"]).sum()) if len(done) else 0
    out_rows = []
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
        elif (key == "FID" and scorers.inception is None) or (key == "FVD" and scorers.i3d is None):
            record.update(status="weights missing", note=f"no network was loaded for {key}")
        else:
            result = aggregate(key, protocol, done, out, out, config.fvd, clip_ids)
            record.update(value=result.value, std=result.std, tasks=result.tasks, status=result.status)
            record["note"] = result.note
        out_rows.append(record)
    return out_rows


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


def task_key(task: Task) -> str:
    return f"{task.protocol}/{task.task_id}"


def run_method(
    method: Method,
    tasks: list[Task],
    store: ClipStore,
    scorers: Scorers,
    config: EvalConfig,
    out: Path,
    tick: Callable[[], None],
    cache: GroundTruthCache,
    done: dict[str, dict[str, object]] | None = None,
) -> list[dict[str, object]]:
    """Generate (or read) and score every task, one at a time; features go to `out` as each is scored, and
    each finished task's row to the journal (`eval.run_log`). `done` holds the rows of tasks a resumed run
    finished before: they are kept as they are. The ground-truth side comes from `cache`. Whatever a task
    raises fails that task alone: its reason, and for an error the code did not expect, its traceback
    (kept for run.json)."""
    journal = Journal(out)
    rows: list[dict[str, object]] = []
    for task in tasks:
        if done and task_key(task) in done:
            rows.append(done[task_key(task)])
            tick()
            continue
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
            row.update(score_task(method, task, store, scorers, config, out, cache))
        except TaskFailed as failure:
            row.update(status="failed", reason=failure.reason, detail=failure.detail)
        except Exception as exc:  # one task's surprise (a library's own error type, a full disk) is not the run's
            row.update(
                status="failed",
                reason="internal_error",
                detail=f"{type(exc).__name__}: {exc}",
                traceback=traceback.format_exc(),
            )
        journal.append(row)
        rows.append(row)
        tick()
    return rows


def score_task(
    method: Method,
    task: Task,
    store: ClipStore,
    scorers: Scorers,
    config: EvalConfig,
    out: Path,
    cache: GroundTruthCache,
) -> dict[str, object]:
    try:
        source_clip = store.get(task.source)
        source = source_clip.frames[0].copy()  # a copy: a view would keep the whole clip alive
        driving_clip = store.get(task.driving)
    except ClipUnusable as exc:
        raise TaskFailed("clip_unusable", f"{exc.item_id}: {exc.reason}") from exc
    driving = driving_clip.frames
    if isinstance(method, OutputsFolder):
        generated = method.read(task, config.size, len(driving), driving_clip.fps)
    else:
        try:
            generated = method.generate(source, driving, fps=driving_clip.fps)
        except Exception as exc:  # a method's own failure is this task's, not the run's
            raise TaskFailed("generation_failed", f"{type(exc).__name__}: {exc}") from exc
        if generated.shape != driving.shape:
            raise TaskFailed("wrong_resolution", f"{method.name} returned {generated.shape}, expected {driving.shape}")
    window = scored(task.protocol, len(driving), config)
    row: dict[str, object] = {
        "frames": len(generated),
        "scored_frames": len(generated[window]),
        FVD_FRAMES: len(generated),
        "crop_box": list(driving_clip.crop_box),
    }
    if row["scored_frames"] == 0:
        raise TaskFailed("wrong_length", "no frame left to score")
    truth = Truth(driving_clip, scorers, cache)
    row.update(frame_metrics(scorers, task, generated, truth, Truth(source_clip, scorers, cache), window))
    features = task_features(scorers, config, task, generated, truth, window)
    if features:
        save_features(task_features_path(out, task.protocol, task.task_id), **features)
    return row


def write_run(
    out: Path,
    rows: list[dict[str, object]],
    summary: list[dict[str, object]],
    info: dict[str, object],
) -> RunResult:
    out.mkdir(parents=True, exist_ok=True)
    tasks_frame = pd.DataFrame([{k: v for k, v in row.items() if k != "traceback"} for row in rows])
    summary_frame = pd.DataFrame(summary)
    for name, frame in (("tasks.parquet", tasks_frame), ("summary.parquet", summary_frame)):
        partial = out / f".{name}.partial"
        frame.to_parquet(partial, index=False)
        os.replace(partial, out / name)
    write_atomic(out / "run.json", (json.dumps(info, indent=2, sort_keys=True, default=str) + "\n").encode())
    return RunResult(out, tasks_frame, summary_frame, info)


def weight_records(weights: list[LoadedWeights], metrics: tuple[str, ...]) -> list[dict[str, object]]:
    """Each weight file read, keyed by the metrics that use it and its full path (two files of one name
    from different folders are two records)."""
    return [
        {
            "key": w.key,
            "metrics": [m for m in metrics if m in COLUMNS and w.key in COLUMNS[m].weights],
            "path": str(Path(w.path).resolve()),
            "file": Path(w.path).name,
            "sha256": w.sha256,
            "pinned": REGISTRY[w.key].sha256,
            "problem": w.problem,
        }
        for w in weights
    ]


def run_info(
    method: Method,
    label: str,
    config: EvalConfig,
    split_path: Path,
    scorers: Scorers,
    rows: list[dict[str, object]],
    clip_problems: dict[str, str],
    unexpected: list[str],
    fid_reference_clips: list[str],
) -> dict[str, object]:
    failures = Counter(str(row["reason"]) for row in rows if row["status"] != "ok")
    return {
        "format": RUN_FORMAT,
        "method": method.name,
        "label": label,
        "description": method.description,
        "motion_mode": method.motion_mode,
        "control": bool(getattr(method, "control", False)),
        "warnings": [str(w) for w in getattr(method, "warnings", [])],
        "config": config.model_dump(mode="json"),
        "fingerprint": config.fingerprint(),
        "split": {"path": str(split_path), "sha256": hashlib.sha256(Path(split_path).read_bytes()).hexdigest()},
        "frame0": "scored" if config.score_first_frame else "self-reenactment frame 0 (the source) not scored",
        "crop": (
            f"one stable square per clip, {config.crop_scale} x the face (pipeline detector + stable_crop), "
            f"resized to {config.size}x{config.size} (area when shrinking, cubic when enlarging); background kept"
        ),
        "weights": weight_records(scorers.weights(), config.metrics),
        "weights_missing": scorers.missing,
        "backends": {key: COLUMNS[key].backend for key in config.metrics},
        "versions": metric_versions(config.metrics),
        **scorers.device_info(),
        "tasks": len(rows),
        "failed": dict(sorted(failures.items())),
        "succeeded": sum(row["status"] == "ok" for row in rows),
        # each failed task's reason and detail, and the traceback of an error the code did not expect
        "task_errors": {
            f"{row['protocol']}/{row['task_id']}": {k: row[k] for k in ("reason", "detail", "traceback") if row.get(k)}
            for row in rows
            if row["status"] != "ok"
        },
        "clip_problems": clip_problems,
        "fid_reference_clips": fid_reference_clips,
        "unexpected_outputs": unexpected,
    }


def run_identity(
    method: Method, label: str, config: EvalConfig, split_sha256: str, tasks: list[Task], scorers: Scorers
) -> dict[str, object]:
    """What a resumed run must have been started with (`eval.run_log.resume`)."""
    return {
        "format": RUN_FORMAT,
        "method": method.name,
        "label": label,
        "description": method.description,
        "config_fingerprint": config.fingerprint(),
        "split_sha256": split_sha256,
        "tasks_sha256": hashlib.sha256("\n".join(map(task_key, tasks)).encode()).hexdigest(),
        "weights_sha256": sorted(f"{w.key} {w.sha256}" for w in scorers.weights()),
    }


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
    clip_cache: int = 2,
    resume: bool = False,
    gt_cache: Path | None = None,
) -> RunResult:
    """The whole run (see the module docstring). `progress(description, total)` returns a tick function.
    A run folder written before is replaced (its features first, so none of the old ones is read back),
    unless `resume`: then the tasks it finished are kept (`eval.run_log`). The ground-truth side of every
    metric is read from, or added to, the cache folder `gt_cache` (None: computed, not kept)."""
    config = scorers.config
    out = Path(out)
    label = label or method.name
    start = progress or (lambda description, total: lambda: None)
    split_sha256 = hashlib.sha256(Path(split_path).read_bytes()).hexdigest()
    identity = run_identity(method, label, config, split_sha256, tasks, scorers)
    cache = GroundTruthCache(gt_cache, split_sha256, Versions.of(scorers)) if gt_cache else None
    cache = cache or GroundTruthCache.disabled()
    if resume:
        done = run_log.resume(out, identity)
    else:
        done = {}
        shutil.rmtree(out / "features", ignore_errors=True)
        run_log.start(out, identity)
    cross_fid = any(t.protocol == "cross" for t in tasks) and scorers.active("FID") and scorers.inception is not None
    # a resumed run keeps the real-set features it took before
    reference_clips = [c.item_id for c in split.clips if cross_fid and clip_features_path(out, c.item_id).is_file()]

    def keep_reference(clip: EvalClip) -> None:
        if cross_fid and scorers.inception is not None and clip.item_id not in reference_clips:
            features = Truth(clip, scorers, cache).inception()
            save_features(clip_features_path(out, clip.item_id), inception=features)
            reference_clips.append(clip.item_id)

    store = ClipStore(
        list(split.clips),
        roots,
        config.size,
        detector,
        config.max_frames,
        capacity=clip_cache,
        on_first_load=keep_reference,
    )
    rows = run_method(method, tasks, store, scorers, config, out, start(method.name, len(tasks)), cache, done)
    if cross_fid:
        store.visit_rest(start("cross FID real set", len(split.clips)), skip=set(reference_clips))
    tasks_frame = pd.DataFrame(rows)
    reference_clips = [c.item_id for c in split.clips if c.item_id in set(reference_clips)]
    summary = [
        record
        for protocol in ("self", "cross")
        for record in summarise(protocol, tasks_frame, scorers, config, out, reference_clips)
        if any(task.protocol == protocol for task in tasks)
    ]
    unexpected = method.unexpected(tasks) if isinstance(method, OutputsFolder) else []
    info = run_info(method, label, config, split_path, scorers, rows, store.problems, unexpected, reference_clips)
    info["resumed_tasks"] = len(done)
    info["ground_truth"] = cache.record()
    return write_run(out, rows, summary, info)
