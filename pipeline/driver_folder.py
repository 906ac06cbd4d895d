"""The driver's own files of a build, on a local disk even when the build lives in an object store.

The driver writes build.json, the source manifests (sources/), excluded.parquet, plan.parquet and
manifest.parquet; pyarrow streams them row group by row group, and the plan is read back the same way,
which wants a local file. For a local `--out` they are written in it. For an object store the driver
works in a local folder of its own: at the start it downloads what the bucket holds of these files (a
resume, perhaps on another machine; the bucket is the record), and each file, once whole, is uploaded in
one go, in the order that makes it trusted (a scan's manifest before its problems file, the excluded rows
before the plan, since a file's presence says its step is done). The local folder goes when the build
ends. The work shards never pass through here: workers write them to the store (pipeline/shards.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.storage import Store

DRIVER_FILES = ("build.json", "excluded.parquet", "plan.parquet", "manifest.parquet")


@dataclass(frozen=True)
class DriverFolder:
    path: Path  # where the driver reads and writes its files
    store: Store  # the build folder they belong in

    @property
    def mirrored(self) -> bool:
        """True when `path` is a local copy of an object store's build folder."""
        return not self.store.local

    def download(self) -> None:
        """Fetches the driver's files the store holds (a resume's record); nothing to do for a local build."""
        if not self.mirrored:
            return
        wanted = [name for name in DRIVER_FILES if self.store.exists(name)]
        wanted += [f"sources/{name}" for name in self.store.child("sources").names()]
        for name in wanted:
            (self.path / name).parent.mkdir(parents=True, exist_ok=True)
            self.store.fs.get_file(f"{self.store.root}/{name}", str(self.path / name))

    def upload(self, *names: str) -> None:
        """Puts the whole local files `names` (relative, e.g. "sources/ffhq.parquet") into the store, in order;
        nothing to do for a local build."""
        if not self.mirrored:
            return
        for name in names:
            self.store.fs.put_file(str(self.path / name), f"{self.store.root}/{name}")


@contextmanager
def driver_folder(store: Store) -> Iterator[DriverFolder]:
    """The build folder itself when it is local; otherwise an empty local folder for the block (filled by
    `download` once the build holds the store's lock), deleted after it."""
    if store.local:
        yield DriverFolder(store.local_path, store)
        return
    with tempfile.TemporaryDirectory(prefix="rp-build-driver-") as tmp:
        yield DriverFolder(Path(tmp), store)
