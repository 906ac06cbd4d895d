"""Writing a file so that a kill at any moment leaves the old file or the new one, never half of one.

Every file of a build (metadata, manifests, tars, stats) is written under a temporary name in its own
folder and renamed into place when complete: a rename within one filesystem is atomic, so a reader (or a
rerun) sees either nothing or a whole file. Temporaries are named `.<name>.<pid>.tmp`: hidden, told
apart per process (a rerun beside a worker orphaned by a kill), and matched exactly by `is_temporary`,
so a resume deletes what a killed run left and nothing else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_TEMPORARY = re.compile(r"^\..+\.\d+\.tmp$")


def temporary(path: Path) -> Path:
    """The temporary name this process writes `path` under (beside it: the rename stays atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


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
