"""Which clips validate a stage, chosen from the build's record, and reading only those samples.

A build's tars hold datasets in name order, and some datasets have no split at all (CelebV-HQ and HDTF
are entirely `unsplit`), so scanning tars for `val`/`test` clips can read whole datasets before the
first one turns up, on every rank at the start of every stage. The build already records everything
needed to choose without opening a tar: each item's `split` in its source manifests (`sources/*.parquet`,
the column the samples' json copy), and each committed sample's item, frame count and tar in its work
shard's parquet. The choice is made from those, in the build's tar order, so every rank makes the same
one; then only the tars that hold the chosen clips are opened, and in them only the chosen samples'
bytes are read (tar headers are walked with seeks, the other members' data skipped). The build may be a
local folder or an fsspec URL; a tar at a URL is read through fsspec with the same seeks.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.storage import Location, Store, open_file
from training.build_record import committed_shards, source_manifests
from training.config import ConfigError


@dataclass(frozen=True)
class Pick:
    """One chosen clip: the tar that holds it (a local Path, or its URL) and its sample key."""

    tar: Location
    key: str


@dataclass
class ReadCost:
    """What reading the chosen samples cost: the tars opened, in order, and the bytes tarfile read from them (a
    tar at a URL is fetched in fsspec's blocks, so its network bytes may be more)."""

    tars: list[Location] = field(default_factory=list)
    bytes: int = 0


def split_items(build_dir: Location, splits: Sequence[str]) -> pa.Array:
    """The item_ids whose `split` is one of `splits`, from the build's source manifests."""
    filesystem, manifests = source_manifests(
        build_dir, f"validation: the build's splits are unknown, so no {list(splits)} clip can be chosen"
    )
    wanted = pa.array(sorted(splits), pa.string())
    items = [
        pq.read_table(
            path, columns=["item_id", "split"], filters=pc.is_in(pc.field("split"), wanted), filesystem=filesystem
        )["item_id"]
        for path in manifests
    ]
    return pc.unique(pa.chunked_array(items, pa.string()).combine_chunks())


def pick_clips(build_dir: Location, splits: Sequence[str], *, span: int, count: int) -> list[Pick]:
    """The first `count` committed clips of `splits` with at least `span` frames, in the build's tar order
    (work shards by name, their tars in write order, samples in row order)."""
    if count == 0:
        return []
    items = split_items(build_dir, splits)
    picks: list[Pick] = []
    shards = Store.at(build_dir).child("shards")
    for stats, rows in committed_shards(build_dir, ["kind", "status", "tar", "key", "item_id", "frames"]):
        fit = pc.and_(
            pc.and_(pc.equal(rows["kind"], "sample"), pc.equal(rows["status"], "ok")),
            pc.and_(pc.greater(rows["frames"], 1), pc.greater_equal(rows["frames"], span)),
        )
        rows = rows.filter(pc.and_(fit, pc.is_in(rows["item_id"], items))).to_pylist()
        order = {name: index for index, name in enumerate(stats["tars"])}
        rows = [row for row in rows if Path(row["tar"]).name in order]  # only tars the stats file commits
        rows.sort(key=lambda row: order[Path(row["tar"]).name])  # stable: row order within a tar
        picks += [Pick(shards.location_of(Path(row["tar"]).name), row["key"]) for row in rows[: count - len(picks)]]
        if len(picks) == count:
            break
    return picks


class _CountingReader:
    """A seekable reader that adds every byte read to a ReadCost (tarfile seeks over the members it does not
    extract); for a local file or one at a URL alike."""

    def __init__(self, stream: IO[bytes], cost: ReadCost) -> None:
        self.stream = stream
        self.cost = cost

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.cost.bytes += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        return self.stream.tell()


def _sample_key(name: str) -> tuple[str, str]:
    """A member name's sample key and extension, split as webdataset splits them (at the first dot of the
    last path component)."""
    folder, _, leaf = name.rpartition("/")
    stem, _, extension = leaf.partition(".")
    return f"{folder}/{stem}" if folder else stem, extension


def read_picks(picks: Sequence[Pick], cost: ReadCost) -> dict[str, dict[str, bytes]]:
    """key -> {extension: bytes} of each pick, opening each tar once and stopping in it after its last pick."""
    by_tar: dict[Location, set[str]] = {}
    for pick in picks:
        by_tar.setdefault(pick.tar, set()).add(pick.key)
    samples: dict[str, dict[str, bytes]] = {}
    for tar, keys in by_tar.items():
        cost.tars.append(tar)
        try:
            with open_file(tar) as stream, tarfile.open(fileobj=_CountingReader(stream, cost), mode="r:") as archive:
                for member in archive:
                    key, extension = _sample_key(member.name)
                    if key not in keys:
                        if keys <= samples.keys():
                            break  # every pick of this tar is whole: the members of a sample are contiguous
                        continue
                    data = archive.extractfile(member)
                    if data is not None:
                        samples.setdefault(key, {})[extension] = data.read()
        except (OSError, tarfile.TarError) as error:
            raise ConfigError(f"validation: cannot read {tar}: {error}") from error
        missing = sorted(keys - samples.keys())
        if missing:
            raise ConfigError(
                f"validation: {tar} lacks the sample(s) {missing} its work shard's parquet places there: "
                "the tar changed after the build committed it; rebuild, or set validation.build_dir to another build"
            )
    return samples
