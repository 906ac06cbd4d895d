"""The Ray side of `rp-data build`: worker actors that hold the face models and build work shards.

One actor per worker loads the detector and landmarker once; work shards go to started, free actors,
so at most one per worker is in flight. What one item does wrong becomes a manifest row, never a
failed shard. A worker that dies (the OOM killer, a crash, a lost node) is replaced by a fresh actor
and its work shard is built again from scratch, so the samples are those of an undisturbed build; an
item that kills its worker `max_attempts` times is recorded as failed (`worker_died`) and the rest of
its shard is built without it (pipeline/recovery.py says how the item is found).

Storage that fails (a full disk, an NFS error: an OSError while writing or committing a shard's files)
fails that attempt of the shard, never one item's row and never the build at once: the worker gives the
error back, stays in the pool, and the shard is sent again, to another worker when one is free. A shard
that cannot be stored in `max_attempts` attempts stops the build with its name, the error and the path.

Workers are fenced: each dispatch of a shard carries a fresh token that names its marker and its staged
files, and only the driver publishes a shard, for its current dispatch (pipeline/shards.py). A worker
Ray cannot reach (ActorUnavailableError: its call "may or may not have been executed") is not taken for
dead: the driver probes it for up to UNREACHABLE_WAIT_S, saying so on the progress line, until it is
back (its call has then ended, and what it staged is deleted) or dead, and only then sends the shard
again; one still unreachable after that is killed and counted lost.

Each actor declares its memory to Ray, so Ray places on a node only as many workers as fit in it. A
cluster where no node can hold one worker is refused at once (pipeline/capacity.py); while no worker
has started (each waits for a node to free up) the progress line says, after PLACEMENT_GRACE_S, what a
worker needs and what the cluster has free, and after the placement timeout the build stops.

Nodes must agree: a node with another PyAV or mediapipe writes other bytes under the same fingerprint.
So the driver's first call to each worker (`describe`) returns the library versions and model-file
hashes that worker sees on its node, and one that differs from the driver's stops the build, naming the
node and the differing items, before it is given a shard.

Test-only hooks, passed from the driver's environment to the workers; nothing else sets them, the
fault-tolerance tests do:
- RP_TEST_POISON_ITEM=<item_id>: the worker that reaches that item exits at once (os._exit(1)), as an
  OOM kill would end it.
- RP_TEST_DISK_FULL=<work shard>[:<n>]: writing that work shard's first sample raises
  OSError(ENOSPC), as a full disk would, on its first n dispatches of the run (every one without n).
- RP_TEST_ITEM_DELAY=<seconds>, in the environment of one node's Ray processes (not the driver's): its
  workers wait that long at the start of every item, so a test can stall the node mid-item for sure.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from manifests.schema import PipelineDefaults
from pipeline.capacity import Node, live_nodes, pool_size, refuse_unplaceable, usable_cpus, why_unplaced
from pipeline.config import BuildConfig
from pipeline.faces.threads import THREAD_ENV
from pipeline.recovery import DeathLedger, StorageFault, WorkerError, death_site, mark
from pipeline.sources.records import USABLE_MEDIA, Refused, SourceItem
from pipeline.storage import Store, worker_env

MEDIA_REASONS = {
    "missing": "missing_media",
    "empty": "empty_file",
    "unreadable": "unreadable_media",
    "outside_root": "media_outside_root",
}
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_WORKER_MEMORY_GIB = 1.5  # the bound a worker's peak RSS is designed to stay under
DEFAULT_PLACEMENT_TIMEOUT_S = 600.0  # how long the build may have no started worker before it stops
PLACEMENT_GRACE_S = 30.0  # how long before the progress line says why no worker has started
TICK_S = 1.0  # how often the driver looks up from waiting for its workers
POISON_ENV = "RP_TEST_POISON_ITEM"
DISK_FULL_ENV = "RP_TEST_DISK_FULL"
ITEM_DELAY_ENV = "RP_TEST_ITEM_DELAY"
UNREACHABLE_WAIT_S = 300.0  # how long a worker Ray cannot reach may take to come back before it counts as lost


@dataclass(frozen=True)
class WorkShard:
    work: str  # e.g. "vfhq-00003", or "vfhq-00003-r1" for a retry of its failed items
    dataset: str
    root: str
    defaults: dict[str, object]
    items: list[dict[str, object]]  # source manifest rows
    attempt: int = 0  # the --retry-failed round (rows of a later round replace earlier ones)
    # items whose worker died too often: recorded as failed with this message, not built
    isolated: dict[str, str] = field(default_factory=dict)
    token: str = ""  # this dispatch's id, written in the item marker (pipeline/recovery.py)
    dispatch: int = 0  # how many times this run sent the shard before (its worker died, or storage failed)


class ShardSource(Protocol):
    """Work shards with a known count, made as they are pulled (pipeline.plan.PendingShards, or a list)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[WorkShard]: ...


