"""`rp-data build`: source manifests -> deterministic work shards -> WebDataset shards, on Ray.

The plan (which items go into which work shard) is made once from the source manifests and stored
with the build; a work shard is done when its stats file exists, so a rerun of the same command skips
finished shards and redoes unfinished ones from scratch (their outputs are deterministic, so a build
that was killed and rerun ends with the same bytes as one that never stopped). One Ray actor per
worker holds the face models; work shards go to free actors, so at most one per worker is in flight.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.schema import PipelineDefaults, SpecError, load_registry
from pipeline.config import BuildConfig
from pipeline.faces.threads import THREAD_ENV
from pipeline.shards import MANIFEST_COLUMNS, is_committed
from pipeline.sources.records import USABLE_MEDIA, SourceItem
from pipeline.sources.scan import resolve_targets, scan

MEDIA_REASONS = {"missing": "missing_media", "empty": "empty_file", "unreadable": "unreadable_media"}


class BuildError(RuntimeError):
    """A build that must not start (a clear message, never a traceback)."""


@dataclass(frozen=True)
class WorkShard:
    work: str  # e.g. "vfhq-00003", or "vfhq-00003-r1" for a retry of its failed items
    dataset: str
    root: str
    defaults: dict[str, object]
    items: list[dict[str, object]]  # source manifest rows
    attempt: int = 0


@dataclass
class Progress:
    total: int
    done: int = 0
    frames: int = 0
    clips: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.perf_counter)

    def add(self, summary: dict[str, object]) -> None:
        self.done += 1
        self.frames += int(summary["frames"])
        self.clips += int(summary["samples"])
        self.failures.update(summary["failures"])

    def line(self) -> str:
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        eta = (self.total - self.done) * elapsed / self.done if self.done else float("nan")
        failures = ", ".join(f"{k}:{v}" for k, v in sorted(self.failures.items())) or "none"
        eta_text = "-" if eta != eta else f"{eta:.0f} s"
        return (
            f"work shards {self.done}/{self.total} | {self.frames / elapsed:.1f} frames/s | "
            f"{self.clips / elapsed:.2f} samples/s | failures {failures} | ETA {eta_text}"
        )


# -- planning ------------------------------------------------------------------------------------------


def resolved_defaults(name: str, root: Path, cfg: BuildConfig) -> dict[str, PipelineDefaults]:
    """Per-dataset pipeline defaults: the registry's (a composite spec's override its members'), then
    the build config's."""
    return {spec.name: cfg.defaults.get(spec.name, spec.defaults) for spec, _ in resolve_targets(name, root)}


def scan_sources(sources: Sequence[tuple[str, Path]], out: Path) -> pd.DataFrame:
    """Source manifests, scanned once per build directory (a rerun reuses them)."""
    frames = []
    for name, root in sources:
        path = out / "sources" / f"{name}.parquet"
        if not path.exists():
            scan(name, Path(root), out=path)
        frames.append(pd.read_parquet(path))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plan_shards(items: pd.DataFrame, cfg: BuildConfig) -> pd.DataFrame:
    """Deterministic work shards: items of a dataset in item_id order, cut every N (videos or images)."""
    rows = []
    for dataset, group in items.sort_values("item_id").groupby("dataset", sort=True):
        per = cfg.images_per_shard if (group.modality == "image").all() else cfg.videos_per_shard
        for index, item_id in enumerate(group.item_id):
            rows.append({"work": f"{dataset}-{index // per:05d}", "dataset": dataset, "item_id": item_id})
    return pd.DataFrame(rows, columns=["work", "dataset", "item_id"])


# -- the worker ----------------------------------------------------------------------------------------


def _present(path: Path) -> bool:
    try:
        return path.is_dir() or path.stat().st_size > 0
    except OSError:
        return False


def _failed_row(item: SourceItem, reason: str, error_class: str, message: str) -> dict[str, object]:
    return {
        "item_id": item.item_id,
        "dataset": item.dataset,
        "kind": "source",
        "status": "failed",
        "reason": reason,
        "error_class": error_class,
        "message": message[:500],
    }


