"""`rp-data build`: source manifests -> deterministic work shards -> WebDataset shards, on Ray.

The plan (which items go into which work shard) is made once from the source manifests and stored
with the build; a work shard is done when its stats file exists, so a rerun of the same command skips
finished shards and redoes unfinished ones from scratch (their outputs are deterministic, so a build
that was killed and rerun ends with the same bytes as one that never stopped). One Ray actor per
worker holds the face models; work shards go to free actors, so at most one per worker is in flight.

The driver streams: the plan is made from the scan parquet in batches and read back one row group at
a time (pipeline/plan.py), and the manifest is merged shard family by shard family
(pipeline/manifest_merge.py), so its memory does not grow with the number of source items. Every
file it writes is renamed into place when whole (pipeline/atomic.py), and a resume first deletes the
temporaries a killed run left.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from manifests.schema import DatasetSpec, PipelineDefaults, SpecError, load_specs
from pipeline import atomic
from pipeline.build_lock import FolderLocked, build_lock
from pipeline.config import BuildConfig
from pipeline.driver_folder import DriverFolder, driver_folder
from pipeline.fingerprint import FingerprintError, build_inputs, changed_inputs
from pipeline.manifest_merge import write_manifest
from pipeline.plan import Exclusion, PendingShards, make_plan, planned_works, retry_shards, unbuilt_shards
from pipeline.runner import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PLACEMENT_TIMEOUT_S,
    DEFAULT_WORKER_MEMORY_GIB,
    Progress,
    Runner,
    ShardSource,
    default_workers,
)
from pipeline.sources.scan import DatasetScan, NoItemsError, first_items, refuse_empty, resolve_targets, scan
from pipeline.storage import Store, StoreError

BUILD_FOLDERS = (".", "sources", "shards")  # where a build writes, so where a killed one left temporaries


class BuildError(RuntimeError):
    """A build that must not start (a clear message, never a traceback)."""


# -- planning ------------------------------------------------------------------------------------------


def resolved_defaults(
    name: str, root: Path, cfg: BuildConfig, registry: dict[str, DatasetSpec] | None = None
) -> dict[str, PipelineDefaults]:
    """Per-dataset pipeline defaults: the registry's (a composite spec's override its members'), then
    the build config's."""
    targets = resolve_targets(name, root, registry)
    return {spec.name: cfg.defaults.get(spec.name, spec.defaults) for spec, _ in targets}


def build_fingerprint(
    cfg: BuildConfig, defaults: Mapping[str, PipelineDefaults], exclude_split: Path | None = None
) -> tuple[str, dict[str, object]]:
    """(fingerprint, what it covers besides the config): the defaults in effect, library versions and
    face-model hashes (pipeline/fingerprint.py), and the excluded split's text."""
    try:
        inputs = build_inputs(cfg, defaults)
    except FingerprintError as exc:
        raise BuildError(str(exc)) from exc
    fingerprint = cfg.fingerprint(inputs)
    if exclude_split is not None:
        fingerprint = f"{fingerprint}-{_short_hash(Path(exclude_split).read_text())}"
    return fingerprint, inputs


def scan_sources(
    sources: Sequence[tuple[str, Path]],
    out: Path,
    on_item: Callable[[DatasetScan], None] | None = None,
    ray_address: str | None = None,
    registry: dict[str, DatasetSpec] | None = None,
) -> list[Path]:
    """The source manifests, scanned once per build directory (a rerun reuses them); a large root is listed
    by tasks on the build's Ray cluster (`ray_address`), or on an embedded Ray without one."""
    paths = []
    for name, root in sources:
        path = _scan_path(out, name)
        if not _scanned(path):
            scan(name, Path(root), out=path, on_item=on_item, ray_address=ray_address, registry=registry)
        paths.append(path)
    return paths


def _scan_path(out: Path, name: str) -> Path:
    return out / "sources" / f"{name}.parquet"


def _scanned(path: Path) -> bool:
    """A scan writes its manifest and then its problems file: without both, it did not finish and is redone."""
    return path.exists() and path.with_name(f"{path.stem}.problems.parquet").exists()


def refuse_empty_sources(
    sources: Sequence[tuple[str, Path]], out: Path | Store, registry: dict[str, DatasetSpec] | None = None
) -> None:
    """Every source not yet scanned into `out` must hold at least one item, checked before anything is
    written: a mistyped path among several sources then costs nothing, and `out` is not tied (build.json)
    to a wrong path. Sources already scanned are what the build was planned from: a resume trusts them."""
    refusals, scanned = [], Store.at(out).child("sources")
    for name, root in sources:
        if not (scanned.exists(f"{name}.parquet") and scanned.exists(f"{name}.problems.parquet")):
            try:
                refuse_empty(first_items(name, Path(root), registry), registry, prefix=f"--source {name}={root}: ")
            except NoItemsError as exc:
                refusals.append(str(exc))
    if refusals:
        raise BuildError(
            "\n".join([*refusals, f"nothing was written to {Store.at(out)}: correct the path, or leave it out"])
        )


