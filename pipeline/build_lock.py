"""One build per folder: a lock file in `--out` that names who is building it.

Two builds on one folder would delete each other's temporaries (a resume clears what a killed run left)
and race to commit the same work shards. So a build first creates `build.lock`, holding the host, pid
and start time of its driver; a second build finds it and is refused with that information. The lock
is created whole under a temporary name and then hard-linked into place, which fails if a lock exists:
exactly one of two builds starting together wins, and nobody reads half a lock.

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

from pipeline import atomic

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

    def __str__(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.started}"


def _read(path: Path) -> tuple[LockHolder | None, float]:
    """(who holds the lock or None when unreadable, seconds since its last heartbeat); FileNotFoundError
    when there is no lock."""
    age = time.time() - path.stat().st_mtime
    try:
        fields = json.loads(path.read_text())
        return LockHolder(str(fields["host"]), int(fields["pid"]), str(fields["started"])), age
    except (ValueError, TypeError, KeyError):
        return None, age


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


def _create(path: Path, holder: LockHolder) -> bool:
    """Creates the lock naming `holder`; False if one exists."""
    tmp = atomic.temporary(path)
    tmp.write_text(json.dumps(asdict(holder)))
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def acquire(out: Path, force_unlock: bool = False, stale_after: float = STALE_AFTER_S) -> LockHolder:
    """Takes the lock of `out` for this process, or raises FolderLocked saying who holds it."""
    path = Path(out) / LOCK_NAME
    me = LockHolder.me()
    while not _create(path, me):
        try:
            holder, age = _read(path)
        except FileNotFoundError:
            continue  # released meanwhile
        who = str(holder) if holder else "an unreadable lock"
        reason = stale_reason(holder, age, stale_after)
        if reason is None:
            also = " (--force-unlock takes over only a stale lock)" if force_unlock else ""
            raise FolderLocked(
                f"{out} is being built by another rp-data build: {who} (lock file {path}). Two builds on one "
                f"folder would delete each other's files: wait for it to end, or use another --out{also}."
            )
        if not force_unlock:
            raise FolderLocked(
                f"{out} is locked by a build that seems to have died: {who}; the lock is stale because "
                f"{reason}. Make sure no build runs on it, then rerun with --force-unlock to take it over "
                f"(lock file {path})."
            )
        moved = path.with_name(f"{path.name}.taken-over.{os.getpid()}")
        with suppress(FileNotFoundError):
            os.replace(path, moved)
            if _read(moved)[0] != holder:  # another build took it over first: give its lock back
                with suppress(FileExistsError):
                    os.link(moved, path)
            moved.unlink()
    return me


def release(out: Path, holder: LockHolder) -> None:
    """Removes the lock if it still names `holder` (a build that took over a stale one keeps its own)."""
    path = Path(out) / LOCK_NAME
    with suppress(FileNotFoundError):
        if _read(path)[0] == holder:
            path.unlink()


@contextmanager
def build_lock(out: Path, force_unlock: bool = False, stale_after: float = STALE_AFTER_S) -> Iterator[LockHolder]:
    """Holds the lock of `out` for the block, renewing its heartbeat; released however the block ends."""
    holder = acquire(out, force_unlock, stale_after)
    path, done = Path(out) / LOCK_NAME, threading.Event()

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_S):
            with suppress(OSError):  # a storage hiccup misses one beat; the build itself reports real faults
                os.utime(path)

    beating = threading.Thread(target=heartbeat, name="build-lock-heartbeat", daemon=True)
    beating.start()
    try:
        yield holder
    finally:
        done.set()
        beating.join()
        release(out, holder)