def error_class(exc: BaseException) -> tuple[str, str]:
    """(reason, class): undecodable media are permanent, I/O failures may pass on a retry, the rest is a bug."""
    from PIL import UnidentifiedImageError

    from pipeline.decode import DecodeError

    if isinstance(exc, DecodeError | UnidentifiedImageError):
        return "decode_error", "permanent"
    if isinstance(exc, FileNotFoundError):
        return "missing_media", "permanent"
    if isinstance(exc, OSError):
        return "io_error", "transient"
    return "internal_error", "bug"


class ShardWorker:
    """One per worker process: face models load once, then work shards come one at a time."""

    def __init__(self, cfg_json: str, fingerprint: str, out: str):
        from pipeline.faces import open_detector, open_landmarker
        from pipeline.faces.threads import limit_threads
        from pipeline.process import Models

        limit_threads()
        self.cfg = BuildConfig.model_validate_json(cfg_json)
        self.fingerprint = fingerprint
        self.shard_dir = Path(out) / "shards"
        kwargs = {"model_dir": self.cfg.face_model_dir} if self.cfg.face_backend == "insightface" else {}
        self.models = Models(open_detector(self.cfg.face_backend, **kwargs), open_landmarker("mediapipe"))

    def process(self, shard: WorkShard) -> dict[str, object]:
        from pipeline.process import process_item
        from pipeline.shards import WorkShardWriter

        started = time.perf_counter()
        writer = WorkShardWriter(self.shard_dir, shard.work, self.cfg.shard_max_bytes, self.cfg.shard_max_samples)
        defaults = PipelineDefaults.model_validate(shard.defaults)
        rows: list[dict[str, object]] = []
        frames = 0
        failures: Counter[str] = Counter()
        try:
            for raw in shard.items:
                item = SourceItem.from_row(raw)
                if shard.attempt and _present(Path(shard.root) / item.media_path):
                    item = dataclasses.replace(item, media_status="present")  # downloaded since the scan
                if item.media_status not in USABLE_MEDIA:
                    reason = MEDIA_REASONS.get(item.media_status, "missing_media")
                    rows.append(_failed_row(item, reason, "permanent", f"{item.media_path}: {item.media_status}"))
                    failures[reason] += 1
                    continue
                try:
                    outcome = process_item(item, Path(shard.root), self.cfg, defaults, self.models, self.fingerprint)
                except Exception as exc:  # one bad item never fails its shard: it becomes a row
                    reason, kind = error_class(exc)
                    rows.append(_failed_row(item, reason, kind, f"{type(exc).__name__}: {exc}"))
                    failures[reason] += 1
                    continue
                frames += outcome.frames_decoded
                for sample in outcome.samples:
                    sample.row["tar"] = writer.add(sample.key, sample.members)
                rows.extend([outcome.source_row, *outcome.candidate_rows])
        except BaseException:
            writer.abort()
            raise
        for row in rows:
            row.update(shard=shard.work, attempt=shard.attempt)
        seconds = time.perf_counter() - started
        statuses = Counter(f"{row['kind']}:{row['status']}" for row in rows)
        writer.commit(rows, {"frames": frames, "seconds": round(seconds, 3), "status_counts": dict(statuses)})
        return {
            "work": shard.work,
            "frames": frames,
            "samples": writer.samples,
            "failures": dict(failures),
            "seconds": seconds,
        }


# -- the driver ----------------------------------------------------------------------------------------


def _start_ray(workers: int, address: str | None) -> None:
    import logging

    import ray

    if ray.is_initialized():
        return
    # workers' stderr (mediapipe/TFLite chatter on every graph start) stays in Ray's session logs;
    # what goes wrong with an item is in the manifest, and a dead worker surfaces here as an error
    runtime_env = {"env_vars": {**THREAD_ENV, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}}
    common = {"runtime_env": runtime_env, "logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        ray.init(address=address, **common)
    else:
        # an embedded single-node Ray: no dashboard, bound to this machine's loopback only
        ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1", **common)


class Runner:
    """The Ray side of a build: worker actors (models loaded) that take work shards as they free up."""

    def __init__(self, cfg: BuildConfig, fingerprint: str, out: Path, workers: int, address: str | None = None):
        import ray

        _start_ray(workers, address)
        worker = ray.remote(num_cpus=1, max_restarts=0)(ShardWorker)
        self.actors = [worker.remote(cfg.model_dump_json(), fingerprint, str(out)) for _ in range(workers)]

    def ready(self) -> None:
        """Waits until every actor has loaded its models (benchmarks time the work, not the start)."""
        import ray

        ray.get([actor.__ray_ready__.remote() for actor in self.actors])

    def run(self, shards: list[WorkShard], on_progress: Callable[[Progress], None] | None = None) -> Progress:
        from ray.util import ActorPool

        progress = Progress(total=len(shards))
        pool = ActorPool(self.actors)
        for summary in pool.map_unordered(lambda actor, shard: actor.process.remote(shard), shards):
            progress.add(summary)
            if on_progress:
                on_progress(progress)
        return progress

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)