@dataclass
class Progress:
    total: int
    done: int = 0
    frames: int = 0
    clips: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    workers_lost: int = 0  # started actors that died (and were replaced)
    storage_faults: int = 0  # attempts whose outputs could not be stored (then retried)
    unreachable: int = 0  # calls lost while their actor was unreachable (it came back; the shard was sent again)
    waiting: str = ""  # why no progress is made, when the driver waits on something other than work
    # replacements that died before they started: one placed on a lost node before Ray marks it dead never
    # comes up, which is the same loss again, not another worker lost
    failed_starts: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def retried(self) -> int:
        """Work shards sent again: one per worker lost (a started worker's death is seen only through the
        call of the shard it holds), one per storage fault and one per call lost to an unreachable worker."""
        return self.workers_lost + self.storage_faults + self.unreachable

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
            f"work shards {self.done}/{self.total} | {self.frames / elapsed:.1f} source frames decoded/s | "
            f"{self.clips / elapsed:.2f} samples/s | failures {failures} | "
            f"workers lost {self.workers_lost}, shards retried {self.retried}"
            + (f", storage faults {self.storage_faults}" if self.storage_faults else "")
            + f" | ETA {eta_text}"
            + (f" | {self.waiting}" if self.waiting else "")
        )


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
    """(reason, class): refused items and undecodable media are permanent, I/O failures may pass on a
    retry, the rest is a bug."""
    from PIL import Image, UnidentifiedImageError

    from pipeline.decode import DecodeError

    if isinstance(exc, Refused):  # hostile values, a path out of the root, too large, a range or crop not in the media
        return exc.reason, "permanent"
    if isinstance(exc, Image.DecompressionBombError):  # PIL's own size limit, wherever an image is opened
        return "too_large", "permanent"
    if isinstance(exc, DecodeError | UnidentifiedImageError):
        return "decode_error", "permanent"
    if isinstance(exc, FileNotFoundError):
        return "missing_media", "permanent"
    if isinstance(exc, OSError):
        return "io_error", "transient"
    return "internal_error", "bug"


def _item_test_hooks(item_id: str) -> None:
    """The test-only hooks of the module docstring: a worker process that dies at one item, or that
    lingers at the start of each."""
    if os.environ.get(POISON_ENV) == item_id:
        os._exit(1)
    time.sleep(float(os.environ.get(ITEM_DELAY_ENV, 0)))


def _disk_full(shard: WorkShard) -> bool:
    """The test-only hook of the module docstring: this dispatch of the shard finds the disk full."""
    work, _, times = os.environ.get(DISK_FULL_ENV, "").partition(":")
    return work == shard.work and (not times or shard.dispatch < int(times))


