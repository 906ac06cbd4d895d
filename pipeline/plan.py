"""The plan of a build, made and read in a stream: the driver never holds every source row.

A build's scan can hold millions of rows (VGGFace2 alone has 3.3 M images), so the plan is made in
passes over the scan parquet, each holding a bounded slice:
1. the keys (dataset, item_id, modality, media path: a few dozen bytes a row) give every item its rank
   in (dataset, media file, item_id) order (an image's own id stands for its file), hence its work
   shard: a dataset's items cut every N, a video's clips kept together where they fit in one shard;
2. full rows are spread, batch by batch, over temporary bucket files of consecutive ranks;
3. each bucket is sorted and appended to plan.parquet.
plan.parquet thus holds every planned source row, in work-shard order, with its `work`. Pending work
shards are produced lazily from it, one row group at a time, so the driver holds only the rows of the
shards in flight. Its existence marks planning as done: it is renamed into place last.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from manifests.schema import PipelineDefaults
from pipeline.atomic import replacing, temporary
from pipeline.config import BuildConfig
from pipeline.runner import WorkShard
from pipeline.shards import MANIFEST_COLUMNS
from pipeline.sources.scan import MANIFEST_SCHEMA as SCAN_SCHEMA
from pipeline.storage import Store

PLAN_SCHEMA = pa.schema([pa.field("work", pa.string()), *SCAN_SCHEMA])
BATCH_ROWS = 65_536  # scan rows read at a time
BUCKET_ROWS = 200_000  # ranks per bucket file: the most full rows held while sorting
PLAN_ROW_GROUP = 10_000  # plan rows per row group: the unit a resume reads or skips
WORK_NAME = re.compile(r"^(?P<dataset>.+)-(?P<index>\d{5,})(?:-r(?P<retry>\d+))?$")


@dataclass(frozen=True)
class Exclusion:
    """Items held out of every training shard (the evaluation split's videos and identities)."""

    youtube_ids: frozenset[str]
    identities: frozenset[str]
    note: str  # the manifest's message for them, e.g. "held out by manifests/splits/x.json"

    def mask(self, batch: pa.RecordBatch) -> pa.Array:
        hit = pc.or_(
            pc.is_in(batch["youtube_id"], pa.array(sorted(self.youtube_ids), pa.string())),
            pc.is_in(batch["identity"], pa.array(sorted(self.identities), pa.string())),
        )
        return pc.fill_null(hit, False)


def work_name(dataset: str, index: int) -> str:
    return f"{dataset}-{index:05d}"


# -- making the plan -----------------------------------------------------------------------------------


@dataclass
class _Ranks:
    """Where each scanned row goes: its rank in plan order (-1: excluded), and the work shards."""

    rank: np.ndarray  # by global scan position (files in order, rows in order)
    work: np.ndarray  # by rank: the index in `names` of its work shard
    names: list[str]  # the work shards, in plan order


def _rank(
    scans: Sequence[Path], cfg: BuildConfig, exclusion: Exclusion | None, excluded: pq.ParquetWriter, batch_rows: int
) -> _Ranks:
    """Pass 1: reads only the key columns; writes the excluded items' manifest rows as it goes.

    A video's items are ordered by their media file, then item_id, so the clips CelebV-HQ and HDTF cut
    from one raw video lie together and land on one work shard (whose worker demuxes the file once).
    """
    columns = ["item_id", "dataset", "modality", "media_path"] + (["youtube_id", "identity"] if exclusion else [])
    keys, offset = [], 0
    for path in scans:
        source = pq.ParquetFile(path)
        for batch in source.iter_batches(batch_size=batch_rows, columns=columns):
            position = pa.array(np.arange(offset, offset + batch.num_rows, dtype=np.int64))
            offset += batch.num_rows
            table = pa.Table.from_batches([batch]).append_column("position", position)
            if exclusion is not None:
                hit = exclusion.mask(batch)
                excluded.write_table(_excluded_rows(table.filter(hit), exclusion.note))
                table = table.filter(pc.invert(hit))
            # an image is its own file: its group is its item_id, which keeps images in item_id order
            image = pc.equal(table["modality"], "image")
            group = pc.if_else(image, table["item_id"], table["media_path"])
            keys.append(
                pa.table(
                    {
                        "dataset": table["dataset"],
                        "group": group,
                        "item_id": table["item_id"],
                        "image": image,
                        "position": table["position"],
                    }
                )
            )
    rank = np.full(offset, -1, dtype=np.int64)
    if not keys:
        return _Ranks(rank, np.zeros(0, dtype=np.int64), [])
    table = pa.concat_tables(keys)
    del keys
    order = pc.sort_indices(
        table, sort_keys=[("dataset", "ascending"), ("group", "ascending"), ("item_id", "ascending")]
    )
    table = table.take(order).drop_columns(["item_id"])
    del order
    rank[table["position"].to_numpy()] = np.arange(len(table), dtype=np.int64)
    counts = table.group_by("dataset").aggregate([("image", "sum"), ("image", "count")]).to_pylist()
    work, names, first = np.zeros(len(table), dtype=np.int64), [], 0
    for row in sorted(counts, key=lambda r: r["dataset"]):
        rows = row["image_count"]
        per = cfg.images_per_shard if row["image_sum"] == rows else cfg.videos_per_shard
        groups = table["group"].slice(first, rows).combine_chunks()
        shard = _shard_of_rows(_run_lengths(groups), per)
        work[first : first + rows] = len(names) + shard
        names.extend(work_name(row["dataset"], k) for k in range(int(shard[-1]) + 1))
        first += rows
    return _Ranks(rank, work, names)


def _run_lengths(values: pa.Array) -> np.ndarray:
    """The lengths of the runs of equal consecutive values (a sorted column's groups)."""
    if len(values) < 2:
        return np.ones(len(values), dtype=np.int64)
    changed = pc.not_equal(values.slice(1), values.slice(0, len(values) - 1)).to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.flatnonzero(changed) + 1, [len(values)]])
    return np.diff(starts)


