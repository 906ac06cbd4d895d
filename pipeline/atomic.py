"""Writing a file so that a kill at any moment leaves the old file or the new one, never half of one.

Every file of a build (metadata, manifests, tars, stats) is written under a temporary name in its own
folder and renamed into place when complete: a rename within one filesystem is atomic, so a reader (or a
rerun) sees either nothing or a whole file. Temporaries are named `.<name>.<tag>.tmp`: hidden, told
apart per writer, and matched exactly by `is_temporary`, so a resume deletes what a killed run left and
nothing else. The tag is the writing process's pid, or for a work shard's files the token of the
dispatch that writes them (hex): pids repeat across nodes, and a shard may have a stale writer beside
the current one (pipeline/shards.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]+\.tmp$")


def temporary(path: Path, tag: str | None = None) -> Path:
    """The temporary name `path` is written under (beside it: the rename stays atomic), tagged with this
    process's pid or the given hex tag."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag or os.getpid()}.tmp")


def is_temporary(path: Path) -> bool:
    return bool(_TEMPORARY.match(Path(path).name))


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yields the temporary path to write; renames it over `path` on success, deletes it on any error."""
    tmp = temporary(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_bytes(path: Path, data: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def remove_stale(folder: Path) -> list[Path]:
    """Deletes the temporaries a killed run left in `folder` (not below it); returns what it deleted.

    Call it only when no writer of this folder runs (a build's driver, before it starts its workers).
    """
    if not Path(folder).is_dir():
        return []
    stale = sorted(p for p in Path(folder).iterdir() if is_temporary(p) and p.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