class ShardWorker:
    """One per worker process: face models load once, then work shards come one at a time."""

    def __init__(self, cfg_json: str, fingerprint: str, out: str):
        from pipeline.faces import open_detector, open_landmarker
        from pipeline.faces.threads import limit_threads
        from pipeline.process import Models

        limit_threads()
        self.cfg = BuildConfig.model_validate_json(cfg_json)
        self.fingerprint = fingerprint
        self.shards = Store.at(out).child("shards")
        kwargs = {"model_dir": self.cfg.face_model_dir} if self.cfg.face_backend == "insightface" else {}
        self.models = Models(open_detector(self.cfg.face_backend, **kwargs), open_landmarker("mediapipe"))

    def describe(self) -> dict[str, object]:
        """The driver's first call: where this worker runs, and the library versions and model files it
        sees here (pipeline/fingerprint.py), or why it cannot see them."""
        import socket

        import ray

        from pipeline.fingerprint import FingerprintError, node_inputs

        context = ray.get_runtime_context()
        node = f"{ray.util.get_node_ip_address()} ({socket.gethostname()}, node {context.get_node_id()[:8]})"
        try:
            return {"node": node, "inputs": node_inputs(self.cfg)}
        except FingerprintError as exc:
            return {"node": node, "error": str(exc)}

    def process(self, shard: WorkShard) -> dict[str, object] | StorageFault:
        """Builds the shard; an OSError of storing it (not of reading an item) is handed back as this
        attempt's StorageFault, for the driver to retry elsewhere."""
        try:
            return self._build(shard)
        except OSError as exc:
            return StorageFault.of(shard.work, exc)

    def _build(self, shard: WorkShard) -> dict[str, object]:
        from pipeline.process import process_item
        from pipeline.shards import WorkShardWriter

        started = time.perf_counter()
        self.shards.make()
        mark(self.shards, shard.work, shard.token, None)  # from here on a death is this shard's
        writer = WorkShardWriter(
            self.shards,
            shard.work,
            self.cfg.shard_max_bytes,
            self.cfg.shard_max_samples,
            token=shard.token,
            simulate_full_disk=_disk_full(shard),
        )
        defaults = PipelineDefaults.model_validate(shard.defaults)
        rows: list[dict[str, object]] = []
        frames = 0
        failures: Counter[str] = Counter()
        try:
            for raw in shard.items:
                item = SourceItem.from_row(raw)
                if item.item_id in shard.isolated:
                    rows.append(_failed_row(item, "worker_died", "transient", shard.isolated[item.item_id]))
                    failures["worker_died"] += 1
                    continue
                if shard.attempt and _present(Path(shard.root) / item.media_path):
                    item = dataclasses.replace(item, media_status="present")  # downloaded since the scan
                if item.media_status not in USABLE_MEDIA:
                    reason = MEDIA_REASONS.get(item.media_status, "missing_media")
                    rows.append(_failed_row(item, reason, "permanent", f"{item.media_path}: {item.media_status}"))
                    failures[reason] += 1
                    continue
                mark(self.shards, shard.work, shard.token, item.item_id)
                _item_test_hooks(item.item_id)
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
            mark(self.shards, shard.work, shard.token, None)  # a death from here on is no item's fault
        except BaseException:
            writer.abort()
            raise
        for row in rows:
            row.update(shard=shard.work, attempt=shard.attempt)
        seconds = time.perf_counter() - started
        statuses = Counter(f"{row['kind']}:{row['status']}" for row in rows)
        staged = writer.stage(rows, {"frames": frames, "seconds": round(seconds, 3), "status_counts": dict(statuses)})
        return {  # the driver publishes `staged` if this dispatch is still the shard's current one
            "work": shard.work,
            "token": shard.token,
            "staged": staged,
            "frames": frames,
            "samples": writer.samples,
            "failures": dict(failures),
            "seconds": seconds,
        }


# -- the driver ----------------------------------------------------------------------------------------


