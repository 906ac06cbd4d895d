"""Writing one work shard's outputs so that a crash never leaves a half-written file visible.

A work shard writes its tars (closed past a byte or sample cap), then its parquet rows, each under a
temporary name renamed when complete, and its stats file last: the stats file is the commit marker a
rerun looks for. Tar members carry a fixed mtime and owner, so equal samples give equal bytes.
"""

from __future__ import annotations

import errno
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.atomic import is_temporary, temporary, write_bytes

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


def stats_path(shard_dir: Path, work: str) -> Path:
    return shard_dir / f"{work}.stats.json"


def is_committed(shard_dir: Path, work: str) -> bool:
    return stats_path(shard_dir, work).exists()


@contextmanager
def _naming(path: Path) -> Iterator[None]:
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
    """The tars, parquet and stats file of one work shard (e.g. `vfhq-00003`)."""

    shard_dir: Path
    work: str
    max_bytes: int
    max_samples: int
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
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        for pattern in (f".{self.work}-[0-9][0-9].tar.*", f".{self.work}.parquet.*", f".{self.work}.stats.json.*"):
            for stale in self.shard_dir.glob(pattern):
                if is_temporary(stale):
                    stale.unlink(missing_ok=True)  # an earlier attempt of this shard, killed mid-write

    def _tmp(self, name: str) -> Path:
        return temporary(self.shard_dir / name)

    def _open_part(self) -> None:
        import webdataset as wds

        name = f"{self.work}-{len(self.tars):02d}.tar"
        self.tars.append(name)
        self._stream = open(self._tmp(name), "wb")  # noqa: SIM115 - closed in _close_part
        self._writer = wds.TarWriter(self._stream, user="realportrait", group="realportrait", mtime=0.0, encoder=False)
        self._part_bytes = self._part_samples = 0

    def _close_part(self) -> None:
        if self._writer is None:
            return
        name = self.tars[-1]
        with _naming(self._tmp(name)):
            self._writer.close()
            self._writer = self._stream = None
            self._tmp(name).replace(self.shard_dir / name)

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
        with _naming(self._tmp(self.tars[-1])):
            if self.simulate_full_disk:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self._writer.write({"__key__": key, **members})
        self._part_bytes += size
        self._part_samples += 1
        self.samples += 1
        self.bytes += size
        return f"{self.shard_dir.name}/{self.tars[-1]}"

    def commit(self, rows: list[dict[str, object]], stats: dict[str, object]) -> None:
        """Closes the last tar, writes the rows, then the stats file (the commit marker)."""
        self._close_part()
        table = pa.Table.from_pylist(rows, schema=MANIFEST_COLUMNS)
        parquet = io.BytesIO()
        pq.write_table(table, parquet)
        with _naming(self.shard_dir / f"{self.work}.parquet"):
            write_bytes(self.shard_dir / f"{self.work}.parquet", parquet.getvalue())
        stats = {"work": self.work, "tars": self.tars, "samples": self.samples, "bytes": self.bytes, **stats}
        with _naming(stats_path(self.shard_dir, self.work)):
            write_bytes(stats_path(self.shard_dir, self.work), json.dumps(stats, indent=1, sort_keys=True).encode())

    def abort(self) -> None:
        """Drops the tar being written; on a failing disk closing it may fail too, which changes nothing."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with suppress(OSError):
                writer.close()
            self._tmp(self.tars[-1]).unlink(missing_ok=True)