def empty_scans(paths: Sequence[Path]) -> list[str]:
    """Notes on source manifests without a row: only a build begun before empty roots were refused has
    them, and it goes on without those datasets rather than lose what it built."""
    return [
        f"{path} holds no items: this build goes on without {path.stem}; build it into a new --out "
        "once its folder is right"
        for path in paths
        if pq.read_metadata(path).num_rows == 0
    ]


# -- the driver ----------------------------------------------------------------------------------------


def _run(
    shards: ShardSource,
    cfg: BuildConfig,
    fingerprint: str,
    inputs: Mapping[str, object],
    out: str,
    workers: int | None,
    address: str | None,
    on_progress: Callable[[Progress], None] | None,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    worker_memory_gib: float = DEFAULT_WORKER_MEMORY_GIB,
    placement_timeout_s: float = DEFAULT_PLACEMENT_TIMEOUT_S,
) -> Progress:
    """Runs the shards on Ray; no workers given means as many as the cluster joined (or this machine) holds
    at once. Every worker's library versions and model files must be the driver's (`inputs`)."""
    if not shards:
        return Progress(total=0)
    wanted = workers or default_workers(address, worker_memory_gib)
    runner = Runner(
        cfg,
        fingerprint,
        out,
        min(wanted, len(shards)),
        address,
        inputs=inputs,
        max_attempts=max_attempts,
        worker_memory_gib=worker_memory_gib,
        placement_timeout_s=placement_timeout_s,
    )
    try:
        return runner.run(shards, on_progress)
    finally:
        runner.close()


def _read_record(path: Path) -> dict[str, object]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(
            f"{path}: unreadable ({exc}); it is written whole or not at all, so something else changed it: "
            "restore it, or use a new --out"
        ) from exc
    if not isinstance(record, dict) or "fingerprint" not in record or "sources" not in record:
        raise BuildError(f"{path}: not a build record (no fingerprint or sources): use a new --out")
    return record


