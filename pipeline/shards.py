"""Writing one work shard's outputs so that neither a crash nor a stale writer leaves a file visible.

A worker stages a work shard: its tars (closed past a byte or sample cap), its parquet rows and its
stats file, each under a temporary name tagged with the token of the dispatch that writes it
(`.<name>.<token>.tmp`). Only the driver publishes, by renaming the staged files into place with the
stats file last: the stats file is the commit record a rerun and every reader trust. The driver
publishes a dispatch's files only while that dispatch is the shard's current one and the shard is not
committed yet, so a stale worker (one whose node stalled, whose shard was sent again meanwhile, and
which came back) can stage what it likes: its files never become final, and are deleted when the driver
refuses them or publishes the current dispatch. Nothing a worker does deletes another dispatch's files.
On an object store, staged files are staged objects and publishing copies them into place server-side,
the stats file last (pipeline/storage.py); the fence is the same. Tar members carry a fixed mtime and
owner, so equal samples give equal bytes.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.atomic import temporary
from pipeline.recovery import MARKER_SUFFIX
from pipeline.storage import Store

if TYPE_CHECKING:  # webdataset imports torch (~0.5 GiB): only workers, which write tars, load it
    import webdataset as wds

MANIFEST_COLUMNS = pa.schema(
    [
        ("item_id", pa.string()),
        ("dataset", pa.string()),
        ("kind", pa.string()),  # source | sample | annotation
        ("status", pa.string()),  # ok | filtered | failed
        ("reason", pa.string()),
        ("error_class", pa.string()),
        ("message", pa.string()),
        ("shard", pa.string()),
        ("tar", pa.string()),
        ("key", pa.string()),
        ("frames", pa.int64()),
        ("face_px", pa.float64()),
        ("blur", pa.float64()),
        ("yaw", pa.float64()),
        ("pitch", pa.float64()),
        ("roll", pa.float64()),
        ("seconds_decode", pa.float64()),
        ("seconds_faces", pa.float64()),
        ("seconds_encode", pa.float64()),
        ("seconds_total", pa.float64()),
        ("attempt", pa.int64()),
        # what a source video is (pipeline.video_file.VideoFile.properties): the report lists sources by it
        ("media_codec", pa.string()),
        ("media_format", pa.string()),
        ("media_matrix", pa.string()),
        ("media_range", pa.string()),
        ("media_rotation", pa.int64()),
        ("media_vfr", pa.bool_()),
    ]
)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def stats_name(work: str) -> str:
    return f"{work}.stats.json"


def stats_path(shard_dir: Path, work: str) -> Path:
    return Path(shard_dir) / stats_name(work)


def is_committed(shards: Path | Store, work: str) -> bool:
    return Store.at(shards).exists(stats_name(work))


def _uncommitted(work: str) -> re.Pattern[str]:
    """A work shard's files that readers never trust: staged files and markers of any dispatch."""
    outputs = r"(-\d+\.tar|\.parquet|\.stats\.json)\.[0-9a-f]+\.tmp"
    marker = rf"\.[0-9a-f]+{re.escape(MARKER_SUFFIX)}(\.[0-9a-f]+\.tmp)?"
    return re.compile(rf"^\.{re.escape(work)}({outputs}|{marker})$")


def discard(shards: Path | Store, work: str, token: str) -> None:
    """Deletes what one dispatch of `work` staged, and its marker: a stale or failed attempt's files."""
    store = Store.at(shards)
    pattern, tag = _uncommitted(work), f".{token}."
    for name in store.names(f".{work}*"):
        if pattern.match(name) and tag in name:
            store.remove(name)


def publish(shards: Path | Store, work: str, token: str, names: list[str]) -> None:
    """The commit of `work` by its dispatch `token` (the driver's step, for the current dispatch only):
    parts an earlier attempt published that this one does not list go, the staged files are put in place
    in order (pipeline/storage.py: renamed here, copied server-side on an object store; the stats file,
    last, makes the shard committed), and every other dispatch's staged files and markers go."""
    store = Store.at(shards)
    part = re.compile(rf"^{re.escape(work)}-\d+\.tar$")
    for name in store.names(f"{work}-*.tar"):
        if part.match(name) and name not in names:
            store.remove(name)
    for name in names:
        with _naming(store.url_of(name)):
            store.rename(temporary(Path(name), token).name, name)
    pattern = _uncommitted(work)
    for name in store.names(f".{work}*"):
        if pattern.match(name):
            store.remove(name)