def _run(
    shards: list[WorkShard],
    cfg: BuildConfig,
    fingerprint: str,
    out: Path,
    workers: int,
    address: str | None,
    on_progress: Callable[[Progress], None] | None,
) -> Progress:
    if not shards:
        return Progress(total=0)
    runner = Runner(cfg, fingerprint, out, min(workers, len(shards)), address)
    try:
        return runner.run(shards, on_progress)
    finally:
        runner.close()


def _committed_rows(out: Path) -> pd.DataFrame:
    tables = [
        pq.read_table(p) for p in sorted((out / "shards").glob("*.parquet")) if is_committed(out / "shards", p.stem)
    ]
    excluded = out / "excluded.parquet"
    if excluded.exists():
        tables.append(pq.read_table(excluded))
    if not tables:
        return MANIFEST_COLUMNS.empty_table().to_pandas()
    return pa.concat_tables([t.cast(MANIFEST_COLUMNS) for t in tables]).to_pandas()


def annotation_rows(out: Path) -> list[dict[str, object]]:
    """Problems of the annotation files (a malformed line has no item): kept in the manifest too."""
    rows = []
    for path in sorted((out / "sources").glob("*.problems.parquet")):
        problems = pd.read_parquet(path)
        for problem in problems[problems.item_id.isna()].to_dict("records"):
            line = "" if pd.isna(problem["line"]) else f":{int(problem['line'])}"
            rows.append(
                {
                    "item_id": f"{problem['dataset']}/{problem['file']}{line}",
                    "dataset": problem["dataset"],
                    "kind": "annotation",
                    "status": "failed",
                    "reason": problem["reason"],
                    "error_class": "permanent",
                    "message": problem["detail"],
                    "attempt": 0,
                }
            )
    return rows


def write_manifest(out: Path) -> pd.DataFrame:
    """DIR/manifest.parquet from every committed work shard; a retry's rows replace the earlier ones."""
    rows = _committed_rows(out)
    if len(rows):
        rows = rows.sort_values("attempt", kind="stable")
        last_attempt = rows.groupby("item_id")["attempt"].transform("max")
        rows = rows[rows.attempt == last_attempt]
    annotation = pd.DataFrame(annotation_rows(out), columns=MANIFEST_COLUMNS.names)
    manifest = pd.concat([rows, annotation], ignore_index=True) if len(annotation) else rows
    manifest = manifest.sort_values(["dataset", "item_id", "kind", "key"], na_position="first", kind="stable")
    table = pa.Table.from_pandas(manifest.reset_index(drop=True), schema=MANIFEST_COLUMNS, preserve_index=False)
    tmp = out / ".manifest.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, out / "manifest.parquet")
    return manifest


