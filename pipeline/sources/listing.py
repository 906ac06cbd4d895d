"""The sizes of a dataset root's files, listed by Ray tasks over directory chunks instead of one `stat`
per item on the driver.

VGGFace2 alone is 3.3 M images: stat'ing each on the driver, one after the other, took longer than
anything else before a build's first worker started. A tree past `PARALLEL_ENTRIES` entries is listed
in parallel (each task `scandir`s its directories and stats their entries), and the adapters look their
media up in the listing; the adapters themselves still run in order, so the scan's rows, problems and
their order are those of the serial scan. Only the depth that the layout's media paths reach is listed
(a frame folder's thousands of images are never opened), and a path the listing does not cover (through
a folder it did not list) falls back to a `stat`.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from manifests.schema import DatasetSpec

PARALLEL_ENTRIES = 200_000  # a tree with more entries than this is listed by Ray tasks
DIRS_PER_TASK = 64  # directories a listing task takes
Sizes = dict[str, dict[str, int]]  # directory (relative, "" for the root) -> entry name -> size in bytes


def media_depth(spec: DatasetSpec) -> int:
    """How many path components the layout's media paths have at most: the folders above them are listed."""
    return max(entry.path.count("/") + 1 for entry in spec.layout.media.values())


@dataclass(frozen=True)
class Listing:
    """Entry sizes of the listed folders of one root, as `os.stat` would give them (symlinks followed)."""

    root: Path
    sizes: Sizes

    def size(self, rel_path: str) -> int | None:
        """The size of `rel_path`, None when it does not exist; a path the listing does not cover is stat'ed."""
        normal = os.path.normpath(rel_path)
        folder, name = os.path.split(normal)
        entries = self.sizes.get(folder) if not normal.startswith("..") and not os.path.isabs(normal) else None
        if entries is None:
            try:
                return os.stat(self.root / rel_path).st_size
            except OSError:
                return None
        return entries.get(name)


def _list_one(root: str, folder: str) -> tuple[dict[str, int], list[str]] | None:
    """The sizes of a folder's entries (those whose stat fails, such as broken links, are absent) and its
    subfolders (links to folders included, as a stat through them would follow them); None when the
    folder cannot be read, whose media are then stat'ed one by one, as in a serial scan."""
    sizes: dict[str, int] = {}
    children: list[str] = []
    try:
        with os.scandir(os.path.join(root, folder)) as entries:
            for entry in entries:
                try:
                    sizes[entry.name] = entry.stat().st_size
                    if entry.is_dir():
                        children.append(os.path.join(folder, entry.name) if folder else entry.name)
                except OSError:
                    continue
    except OSError:
        return None
    return sizes, children


def list_folders(root: str, folders: Sequence[tuple[str, int]]) -> Sizes:
    """Lists each (folder, levels) pair: the folder, and its subfolders down to `levels` levels in all."""
    sizes: Sizes = {}
    pending = list(folders)
    while pending:
        folder, levels = pending.pop()
        listed = _list_one(root, folder)
        if listed is None:
            continue
        sizes[folder], children = listed
        if levels > 1:
            pending.extend((child, levels - 1) for child in children)
    return sizes


class TreeLister:
    """Lists roots past `threshold` entries with Ray tasks: on the Ray already running in this process, else
    on the build's cluster at `address` (its nodes share the roots' filesystem, and list them in parallel),
    else on an embedded Ray; one it connected or started is shut down on exit, once for every root, so the
    build's runner then starts Ray with its workers' environment."""

    def __init__(self, threshold: int = PARALLEL_ENTRIES, address: str | None = None):
        self.threshold = threshold
        self.address = address
        self.listed = 0  # roots listed by tasks
        self._started = False

    def __enter__(self) -> TreeLister:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def list(self, root: Path, depth: int) -> Listing | None:
        """The listing of `root` down to `depth` path components; None when the tree holds no more than
        `threshold` entries (a serial scan's stats cost less than starting tasks).

        The driver walks the tree breadth first, reading names only, until it has seen `threshold`
        entries; then every folder it found is handed, in chunks, to tasks that stat the entries (the
        walked folders one level each, the rest of the tree below the folders not yet walked).
        """
        walked: list[str] = []
        frontier: deque[tuple[str, int]] = deque([("", depth)])
        seen = 0
        while frontier and seen <= self.threshold:
            folder, levels = frontier.popleft()
            walked.append(folder)
            try:
                with os.scandir(os.path.join(root, folder)) as entries:
                    for entry in entries:
                        seen += 1
                        if levels > 1 and entry.is_dir():
                            frontier.append((os.path.join(folder, entry.name) if folder else entry.name, levels - 1))
            except OSError:
                continue
        if seen <= self.threshold:
            return None
        self.listed += 1
        # tasks on other nodes have other working directories: they get the root as an absolute path
        return Listing(root, self._by_tasks(os.path.abspath(root), [(folder, 1) for folder in walked] + [*frontier]))

    def _by_tasks(self, root: str, work: list[tuple[str, int]]) -> Sizes:
        import ray

        if not ray.is_initialized():
            local = {"include_dashboard": False, "_node_ip_address": "127.0.0.1"}
            where = {"address": self.address} if self.address else local
            ray.init(**where, log_to_driver=False, logging_level="WARNING")
            self._started = True
        task = ray.remote(num_cpus=1)(list_folders)
        chunks = [work[k : k + DIRS_PER_TASK] for k in range(0, len(work), DIRS_PER_TASK)]
        sizes: Sizes = {}
        for part in ray.get([task.remote(root, chunk) for chunk in chunks]):
            sizes.update(part)
        return sizes