def publish_if_current(shards: Path | Store, work: str, token: str, current: str | None, names: list[str]) -> bool:
    """The driver's fence: publishes what dispatch `token` staged only if it is `current` (the shard's
    dispatch in flight) and the shard is uncommitted; otherwise it is a stale worker's late commit,
    refused, and its files deleted. A failing publish raises its OSError, its files deleted first."""
    if token != current or is_committed(shards, work):
        discard(shards, work, token)
        return False
    try:
        publish(shards, work, token, names)
    except OSError:
        discard(shards, work, token)
        raise
    return True


@contextmanager
def _naming(path: Path | str) -> Iterator[None]:
    """An OSError of a write names no file (ENOSPC on a stream): give it the file being written, so the
    build's message says where storage failed."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise


@dataclass
class WorkShardWriter:
    """The tars, parquet and stats file of one work shard (e.g. `vfhq-00003`), staged in `shards` (a local
    folder or an object store's, pipeline/storage.py)."""

    shards: Path | Store
    work: str
    max_bytes: int
    max_samples: int
    token: str = field(default_factory=lambda: uuid.uuid4().hex)  # the dispatch writing it: names its temporaries
    tars: list[str] = field(default_factory=list)
    samples: int = 0
    bytes: int = 0
    _writer: wds.TarWriter | None = None
    _stream: io.BufferedWriter | None = None
    _part_bytes: int = 0
    _part_samples: int = 0
    # test-only: the disk is full for this writer (RP_TEST_DISK_FULL, pipeline/runner.py)
    simulate_full_disk: bool = False

    def __post_init__(self) -> None:
        self.store = Store.at(self.shards)
        self.store.make()

    def _tmp(self, name: str) -> str:
        """The staged name of the final file `name`."""
        return temporary(Path(name), self.token).name

    def _open_part(self) -> None:
        import webdataset as wds

        name = f"{self.work}-{len(self.tars):02d}.tar"
        self.tars.append(name)
        self._stream = self.store.open_write(self._tmp(name))
        self._writer = wds.TarWriter(self._stream, user="realportrait", group="realportrait", mtime=0.0, encoder=False)
        self._part_bytes = self._part_samples = 0

    def _close_part(self) -> None:
        if self._writer is None:
            return
        with _naming(self.store.url_of(self._tmp(self.tars[-1]))):
            self._writer.close()
            self._writer = self._stream = None

    def add(self, key: str, members: dict[str, bytes]) -> str:
        """Adds one sample; returns the tar (relative to the build directory) that holds it."""
        size = sum(len(value) for value in members.values())
        if self._writer is not None and (
            self._part_bytes + size > self.max_bytes or self._part_samples >= self.max_samples
        ):
            self._close_part()
        if self._writer is None:
            self._open_part()
        assert self._writer is not None
        with _naming(self.store.url_of(self._tmp(self.tars[-1]))):
            if self.simulate_full_disk:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self._writer.write({"__key__": key, **members})
        self._part_bytes += size
        self._part_samples += 1
        self.samples += 1
        self.bytes += size
        return f"shards/{self.tars[-1]}"

    def stage(self, rows: list[dict[str, object]], stats: dict[str, object]) -> list[str]:
        """Closes the last tar, stages the rows and the stats file; returns the names to publish, in order."""
        self._close_part()
        table = pa.Table.from_pylist(rows, schema=MANIFEST_COLUMNS)
        parquet = io.BytesIO()
        pq.write_table(table, parquet)
        stats = {"work": self.work, "tars": self.tars, "samples": self.samples, "bytes": self.bytes, **stats}
        names = [*self.tars, f"{self.work}.parquet", stats_name(self.work)]
        for name, data in zip(
            names[-2:], [parquet.getvalue(), json.dumps(stats, indent=1, sort_keys=True).encode()], strict=True
        ):
            with _naming(self.store.url_of(self._tmp(name))), self.store.open_write(self._tmp(name)) as stream:
                stream.write(data)
        return names

    def commit(self, rows: list[dict[str, object]], stats: dict[str, object]) -> None:
        """Stages and publishes at once: for a writer that is the shard's only one (no driver to fence)."""
        publish(self.store, self.work, self.token, self.stage(rows, stats))

    def abort(self) -> None:
        """Drops what this dispatch staged and its marker; on a failing disk closing the tar may fail too."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with suppress(OSError):
                writer.close()
        with suppress(OSError):
            discard(self.store, self.work, self.token)