def _record(
    out: Path,
    cfg: BuildConfig,
    fingerprint: str,
    sources: Sequence[tuple[str, Path]],
    excluded_split: str | None,
    allow_mismatch: bool,
) -> None:
    path = out / "build.json"
    if path.exists():
        recorded = json.loads(path.read_text())
        if recorded["fingerprint"] != fingerprint and not allow_mismatch:
            raise BuildError(
                f"{out} was built with fingerprint {recorded['fingerprint']} (pipeline "
                f"{recorded['pipeline_version']}); this config gives {fingerprint}. Mixing them would put shards "
                "made under different rules side by side: use a new --out, or --allow-fingerprint-change."
            )
        if sorted(map(list, recorded["sources"])) != sorted([n, str(Path(r).resolve())] for n, r in sources):
            raise BuildError(
                f"{out} was planned from the sources {recorded['sources']}: use the same --source "
                "arguments to resume it, or a new --out"
            )
        return
    record = {
        "fingerprint": fingerprint,
        "pipeline_version": cfg.pipeline_version,
        "config": cfg.model_dump(mode="json"),
        "sources": [[n, str(Path(r).resolve())] for n, r in sources],
        "excluded_split": excluded_split,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path.write_text(json.dumps(record, indent=1))


@dataclass
class BuildResult:
    out: Path
    manifest: pd.DataFrame
    progress: Progress
    skipped: int  # work shards already committed before this run


def build(
    sources: Sequence[tuple[str, Path]],
    out: Path,
    cfg: BuildConfig,
    *,
    workers: int = 2,
    ray_address: str | None = None,
    retry_failed: bool = False,
    exclude_split: Path | None = None,
    allow_fingerprint_change: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> BuildResult:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    registry = load_registry()
    for name, root in sources:
        if name not in registry:
            raise SpecError(f"unknown dataset {name!r}; the registry has: {', '.join(sorted(registry))}")
        if not Path(root).is_dir():
            raise BuildError(f"--source {name}={root}: not a directory")
    split_text = Path(exclude_split).read_text() if exclude_split else None
    fingerprint = cfg.fingerprint() if split_text is None else f"{cfg.fingerprint()}-{_short_hash(split_text)}"
    _record(out, cfg, fingerprint, sources, str(exclude_split) if exclude_split else None, allow_fingerprint_change)
    items = scan_sources(sources, out)
    defaults = {name: d for source, root in sources for name, d in resolved_defaults(source, Path(root), cfg).items()}
    plan_path = out / "plan.parquet"
    if not plan_path.exists():
        items, excluded_rows = _apply_exclusion(items, exclude_split)
        pd.DataFrame(excluded_rows, columns=MANIFEST_COLUMNS.names).pipe(
            lambda df: pq.write_table(
                pa.Table.from_pandas(df, schema=MANIFEST_COLUMNS, preserve_index=False), out / "excluded.parquet"
            )
        )
        plan_shards(items, cfg).to_parquet(plan_path)
    plan = pd.read_parquet(plan_path)
    by_id = {row["item_id"]: row for row in items.to_dict("records")}
    shards = _pending(plan, by_id, defaults, out, retry_failed)
    skipped = plan.work.nunique() - (0 if retry_failed else len(shards))
    progress = _run(shards, cfg, fingerprint, out, workers, ray_address, on_progress)
    return BuildResult(out, write_manifest(out), progress, skipped)


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _apply_exclusion(items: pd.DataFrame, exclude_split: Path | None) -> tuple[pd.DataFrame, list[dict]]:
    """Items of the evaluation split's YouTube videos and identities never reach a training shard."""
    if exclude_split is None:
        return items, []
    from pipeline.split import excluded_ids, load_split

    youtube_ids, identities = excluded_ids(load_split(exclude_split))
    hit = items.youtube_id.isin(youtube_ids) | items.identity.isin(identities)
    rows = [
        {
            "item_id": r["item_id"],
            "dataset": r["dataset"],
            "kind": "source",
            "status": "filtered",
            "reason": "excluded_split",
            "message": f"held out by {exclude_split}",
            "attempt": 0,
        }
        for r in items[hit].to_dict("records")
    ]
    return items[~hit], rows


def _pending(
    plan: pd.DataFrame, by_id: dict[str, dict], defaults: dict[str, PipelineDefaults], out: Path, retry_failed: bool
) -> list[WorkShard]:
    shard_dir = out / "shards"
    shards = []
    latest = pd.DataFrame(columns=["item_id", "status", "attempt"])
    if retry_failed:
        done = _committed_rows(out)
        latest = done[done.kind == "source"].sort_values("attempt", kind="stable").groupby("item_id").tail(1)
    for work, group in plan.groupby("work", sort=True):
        dataset = group.dataset.iloc[0]
        rows = [by_id[i] for i in group.item_id]
        root = str(rows[0]["root"])
        dataset_defaults = defaults[dataset].model_dump(mode="json")
        if not retry_failed:
            if not is_committed(shard_dir, work):
                shards.append(WorkShard(work, dataset, root, dataset_defaults, rows))
            continue
        failed = latest[(latest.status == "failed") & latest.item_id.isin(group.item_id)]
        if len(failed):
            attempt = int(failed.attempt.max()) + 1
            shards.append(
                WorkShard(
                    f"{work}-r{attempt}",
                    dataset,
                    root,
                    dataset_defaults,
                    [by_id[i] for i in sorted(failed.item_id)],
                    attempt,
                )
            )
    return shards
