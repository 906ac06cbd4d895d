"""What the driver does when a build worker dies: find where it died, and decide the shard's retry.

A worker process can vanish at any instant (the OOM killer, a segfault in a native library, a lost
node), and no exception handler runs when it does. So a worker keeps a marker file in the shard
directory that says where it is in the shard. The marker is written when the shard starts, again before
each item (naming the item), and again before the commit, and it is removed once the shard is committed.
Each write goes to a temporary name that is then renamed, so a reader sees the old marker or the new
one, never half of one. The directory lies on the storage every node shares (a shared filesystem or an
object store), so the marker outlives the worker and its node, and the driver can read it. Each dispatch
of a work shard carries a fresh token, and the marker and its temporary are named by it: a stale worker
of an earlier dispatch still running (a node that stalled, then came back) writes its own marker and
never the current one's, and a marker of an earlier run or attempt blames nobody.

Where the worker died decides what the death is held against:
- in an item: the item. An item whose worker died `max_attempts` times is skipped by the next retry
  of its shard. The retry records it as failed (`worker_died`) and builds every other item.
- in the shard but in no item (starting it, between items, committing): the shard. A shard whose
  worker keeps dying there has nothing to set aside, so after `max_attempts` such deaths the build
  stops with an error saying so.
- before the shard started (no marker of this dispatch): the actor was dead before the shard got
  there, for instance an idle actor on a node that was lost. That is no fault of the shard. A lost
  node can take down every idle actor at once, so such deaths are allowed `max_attempts` plus the
  number of workers before the build stops.
"""

from __future__ import annotations

import errno
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.storage import Store

MARKER_SUFFIX = ".current-item.json"


class WorkerError(RuntimeError):
    """Build workers that cannot run: they do not fit a node, cannot start, or keep dying where no item
    can be blamed (retrying more would not help)."""


class StorageError(RuntimeError):
    """A work shard that could not be stored on any of its attempts (a full disk, an NFS error): the build
    stops, with what failed and where; the shards committed so far stay, so a rerun resumes."""


@dataclass(frozen=True)
class StorageFault:
    """Why one attempt of a work shard could not store its outputs: an OSError while writing or
    committing them. A worker returns it instead of raising, so the driver sees it as a failed attempt
    (retried on another worker) and never as a crash with a traceback."""

    work: str
    error: str  # the errno's name and text, e.g. "ENOSPC (No space left on device)"
    path: str  # the file being written, or "" when the OS did not say

    @classmethod
    def of(cls, work: str, exc: OSError) -> StorageFault:
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        return cls(work, f"{name} ({exc.strerror or exc})", str(exc.filename or ""))

    def stop(self, attempts: int) -> StorageError:
        """The build's stop when this was the last allowed attempt."""
        where = f" at {self.path}" if self.path else ""
        return StorageError(
            f"work shard {self.work} could not be stored on any of its {attempts} attempt(s) (--max-attempts); "
            f"the last failed with {self.error}{where}. Free space or repair the storage, then rerun the same "
            "command: the work shards already committed are kept."
        )


@dataclass(frozen=True)
class DeathSite:
    """Where in its work shard a worker died: `started` is False when the shard never began."""

    started: bool
    item_id: str | None = None


def marker_name(work: str, token: str) -> str:
    return f".{work}.{token}{MARKER_SUFFIX}"


def marker_path(shard_dir: Path, work: str, token: str) -> Path:
    return Path(shard_dir) / marker_name(work, token)


def mark(shards: Path | Store, work: str, token: str, item_id: str | None) -> None:
    """Says where this worker is in the shard: at `item_id`, or in the shard but in no item (None); and
    which process it is (`pid`, to find the worker on its node when it hangs or to stage its loss). The
    marker is written whole (a rename here, one PUT on an object store) under this dispatch's name."""
    record = json.dumps({"work": work, "token": token, "item_id": item_id, "pid": os.getpid()})
    store = Store.at(shards)
    if store.local:  # its temporary carries the token too: a pid repeats across nodes
        path = store.local_path / marker_name(work, token)
        tmp = path.with_name(f"{path.name}.{token}.tmp")
        tmp.write_text(record)
        os.replace(tmp, path)
    else:
        store.write_text(marker_name(work, token), record)


def death_site(shards: Path | Store, work: str, token: str) -> DeathSite:
    """Where the dispatch `token` of `work` was when its worker died, from the marker it left."""
    try:
        marker = json.loads(Store.at(shards).read_text(marker_name(work, token)))
    except (OSError, ValueError):
        return DeathSite(started=False)
    if not isinstance(marker, dict) or marker.get("token") != token or marker.get("work") != work:
        return DeathSite(started=False)
    item_id = marker.get("item_id")
    return DeathSite(started=True, item_id=item_id if isinstance(item_id, str) else None)


def death_message(exc: BaseException) -> str:
    """Ray's account of a death on one line, for the manifest. It keeps why the process ended (exit
    type and detail) and where (pid and node), and drops the actor ids and troubleshooting advice."""
    lines = str(exc).splitlines()
    facts = dict(line.strip().partition(": ")[::2] for line in lines if line.startswith("\t"))
    why = " ".join(" ".join(line for line in lines[1:] if not line.startswith("\t")).split()) or lines[0]
    why = why.split(" Some common causes")[0]
    where = ", ".join(f"{key} {facts[key]}" for key in ("pid", "ip") if key in facts)
    return f"{why} ({where})" if where else why


@dataclass
class DeathLedger:
    """Worker deaths so far in one run: by item, by work shard (no item to blame), and before a shard
    started (the actor was dead already). `workers` is how many idle actors one lost node can take."""

    max_attempts: int
    workers: int
    items: Counter[str] = field(default_factory=Counter)
    shards: Counter[str] = field(default_factory=Counter)
    unstarted: Counter[str] = field(default_factory=Counter)
    last: dict[str, str] = field(default_factory=dict)  # item_id -> Ray's message for its last death

    def record(self, work: str, site: DeathSite, exc: BaseException) -> None:
        if site.item_id is not None:
            self.items[site.item_id] += 1
            self.last[site.item_id] = death_message(exc)
            return
        counter, limit = (
            (self.shards, self.max_attempts) if site.started else (self.unstarted, self.max_attempts + self.workers)
        )
        counter[work] += 1
        if counter[work] >= limit:
            where = "outside any item (starting or committing it)" if site.started else "before it could start it"
            raise WorkerError(
                f"work shard {work}: its worker died {counter[work]} times {where}, so no item can be set "
                f"aside. Last death: {death_message(exc)}. Rerunning the same command resumes the build."
            )

    def isolated(self, item_ids: list[str]) -> dict[str, str]:
        """Items of a shard to skip on its retry, each with the message of its failed manifest row."""
        return {
            item_id: (
                f"its worker died on all {self.items[item_id]} attempts (out of memory, a crash or a lost "
                f"node; see --worker-memory); the last death: {self.last[item_id]}"
            )
            for item_id in item_ids
            if self.items[item_id] >= self.max_attempts
        }
