"""DIR/manifest.parquet, merged in a stream from every committed work shard's rows.

One file keeps every reader working (report, inspect, split, training, eval). Its rows: each committed
work shard's, where a retry's rows replace the earlier attempts of the same item (the highest attempt
of an item_id wins), plus the excluded items and the annotation problems, sorted by (dataset, item_id,
kind, key), nulls first. The merge holds one work-shard family at a time (`W` and its retries
`W-r1`, `W-r2`...: a retry only ever holds items of its own shard), because the plan gives each
shard of a dataset a contiguous, increasing item_id range: sorting family by family, with the
excluded and annotation rows that fall in between, gives the global order. Rows are written in row
groups as they come; per-status counts are kept for the build's summary.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.atomic import replacing
from pipeline.plan import WORK_NAME, committed_works
from pipeline.shards import MANIFEST_COLUMNS
from pipeline.storage import Store

SORT_KEYS = ["dataset", "item_id", "kind", "key"]
ROW_GROUP = 65_536
COUNT_KEYS = ["dataset", "kind", "status", "reason"]


def annotation_rows(out: Path | Store) -> list[dict[str, object]]:
    """Problems of the annotation files (a malformed line has no item): kept in the manifest too. `out` is the
    build folder, local or an object store's."""
    sources = Store.at(out).child("sources")
    filesystem, paths = sources.arrow(sources.names("*.problems.parquet"))
    rows = []
    for path in paths:
        # an item's problems are in its own row
        problems = pq.read_table(path, filters=pc.field("item_id").is_null(), filesystem=filesystem)
        for problem in problems.to_pylist():
            line = "" if problem["line"] is None else f":{problem['line']}"
            rows.append(
                {
                    "item_id": f"{problem['dataset']}/{problem['file']}{line}",
                    "dataset": problem["dataset"],
                    "kind": "annotation",
                    "status": "failed",
                    "reason": problem["reason"],
                    "error_class": "permanent",
                    "message": problem["detail"],
                    "attempt": 0,
                }
            )
    return rows


def families(shards: Path | Store) -> dict[str, list[list[str]]]:
    """dataset -> its committed work-shard families in plan order, each [W, W-r1, W-r2, ...] rows files (names
    in `shards`)."""
    found: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for work in committed_works(shards):
        match = WORK_NAME.match(work)
        if match is None:
            raise ValueError(
                f"{Store.at(shards).url_of(work)}.stats.json: not a work shard name (<dataset>-<index>[-r<n>])"
            )
        family = (match["dataset"], int(match["index"]))
        found.setdefault(family, []).append((int(match["retry"] or 0), f"{work}.parquet"))
    by_dataset: dict[str, list[list[str]]] = {}
    for dataset, index in sorted(found):
        by_dataset.setdefault(dataset, []).append([name for _, name in sorted(found[dataset, index])])
    return by_dataset


def _read_rows(store: Store, name: str) -> pa.Table:
    with store.open(name) as stream:
        return pq.read_table(stream).cast(MANIFEST_COLUMNS)


def _latest(rows: pd.DataFrame) -> pd.DataFrame:
    """Each item's rows of its highest attempt (a retry replaces what the earlier attempts said)."""
    if rows.empty:
        return rows
    rows = rows.sort_values("attempt", kind="stable")
    return rows[rows.attempt == rows.groupby("item_id")["attempt"].transform("max")]


def _sorted(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.sort_values(SORT_KEYS, na_position="first", kind="stable")


def _extras(out: Path) -> pd.DataFrame:
    """Rows that are not in any work shard: excluded items and annotation problems (both small)."""
    excluded = out / "excluded.parquet"
    frames = [pq.read_table(excluded).cast(MANIFEST_COLUMNS).to_pandas()] if excluded.exists() else []
    annotation = annotation_rows(out)
    if annotation:
        frames.append(pa.Table.from_pylist(annotation, schema=MANIFEST_COLUMNS).to_pandas())
    return _sorted(pd.concat(frames, ignore_index=True)) if frames else MANIFEST_COLUMNS.empty_table().to_pandas()


class _Output:
    """Buffers sorted chunks into row groups of the manifest, counting rows as they pass."""

    def __init__(self, writer: pq.ParquetWriter):
        self.writer = writer
        self.buffered: list[pa.Table] = []
        self.rows = 0
        self.counts: Counter[tuple[object, ...]] = Counter()
        self.frames: Counter[tuple[object, ...]] = Counter()

    def add(self, chunk: pd.DataFrame) -> None:
        if chunk.empty:
            return
        for key, group in chunk.groupby(COUNT_KEYS, dropna=False, sort=False):
            self.counts[key] += len(group)
            self.frames[key] += int(group.frames.fillna(0).sum())
        self.buffered.append(pa.Table.from_pandas(chunk, schema=MANIFEST_COLUMNS, preserve_index=False))
        self.rows += len(chunk)
        if self.rows >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        if self.buffered:
            self.writer.write_table(pa.concat_tables(self.buffered), row_group_size=ROW_GROUP)
        self.buffered, self.rows = [], 0

    def table(self) -> pd.DataFrame:
        rows = [(*key, count, self.frames[key]) for key, count in sorted(self.counts.items(), key=str)]
        counts = pd.DataFrame(rows, columns=[*COUNT_KEYS, "rows", "frames"])
        return counts.replace({float("nan"): None})


def write_manifest(out: Path, shards: Path | Store | None = None) -> pd.DataFrame:
    """Writes DIR/manifest.parquet (under a temporary name, renamed when whole) from the work shards in
    `shards` (DIR/shards unless said); returns its row counts by (dataset, kind, status, reason), with the
    frames of those rows: what a summary needs."""
    out = Path(out)
    store = Store.at(shards or out / "shards")
    by_dataset = families(store)
    extras = _extras(out)
    with replacing(out / "manifest.parquet") as tmp, pq.ParquetWriter(tmp, MANIFEST_COLUMNS) as writer:
        output = _Output(writer)
        for dataset in sorted(set(by_dataset) | set(extras.dataset.dropna())):
            pending = extras[extras.dataset == dataset]
            for family in by_dataset.get(dataset, []):
                tables = [_read_rows(store, name) for name in family]
                rows = _latest(pa.concat_tables(tables).to_pandas())
                if rows.empty:
                    continue
                upto = rows.item_id.max()
                between = pending[pending.item_id <= upto]
                pending = pending[pending.item_id > upto]
                output.add(_sorted(pd.concat([rows, between], ignore_index=True) if len(between) else rows))
            output.add(pending)
        output.flush()
    return output.table()