def _record(
    out: Path,
    cfg: BuildConfig,
    fingerprint: str,
    inputs: Mapping[str, object],
    sources: Sequence[tuple[str, Path]],
    excluded_split: str | None,
    allow_mismatch: bool,
    shown: str = "",
) -> bool:
    """Writes build.json on the first run (True); on a resume, refuses another fingerprint (saying what
    changed) or other sources. `shown` is what messages call the build folder (`out` unless said)."""
    shown = shown or str(out)
    path = out / "build.json"
    config = cfg.model_dump(mode="json")
    if path.exists():
        recorded = _read_record(path)
        if recorded["fingerprint"] != fingerprint and not allow_mismatch:
            was = {"config": recorded.get("config") or {}, **(recorded.get("inputs") or {})}
            changes = changed_inputs(was, {"config": config, **inputs})
            what = "; ".join(changes[:8]) + ("; ..." if len(changes) > 8 else "") if changes else "the excluded split"
            raise BuildError(
                f"{shown} was built with fingerprint {recorded['fingerprint']} (pipeline "
                f"{recorded.get('pipeline_version')}); this config gives {fingerprint} (changed: {what}). Mixing "
                "them would put shards made under different rules side by side: use a new --out, or "
                "--allow-fingerprint-change."
            )
        if sorted(map(list, recorded["sources"])) != sorted([n, str(Path(r).resolve())] for n, r in sources):
            raise BuildError(
                f"{shown} was planned from the sources {recorded['sources']}: use the same --source "
                "arguments to resume it, or a new --out"
            )
        return False
    record = {
        "fingerprint": fingerprint,
        "pipeline_version": cfg.pipeline_version,
        "config": config,
        "inputs": dict(inputs),
        "sources": [[n, str(Path(r).resolve())] for n, r in sources],
        "excluded_split": excluded_split,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic.write_text(path, json.dumps(record, indent=1))
    return True


@dataclass
class BuildResult:
    out: str  # the build folder's absolute path, or its URL
    counts: pd.DataFrame  # manifest rows by (dataset, kind, status, reason): rows, frames
    progress: Progress
    skipped: int  # work shards already committed before this run
    notes: list[str]  # what the user should know about the sources (see `empty_scans`)


def build(
    sources: Sequence[tuple[str, Path]],
    out: Path | str,
    cfg: BuildConfig,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    worker_memory_gib: float = DEFAULT_WORKER_MEMORY_GIB,
    placement_timeout_s: float = DEFAULT_PLACEMENT_TIMEOUT_S,
    retry_failed: bool = False,
    exclude_split: Path | None = None,
    allow_fingerprint_change: bool = False,
    force_unlock: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    registry: dict[str, DatasetSpec] | None = None,
) -> BuildResult:
    """Builds `sources` into `out`, or resumes it; `on_status` hears what the driver is doing (checking,
    scanning, planning, merging), `on_progress` how the work shards run. Another build running on `out`
    is refused (pipeline/build_lock.py); `force_unlock` takes over the lock of one that died. `out` is a
    local folder (a relative one is resolved here, for every node) or an fsspec URL (pipeline/storage.py).
    `registry` holds the sources' specs (default: the official ones and the user's, manifests.schema.load_specs)."""
    try:
        store = Store.at(out)
    except StoreError as exc:
        raise BuildError(f"--out {exc}") from exc
    status = on_status or (lambda text: None)
    registry = registry if registry is not None else load_specs()
    for name, root in sources:
        if name not in registry:
            raise SpecError(f"unknown dataset {name!r}; the registry has: {', '.join(sorted(registry))}")
        if not Path(root).is_dir():
            raise BuildError(f"--source {name}={root}: not a directory")
    status("checking the sources")
    refuse_empty_sources(sources, store, registry)
    with driver_folder(store) as driver:
        store.make()
        try:
            with build_lock(store, force_unlock):
                return _locked_build(
                    sources,
                    driver,
                    cfg,
                    registry,
                    workers=workers,
                    ray_address=ray_address,
                    max_attempts=max_attempts,
                    worker_memory_gib=worker_memory_gib,
                    placement_timeout_s=placement_timeout_s,
                    retry_failed=retry_failed,
                    exclude_split=exclude_split,
                    allow_fingerprint_change=allow_fingerprint_change,
                    on_progress=on_progress,
                    status=status,
                )
        except FolderLocked as exc:  # raised on entering: the block never ran
            raise BuildError(str(exc)) from exc


def _locked_build(
    sources: Sequence[tuple[str, Path]],
    driver: DriverFolder,
    cfg: BuildConfig,
    registry: dict[str, DatasetSpec],
    *,
    workers: int | None,
    ray_address: str | None,
    max_attempts: int,
    worker_memory_gib: float,
    placement_timeout_s: float,
    retry_failed: bool,
    exclude_split: Path | None,
    allow_fingerprint_change: bool,
    on_progress: Callable[[Progress], None] | None,
    status: Callable[[str], None],
) -> BuildResult:
    """The build, once this process holds the folder's lock: only now may a killed run's temporaries go,
    and only now is the record of an object store's build read (pipeline/driver_folder.py)."""
    store, out = driver.store, driver.path
    for folder in BUILD_FOLDERS:
        (store if folder == "." else store.child(folder)).remove_stale()
    driver.download()
    defaults = {
        name: d for source, root in sources for name, d in resolved_defaults(source, Path(root), cfg, registry).items()
    }
    fingerprint, inputs = build_fingerprint(cfg, defaults, exclude_split)
    excluded_split = str(exclude_split) if exclude_split else None
    if _record(out, cfg, fingerprint, inputs, sources, excluded_split, allow_fingerprint_change, store.url):
        driver.upload("build.json")
    unscanned = [name for name, _ in sources if not _scanned(_scan_path(out, name))]
    scans = scan_sources(
        sources, out, lambda stats: status(f"scanning {stats.dataset}: {stats.items} items"), ray_address, registry
    )
    driver.upload(*(f"sources/{name}{suffix}" for name in unscanned for suffix in (".parquet", ".problems.parquet")))
    if not (out / "plan.parquet").exists():
        status("planning the work shards")
        make_plan(scans, out, cfg, _exclusion(exclude_split))
        driver.upload("excluded.parquet", "plan.parquet")
    shard_store = store.child("shards")
    shards = pending_shards(out, defaults, retry_failed, shard_store)
    skipped = planned_works(out / "plan.parquet") - (0 if retry_failed else len(shards))
    if shards:
        status(f"work shards 0/{len(shards)} | starting the Ray workers")
    progress = _run(
        shards,
        cfg,
        fingerprint,
        inputs,
        store.url,
        workers,
        ray_address,
        on_progress,
        max_attempts=max_attempts,
        worker_memory_gib=worker_memory_gib,
        placement_timeout_s=placement_timeout_s,
    )
    status("merging the manifest")
    counts = write_manifest(out, shard_store)
    driver.upload("manifest.parquet")
    return BuildResult(store.url, counts, progress, skipped, empty_scans(scans))


def pending_shards(
    out: Path, defaults: Mapping[str, PipelineDefaults], retry_failed: bool, shards: Store | None = None
) -> PendingShards:
    """The work shards this run builds (lazily made; `len()` known up front): the unbuilt ones, or with
    `retry_failed` one retry per work shard holding items whose latest attempt failed. `out` holds the plan,
    `shards` the work shards (out/shards unless said)."""
    return retry_shards(out, defaults, shards) if retry_failed else unbuilt_shards(out, defaults, shards)


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _exclusion(exclude_split: Path | None) -> Exclusion | None:
    """Items of the evaluation split's YouTube videos and identities never reach a training shard."""
    if exclude_split is None:
        return None
    from pipeline.split import excluded_ids, load_split

    youtube_ids, identities = excluded_ids(load_split(exclude_split))
    return Exclusion(frozenset(youtube_ids), frozenset(identities), f"held out by {exclude_split}")
