"""One build per folder: a lock file in `--out` that names who is building it.

Two builds on one folder would delete each other's temporaries (a resume clears what a killed run left)
and race to commit the same work shards. So a build first creates `build.lock`, holding the host, pid
and start time of its driver; a second build finds it and is refused with that information. The lock
is created whole under a temporary name and then hard-linked into place, which fails if a lock exists
(on S3, one PUT with If-None-Match: *, which fails the same way): exactly one of two builds starting
together wins, and nobody reads half a lock.

The driver touches the lock every HEARTBEAT_S seconds while it runs and removes it when it ends, so a
lock left behind is one whose driver was killed (SIGKILL, a lost machine). Such a lock is stale, and
`--force-unlock` takes it over, when its process is gone on this host, or when it has had no heartbeat
for STALE_AFTER_S seconds (the only sign available for a driver on another host). A live lock is never
taken over.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from pipeline.storage import Store

LOCK_NAME = "build.lock"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0  # twenty missed heartbeats: a driver that busy would not be building


class FolderLocked(RuntimeError):
    """Another build holds the folder (or held it, and its lock is stale but --force-unlock was not given)."""


@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    started: str  # ISO 8601, UTC

    @classmethod
    def me(cls) -> LockHolder:
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(socket.gethostname(), os.getpid(), started)

    @classmethod
    def parse(cls, text: str) -> LockHolder | None:
        """Who a lock's text names, or None when it names nobody readable."""
        try:
            fields = json.loads(text)
            return cls(str(fields["host"]), int(fields["pid"]), str(fields["started"]))
        except (ValueError, TypeError, KeyError):
            return None

    def __str__(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}"


def _read(store: Store) -> tuple[LockHolder | None, float]:
    """(who holds the lock or None when unreadable, seconds since its last heartbeat); FileNotFoundError
    when there is no lock."""
    age = time.time() - store.modified(LOCK_NAME)
    return LockHolder.parse(store.read_text(LOCK_NAME)), age


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def stale_reason(holder: LockHolder | None, age: float, stale_after: float = STALE_AFTER_S) -> str | None:
    """Why a lock may be taken over, or None while its build may still run."""
    if holder is not None and holder.host == socket.gethostname() and not _alive(holder.pid):
        return f"process {holder.pid} is no longer running on this host"
    if age > stale_after:
        return f"its last heartbeat is {age:.0f} s old (a running build renews it every {HEARTBEAT_S:.0f} s)"
    return None


def _take_over(store: Store, holder: LockHolder | None) -> None:
    """Removes the stale lock of `holder`. Locally it is first renamed aside, so that of two builds taking
    it over at once the second gives back the lock the first made; an object store has no rename, and
    there two simultaneous --force-unlock runs are not told apart (the option says a person checked)."""
    if not store.local:
        store.remove(LOCK_NAME)
        return
    path = store.local_path / LOCK_NAME
    moved = path.with_name(f"{path.name}.taken-over.{os.getpid()}")
    with suppress(FileNotFoundError):
        os.replace(path, moved)
        if LockHolder.parse(moved.read_text()) != holder:
            with suppress(FileExistsError):  # another build took it over first: give its lock back
                os.link(moved, path)
        moved.unlink()


def acquire(out: Path | str | Store, force_unlock: bool = False, stale_after: float = STALE_AFTER_S) -> LockHolder:
    """Takes the lock of `out` (a folder or an object store's URL) for this process, or raises FolderLocked
    saying who holds it."""
    store = Store.at(out)
    path = store.url_of(LOCK_NAME)
    me = LockHolder.me()
    while not store.create(LOCK_NAME, json.dumps(asdict(me)).encode()):
        try:
            holder, age = _read(store)
        except FileNotFoundError:
            continue  # released meanwhile
        who = str(holder) if holder else "an unreadable lock"
        reason = stale_reason(holder, age, stale_after)
        if reason is None:
            also = " (--force-unlock takes over only a stale lock)" if force_unlock else ""
            raise FolderLocked(
                f"{store} is being built by another rp-data build: {who} (lock file {path}). Two builds on one "
                f"folder would delete each other's files: wait for it to end, or use another --out{also}."
            )
        if not force_unlock:
            raise FolderLocked(
                f"{store} is locked by a build that seems to have died: {who}; the lock is stale because "
                f"{reason}. Make sure no build runs on it, then rerun with --force-unlock to take it over "
                f"(lock file {path})."
            )
        _take_over(store, holder)
    return me


def release(out: Path | str | Store, holder: LockHolder) -> None:
    """Removes the lock if it still names `holder` (a build that took over a stale one keeps its own)."""
    store = Store.at(out)
    with suppress(FileNotFoundError):
        if _read(store)[0] == holder:
            store.remove(LOCK_NAME)


def _beat(store: Store, holder: LockHolder) -> None:
    """Renews the lock's age: its mtime here; on an object store the lock is written again, if still ours."""
    if store.local:
        os.utime(store.local_path / LOCK_NAME)
    elif _read(store)[0] == holder:
        store.write_text(LOCK_NAME, json.dumps(asdict(holder)))


@contextmanager
def build_lock(
    out: Path | str | Store, force_unlock: bool = False, stale_after: float = STALE_AFTER_S
) -> Iterator[LockHolder]:
    """Holds the lock of `out` for the block, renewing its heartbeat; released however the block ends."""
    store = Store.at(out)
    holder = acquire(store, force_unlock, stale_after)
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_S):
            with suppress(OSError):  # a storage hiccup misses one beat; the build itself reports real faults
                _beat(store, holder)

    beating = threading.Thread(target=heartbeat, name="build-lock-heartbeat", daemon=True)
    beating.start()
    try:
        yield holder
    finally:
        done.set()
        beating.join()
        release(store, holder)