def _start_ray(cpus: int, address: str | None) -> None:
    """Joins the cluster at `address`, or starts an embedded Ray of `cpus` CPUs on this machine."""
    import logging

    import ray

    if ray.is_initialized():
        return
    # workers' stderr (mediapipe/TFLite chatter on every graph start) stays in Ray's session logs;
    # what goes wrong with an item is in the manifest, and a dead worker is replaced and counted
    env_vars = {**THREAD_ENV, "GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env_vars |= {name: os.environ[name] for name in (POISON_ENV, DISK_FULL_ENV) if name in os.environ}
    env_vars |= worker_env()  # an object store's endpoint and region, for workers on other nodes
    common = {"runtime_env": {"env_vars": env_vars}, "logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        ray.init(address=address, **common)
    else:
        # an embedded single-node Ray: no dashboard, bound to this machine's loopback only
        ray.init(num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **common)


def _nodes() -> list[Node]:
    import ray

    return live_nodes(ray.nodes())


def default_workers(address: str | None, worker_memory_gib: float = DEFAULT_WORKER_MEMORY_GIB) -> int:
    """Workers when none are asked for: as many as the cluster's nodes hold at once (per node the smaller
    of its CPUs and its memory in workers). An embedded Ray gets the CPUs this process may use (affinity
    and cgroup quota, pipeline/capacity.py), not the host's count."""
    _start_ray(usable_cpus(), address)
    return max(1, pool_size(_nodes(), int(worker_memory_gib * 2**30)))


@dataclass
class _Call:
    """What an object ref in flight stands for: an actor starting (shard None), building a shard, or
    probed after it was unreachable while building one (`since`: when it became unreachable)."""

    actor: Any
    shard: WorkShard | None = None
    since: float | None = None


@dataclass
class _Retry:
    """A work shard to send again; `avoid` is the actor whose storage failed it (a dead one is gone)."""

    shard: WorkShard
    avoid: Any = None


def _again(shard: WorkShard) -> WorkShard:
    return dataclasses.replace(shard, dispatch=shard.dispatch + 1)


class Runner:
    """The Ray side of a build: worker actors (models loaded) that take work shards as they free up, and
    are replaced when they die."""

    def __init__(
        self,
        cfg: BuildConfig,
        fingerprint: str,
        out: Path | str,
        workers: int,
        address: str | None = None,
        *,
        inputs: Mapping[str, object],
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        worker_memory_gib: float = DEFAULT_WORKER_MEMORY_GIB,
        placement_timeout_s: float = DEFAULT_PLACEMENT_TIMEOUT_S,
    ):
        import ray

        if max_attempts < 1 or worker_memory_gib <= 0 or workers < 1 or placement_timeout_s <= 0:
            raise ValueError(
                f"workers ({workers}) and max_attempts ({max_attempts}) must be >= 1, worker_memory_gib "
                f"({worker_memory_gib}) and placement_timeout_s ({placement_timeout_s}) > 0"
            )
        _start_ray(workers, address)
        memory = int(worker_memory_gib * 2**30)
        refuse_unplaceable(_nodes(), memory)
        store = Store.at(out)  # a relative local --out is resolved here, on the driver, once
        self.shards = store.child("shards")
        self.max_attempts = max_attempts
        self.inputs = inputs  # the driver's node_inputs, which every worker's must equal
        self.worker_bytes = memory
        self.placement_timeout_s = placement_timeout_s
        # max_restarts=0: a dead actor is replaced by the runner, which also knows what it was building
        worker = ray.remote(num_cpus=1, memory=memory, max_restarts=0)(ShardWorker)
        self._spawn = lambda: worker.remote(cfg.model_dump_json(), fingerprint, store.url)
        self.actors = [self._spawn() for _ in range(workers)]

    def ready(self) -> None:
        """Waits until every actor has loaded its models (benchmarks time the work, not the start)."""
        import ray

        ray.get([actor.__ray_ready__.remote() for actor in self.actors])

    def _check_node(self, described: dict[str, object]) -> None:
        """A worker whose node sees other library versions or model files would write other bytes under
        the same fingerprint: the build stops, naming the node and what differs."""
        from pipeline.fingerprint import disagreements

        node = described["node"]
        if "error" in described:
            raise WorkerError(f"a build worker on node {node} cannot start: {described['error']}")
        differing = disagreements(self.inputs, described["inputs"], f"node {node}")  # type: ignore[arg-type]
        if differing:
            raise WorkerError(
                f"node {node} would build other bytes than the driver under the same fingerprint: "
                + "; ".join(differing)
                + ". Install the same versions and model files on every node, then rerun the same command: "
                "the work shards committed so far are kept."
            )

    def _unplaced(self, waited: float) -> str:
        """Why no worker has started after `waited` seconds, for the progress line and the stop."""
        import ray

        return f"no worker started for {waited:.0f} s: " + why_unplaced(
            _nodes(), ray.available_resources(), self.worker_bytes
        )

    def _replace(self, dead: Any) -> Any:
        import ray

        ray.kill(dead, no_restart=True)  # an actor only unreachable (not dead) must not build on
        fresh = self._spawn()
        self.actors[self.actors.index(dead)] = fresh
        return fresh

    def _retry(self, shard: WorkShard, exc: BaseException, ledger: DeathLedger) -> WorkShard:
        """The shard again, after its worker died: the death is held against the item it was building
        (its marker says which), and the items that reached max_attempts deaths are set aside."""
        ledger.record(shard.work, death_site(self.shards, shard.work, shard.token), exc)
        isolated = ledger.isolated([str(raw["item_id"]) for raw in shard.items])
        return dataclasses.replace(_again(shard), isolated={**shard.isolated, **isolated})

    @staticmethod
    def _take(idle: list[Any], retries: deque[_Retry], building: list[Any]) -> tuple[Any, WorkShard] | None:
        """A waiting retry and a free actor for it: one other than the actor whose storage failed it, unless
        no other actor is building a shard (none would free up soon: a pool of one, or replacements that
        may never be placed); None when the retries wait for another actor to finish its shard."""
        for retry in retries:
            actor = next((a for a in reversed(idle) if a is not retry.avoid), None)
            if actor is None and any(a is retry.avoid for a in idle) and all(a is retry.avoid for a in building):
                actor = retry.avoid
            if actor is not None:
                retries.remove(retry)
                idle.remove(actor)
                return actor, retry.shard
        return None

    def _accept(self, summary: dict[str, object], current: dict[str, str]) -> bool | StorageFault:
        """Publishes a finished dispatch if it is still its shard's current one (pipeline/shards.py), and
        says whether it did; a failing rename is that attempt's storage fault."""
        from pipeline.shards import publish_if_current

        work, token = str(summary["work"]), str(summary["token"])
        try:
            staged = list(summary["staged"])  # type: ignore[call-overload]
            accepted = publish_if_current(self.shards, work, token, current.get(work), staged)
        except OSError as exc:
            return StorageFault.of(work, exc)
        if accepted:
            del current[work]
        return accepted

    def run(self, shards: ShardSource, on_progress: Callable[[Progress], None] | None = None) -> Progress:
        """Builds every shard; a shard is pulled from `shards` only when a worker is free and no retry
        waits, so the driver holds the rows of the shards in flight, never the whole plan."""
        import ray
        from ray.exceptions import (
            ActorUnavailableError,
            NodeDiedError,
            OutOfMemoryError,
            RayActorError,
            WorkerCrashedError,
        )

        # how Ray reports a call whose worker process or node is gone (Ray's own memory monitor included)
        deaths = (RayActorError, OutOfMemoryError, NodeDiedError, WorkerCrashedError)
        progress = Progress(total=len(shards))
        ledger = DeathLedger(self.max_attempts, len(self.actors))
        storage_faults: Counter[str] = Counter()
        current: dict[str, str] = {}  # work shard -> the token of its dispatch in flight (the only one published)
        fresh_shards = iter(shards)
        retries: deque[_Retry] = deque()
        upcoming = next(fresh_shards, None)
        calls = {actor.describe.remote(): _Call(actor) for actor in self.actors}
        idle: list[Any] = []
        failed_starts = 0
        unstarted_since: float | None = None  # since when no worker has been building a shard

        def stored_badly(fault: StorageFault, shard: WorkShard, actor: Any) -> None:
            storage_faults[fault.work] += 1
            if storage_faults[fault.work] >= self.max_attempts:
                raise fault.stop(storage_faults[fault.work])
            progress.storage_faults += 1
            retries.append(_Retry(_again(shard), avoid=actor))

        while retries or upcoming is not None or any(call.shard for call in calls.values()):
            while idle:
                taken = self._take(idle, retries, [c.actor for c in calls.values() if c.shard is not None])
                if taken is None and upcoming is None:
                    break  # the retries wait for an actor other than the one that failed them
                if taken is None:
                    taken, upcoming = (idle.pop(), upcoming), next(fresh_shards, None)
                actor, shard = taken[0], dataclasses.replace(taken[1], token=uuid.uuid4().hex)  # type: ignore[arg-type]
                current[shard.work] = shard.token
                calls[actor.process.remote(shard)] = _Call(actor, shard)
            done, _ = ray.wait(list(calls), num_returns=1, timeout=TICK_S)
            if not done:
                if any(c.shard is not None for c in calls.values()):
                    continue  # a worker builds a shard
                # every call in flight is a worker starting: none may ever be placed
                unstarted_since = unstarted_since or time.monotonic()
                waited = time.monotonic() - unstarted_since
                if waited >= self.placement_timeout_s:
                    raise WorkerError(
                        f"{self._unplaced(waited)}. The build stops after --placement-timeout "
                        f"{self.placement_timeout_s:g} s: free resources on the cluster or lower --worker-memory, "
                        "then rerun the same command; the work shards committed so far are kept."
                    )
                if waited >= min(PLACEMENT_GRACE_S, self.placement_timeout_s / 2):
                    progress.waiting = self._unplaced(waited)
                    if on_progress:
                        on_progress(progress)
                continue
            unstarted_since = None
            [ref] = done
            call = calls.pop(ref)
            try:
                summary = ray.get(ref)
            except ActorUnavailableError:
                # the call may or may not have run, and the actor may come back: wait (bounded) until it is
                # back or dead before the shard is sent again, so two live writers never race for it
                since = call.since if call.since is not None else time.monotonic()
                waited = time.monotonic() - since
                if waited < UNREACHABLE_WAIT_S:
                    progress.waiting = f"waiting {waited:.0f} s for an unreachable worker" + (
                        f" (work shard {call.shard.work})" if call.shard else ""
                    )
                    if on_progress:
                        on_progress(progress)
                    time.sleep(min(1.0, UNREACHABLE_WAIT_S - waited) if waited else 0)
                    calls[call.actor.__ray_ready__.remote()] = _Call(call.actor, call.shard, since)
                    continue
                exc: BaseException = WorkerError(f"unreachable for {waited:.0f} s")
                summary = None
            except deaths as death:
                exc, summary = death, None
            progress.waiting = ""
            if summary is None:
                if call.shard is None:
                    progress.failed_starts += 1
                    failed_starts += 1
                    if getattr(exc, "actor_init_failed", False) or failed_starts >= self.max_attempts:
                        raise WorkerError(f"build workers cannot start ({failed_starts} tried): {exc}") from exc
                else:
                    progress.workers_lost += 1
                    retries.append(_Retry(self._retry(call.shard, exc, ledger)))  # next, on the first free worker
                fresh = self._replace(call.actor)
                calls[fresh.describe.remote()] = _Call(fresh)
                if on_progress:
                    on_progress(progress)
                continue
            if call.shard is None:
                self._check_node(summary)
                failed_starts = 0
                idle.append(call.actor)
                continue
            idle.append(call.actor)
            if call.since is not None:  # back: its call of the shard has ended, and its result is lost
                from pipeline.shards import discard

                discard(self.shards, call.shard.work, call.shard.token)
                progress.unreachable += 1
                retries.append(_Retry(_again(call.shard)))
            elif isinstance(summary, StorageFault):
                stored_badly(summary, call.shard, call.actor)
            elif isinstance(accepted := self._accept(summary, current), StorageFault):
                stored_badly(accepted, call.shard, call.actor)
            elif accepted:
                progress.add(summary)
            if on_progress:
                on_progress(progress)
        return progress

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