def _shard_of_rows(groups: np.ndarray, per: int) -> np.ndarray:
    """The work shard (0, 1, ...) of each row of consecutive groups: shards of `per` rows, where a group
    that would straddle a boundary starts the next shard instead (when it fits in one), so the clips of
    one raw video share a shard wherever possible. Groups of one row are simply cut every `per`."""
    rows = int(groups.sum())
    if len(groups) == rows:
        return np.arange(rows, dtype=np.int64) // per
    start_shard, start_fill = np.zeros(len(groups), dtype=np.int64), np.zeros(len(groups), dtype=np.int64)
    shard = fill = 0
    for k, size in enumerate(groups.tolist()):
        if fill and fill + size > per:
            shard, fill = shard + 1, 0
        start_shard[k], start_fill[k] = shard, fill
        shard, fill = shard + (fill + size) // per, (fill + size) % per
    within = np.arange(rows, dtype=np.int64) - np.repeat(np.cumsum(groups) - groups, groups)
    return np.repeat(start_shard, groups) + (np.repeat(start_fill, groups) + within) // per


def _excluded_rows(rows: pa.Table, note: str) -> pa.Table:
    count = len(rows)
    table = pa.table(
        {
            "item_id": rows["item_id"],
            "dataset": rows["dataset"],
            "kind": pa.array(["source"] * count, pa.string()),
            "status": pa.array(["filtered"] * count, pa.string()),
            "reason": pa.array(["excluded_split"] * count, pa.string()),
            "message": pa.array([note] * count, pa.string()),
            "attempt": pa.array(np.zeros(count, dtype=np.int64)),
        }
    )
    return _conform(table, MANIFEST_COLUMNS)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with every column of `schema` (nulls where absent), in its order and types."""
    columns = [
        table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type) for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def _works(ranks: np.ndarray, plan: _Ranks) -> pa.Array:
    """The work shard of each rank."""
    return pa.array(plan.names, pa.string()).take(pa.array(plan.work[ranks]))


def make_plan(
    scans: Sequence[Path],
    out: Path,
    cfg: BuildConfig,
    exclusion: Exclusion | None = None,
    *,
    batch_rows: int = BATCH_ROWS,
    bucket_rows: int = BUCKET_ROWS,
) -> None:
    """Writes out/excluded.parquet and then out/plan.parquet (the marker that planning is done).

    Deterministic: the same scans and config give the same plan, whatever the batch and bucket sizes
    (which bound the memory: `bucket_rows` full rows are sorted at a time).
    """
    with replacing(out / "excluded.parquet") as tmp, pq.ParquetWriter(tmp, MANIFEST_COLUMNS) as excluded:
        ranks = _rank(scans, cfg, exclusion, excluded, batch_rows)
    buckets: dict[int, Path] = {}
    try:
        _spread(scans, ranks, out, buckets, batch_rows, bucket_rows)
        with replacing(out / "plan.parquet") as plan_tmp, pq.ParquetWriter(plan_tmp, PLAN_SCHEMA) as plan:
            for bucket in sorted(buckets):
                rows = pq.read_table(buckets[bucket])
                rows = rows.take(pc.sort_indices(rows["_rank"]))
                rows = rows.append_column("work", _works(rows["_rank"].to_numpy(), ranks))
                plan.write_table(rows.select(PLAN_SCHEMA.names).cast(PLAN_SCHEMA), row_group_size=PLAN_ROW_GROUP)
                buckets.pop(bucket).unlink()
    finally:
        for path in buckets.values():
            path.unlink(missing_ok=True)


def _spread(
    scans: Sequence[Path], ranks: _Ranks, out: Path, buckets: dict[int, Path], batch_rows: int, bucket_rows: int
) -> None:
    """Pass 2: every planned row into the bucket file of its rank (temporaries, removed by the caller)."""
    schema = SCAN_SCHEMA.append(pa.field("_rank", pa.int64()))
    writers: dict[int, pq.ParquetWriter] = {}
    offset = 0
    try:
        for path in scans:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
                rank = ranks.rank[offset : offset + batch.num_rows]
                offset += batch.num_rows
                table = pa.Table.from_batches([batch]).cast(SCAN_SCHEMA).append_column("_rank", pa.array(rank))
                bucket = rank // bucket_rows
                for b in np.unique(bucket[rank >= 0]).tolist():
                    if b not in writers:
                        buckets[b] = temporary(out / f"plan-bucket-{b:05d}.parquet")
                        writers[b] = pq.ParquetWriter(buckets[b], schema)
                    writers[b].write_table(table.filter(pa.array((bucket == b) & (rank >= 0))))
    finally:
        for writer in writers.values():
            writer.close()


# -- reading it: the work shards still to build ----------------------------------------------------------


def _values(column: pa.ChunkedArray) -> list[object]:
    """`column.to_pylist()`, an order of magnitude faster for list columns (boxes, landmarks): arrow
    converts those value by value, which made the driver spend ~35 us per row."""
    array = column.combine_chunks()
    if array.null_count == len(array):
        return [None] * len(array)
    if pa.types.is_list(array.type):
        values = array.values.to_numpy(zero_copy_only=False).tolist()
        bounds = array.offsets.to_numpy().tolist()
        lists = [values[start:stop] for start, stop in itertools.pairwise(bounds)]
    elif pa.types.is_string(array.type) or not array.null_count:
        return array.to_numpy(zero_copy_only=False).tolist()
    else:
        lists = array.fill_null(pa.scalar(False if pa.types.is_boolean(array.type) else 0, array.type)).to_pylist()
    if array.null_count:
        valid = array.is_valid().to_numpy(zero_copy_only=False).tolist()
        lists = [value if ok else None for value, ok in zip(lists, valid, strict=True)]
    return lists


def rows_of(table: pa.Table) -> list[dict[str, object]]:
    """The table's rows as dicts, equal to `table.to_pylist()`."""
    names = table.column_names  # a property that builds a new list: read it once
    columns = [_values(table[name]) for name in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def committed_works(shards: Path | Store) -> set[str]:
    """Work shards whose stats file (the commit marker) exists."""
    suffix = ".stats.json"
    return {name[: -len(suffix)] for name in Store.at(shards).names(f"*{suffix}")}


Selector = Callable[[pa.Table], pa.Array]  # (work, item_id) columns of a row group -> rows to build


class PendingShards:
    """The work shards a run builds, produced lazily from plan.parquet in plan order.

    `len()` is known before the first shard is made (for progress and the worker count); iterating
    reads the plan one row group at a time and holds only the rows of the shard being assembled, so
    a runner that pulls a shard when a worker frees up keeps the driver's memory bounded. Each
    iteration starts afresh from the file.
    """

    def __init__(
        self,
        plan: Path,
        defaults: Mapping[str, PipelineDefaults],
        select: Selector,
        attempts: Mapping[str, int] | None = None,
    ):
        self.plan = Path(plan)
        self._defaults = {name: d.model_dump(mode="json") for name, d in defaults.items()}
        self._select = select
        self._attempts = attempts  # item_id -> attempt of its latest failed row, when retrying
        self.works = self._count()

    def _selected(self) -> Iterator[tuple[int, pa.Table, pa.Array]]:
        """(row group, its work and item_id columns, the rows to build) for row groups with any."""
        source = pq.ParquetFile(self.plan)
        for group in range(source.num_row_groups):
            keys = source.read_row_group(group, columns=["work", "item_id"])
            mask = self._select(keys)
            if pc.any(mask).as_py():
                yield group, keys, mask

    def _count(self) -> int:
        works: set[str] = set()
        for _, keys, mask in self._selected():
            works.update(pc.unique(keys["work"].filter(mask)).to_pylist())
        return len(works)

    def __len__(self) -> int:
        return self.works

    def __iter__(self) -> Iterator[WorkShard]:
        source = pq.ParquetFile(self.plan)
        work, rows = None, []
        for group, _, mask in self._selected():
            for row in rows_of(source.read_row_group(group).filter(mask)):
                if row["work"] != work:
                    if rows:
                        yield self._shard(work, rows)
                    work, rows = row["work"], []
                rows.append(row)
        if rows:
            yield self._shard(work, rows)

    def _shard(self, work: str, rows: list[dict[str, object]]) -> WorkShard:
        for row in rows:
            del row["work"]
        dataset, root = str(rows[0]["dataset"]), str(rows[0]["root"])
        if self._attempts is None:
            return WorkShard(work, dataset, root, self._defaults[dataset], rows)
        attempt = max(self._attempts[str(row["item_id"])] for row in rows) + 1
        return WorkShard(f"{work}-r{attempt}", dataset, root, self._defaults[dataset], rows, attempt)


def unbuilt_shards(
    out: Path, defaults: Mapping[str, PipelineDefaults], shards: Path | Store | None = None
) -> PendingShards:
    """Every planned work shard without its commit marker (`shards`: where they are, out/shards unless said)."""
    done = pa.array(sorted(committed_works(shards or Path(out) / "shards")), pa.string())
    return PendingShards(Path(out) / "plan.parquet", defaults, lambda rows: pc.invert(pc.is_in(rows["work"], done)))


def retry_shards(
    out: Path, defaults: Mapping[str, PipelineDefaults], shards: Path | Store | None = None
) -> PendingShards:
    """One retry shard (`<work>-r<attempt>`) per work shard with items whose latest attempt failed."""
    attempts = failed_items(shards or Path(out) / "shards")
    failed = pa.array(sorted(attempts), pa.string())
    return PendingShards(Path(out) / "plan.parquet", defaults, lambda rows: pc.is_in(rows["item_id"], failed), attempts)


def committed_parquets(shards: Path | Store) -> list[str]:
    """The rows files of committed work shards, by name, in name order."""
    return [f"{work}.parquet" for work in sorted(committed_works(shards))]


def failed_items(shards: Path | Store) -> dict[str, int]:
    """item_id -> attempt, for source items whose latest attempt failed.

    Reads only rows about failed items: the failed source rows (a filter pushed down to the parquet
    reader, which skips row groups by their statistics), then, of those items, the source rows of later
    attempts (retry shards only: first builds have attempt 0), which may have succeeded since.
    """
    store = Store.at(shards)
    names = committed_parquets(store)
    if not names:
        return {}
    filesystem, paths = store.arrow(names)
    rows = ds.dataset(paths, schema=MANIFEST_COLUMNS, format="parquet", filesystem=filesystem)
    source = pc.field("kind") == "source"
    failed = rows.to_table(columns=["item_id", "attempt"], filter=source & (pc.field("status") == "failed"))
    attempts: dict[str, int] = {}
    for item_id, attempt in zip(failed["item_id"].to_pylist(), failed["attempt"].to_pylist(), strict=True):
        attempts[item_id] = max(attempt, attempts.get(item_id, 0))
    if not attempts:
        return {}
    ids = pa.array(sorted(attempts), pa.string())
    later = rows.to_table(
        columns=["item_id", "attempt"], filter=source & (pc.field("attempt") > 0) & pc.field("item_id").isin(ids)
    )
    latest = dict(attempts)
    for item_id, attempt in zip(later["item_id"].to_pylist(), later["attempt"].to_pylist(), strict=True):
        latest[item_id] = max(latest[item_id], attempt)
    return {item_id: attempt for item_id, attempt in attempts.items() if latest[item_id] == attempt}


def planned_works(plan: Path) -> int:
    """How many work shards the plan has (read one row group's `work` column at a time)."""
    source = pq.ParquetFile(plan)
    works: set[str] = set()
    for group in range(source.num_row_groups):
        works.update(pc.unique(source.read_row_group(group, columns=["work"])["work"]).to_pylist())
    return len(works)
