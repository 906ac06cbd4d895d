"""What `rp-data report` shows, tallied from a build's tables without holding its rows.

A build of millions of rows does not fit in pandas (hundreds of bytes a row), so the tables are read
with pyarrow, only the columns the page uses, one work-shard family at a time: `W` and its retries
`W-r1`, `W-r2`... are the only shards that can hold the same item (see pipeline.manifest_merge), so an
item's latest attempt is found inside its family. What is kept is what the page shows: rows and reasons
per (dataset, kind, status), the dropped rows per reason, the finite numbers that the histograms and the
medians are drawn from (8 bytes each, since an exact median needs them), the (tar, key) of every ok
sample the contact sheet draws from, and per media combination its count and its first files. The tables
are read through the build's store (pipeline/storage.py), so a build at an fsspec URL is tallied the same
way, a family at a time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import reduce

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.manifest_merge import annotation_rows
from pipeline.plan import WORK_NAME
from pipeline.storage import Store

NUMBERS = ("frames", "face_px", "blur", "yaw", "pitch", "roll", "seconds_total")  # the numbers the page draws
TEXTS = ("item_id", "dataset", "kind", "status", "reason", "error_class", "tar", "key")
# what the build read each source video as, and its label on the page; older builds lack these columns
MEDIA = {
    "media_codec": "codec",
    "media_format": "format",
    "media_matrix": "matrix",
    "media_range": "range",
    "media_rotation": "rotation",
    "media_vfr": "variable rate",
}
MEDIA_KEYS = ["dataset", *MEDIA.values()]
MEDIA_LISTED = 200  # source files listed one by one; the counts per combination above them cover all
READ = (*TEXTS, "attempt", *NUMBERS, *MEDIA)
Key = tuple[str | None, str | None, str | None]  # dataset, kind, status
Table = tuple[pa.Table, list[str]]  # the columns read, and the names of all the file's columns


@dataclass
class Group:
    """The rows of one (dataset, kind, status)."""

    rows: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # first seen first: value_counts' order for ties
    chunks: dict[str, list[np.ndarray]] = field(default_factory=lambda: {name: [] for name in NUMBERS})

    def numbers(self, column: str) -> np.ndarray:
        """The column's finite values, in row order."""
        return np.concatenate(self.chunks[column]) if self.chunks[column] else np.empty(0)


@dataclass
class Tally:
    """Everything the page shows about the committed rows, each item's latest attempt only."""

    groups: dict[Key, Group] = field(default_factory=dict)
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (reason (kind), status) -> rows
    pairs: list[pa.Table] = field(default_factory=list)  # (tar, key) of ok samples, as read
    media_counts: Counter[tuple[object, ...]] = field(default_factory=Counter)  # (*MEDIA_KEYS, status) -> files
    media_files: pd.DataFrame | None = None  # per combination its first MEDIA_LISTED files by (item, order)
    media_rows: int = 0
    columns: set[str] = field(default_factory=set)  # columns any non-empty table had
    superseded: int = 0

    @property
    def rows(self) -> int:
        return sum(group.rows for group in self.groups.values())

    def numbers(self, column: str, kind: str | None, status: str) -> np.ndarray:
        """Finite values of `column` in the rows of `status` (and `kind`, unless None)."""
        parts = [g.numbers(column) for (_, k, s), g in self.groups.items() if s == status and kind in (None, k)]
        return np.concatenate(parts) if parts else np.empty(0)

    def pool(self) -> pa.Table:
        """The ok samples that name their tar and key, each once, in a stable order (tar, key); the pairs as
        read are let go."""
        pairs = pa.concat_tables(self.pairs) if self.pairs else _PAIR.empty_table()
        self.pairs = []
        return sample_pool(pairs)


_PAIR = pa.schema([("tar", pa.string()), ("key", pa.string())])


def sample_pool(pairs: pa.Table) -> pa.Table:
    """(tar, key) pairs, each once, sorted: the contact sheet's draw must not depend on the row order."""
    ordered = pairs.select(["tar", "key"]).sort_by([("tar", "ascending"), ("key", "ascending")])
    if ordered.num_rows < 2:
        return ordered
    tar, key = ordered["tar"].combine_chunks(), ordered["key"].combine_chunks()
    differs = pc.or_(pc.not_equal(tar[1:], tar[:-1]), pc.not_equal(key[1:], key[:-1]))  # from the row before
    return ordered.filter(pa.concat_arrays([pa.array([True]), pc.fill_null(differs, True)]))


def tally_build(store: Store, works: Iterable[str], notes: list[str]) -> Tally:
    """Tallies the committed work shards `works` of the build folder `store` (in the order the page lists
    them), then the items the build kept aside (excluded.parquet and the annotation problems); an unreadable
    table becomes a note."""
    tally = Tally()
    shards = store.child("shards")
    for family in _families(works):
        tables = [_read(shards, f"{work}.parquet", work, notes) for work in family]
        _add(tally, [table for table in tables if table is not None])
    aside = []
    if store.exists("excluded.parquet"):
        aside.append(_read(store, "excluded.parquet", None, notes))
    annotation = annotation_rows(store)
    if annotation:
        table = pa.Table.from_pylist(annotation)
        aside.append((table, table.column_names))
    _add(tally, [table for table in aside if table is not None])
    return tally


def _families(works: Iterable[str]) -> Iterator[list[str]]:
    """Work shards grouped by family (a name outside the plan's pattern is its own), each family where
    its first shard is, so rows keep the order of `works`."""
    order: dict[tuple[str, ...], list[str]] = {}
    for work in works:
        match = WORK_NAME.match(work)
        order.setdefault((match["dataset"], match["index"]) if match else (work,), []).append(work)
    yield from order.values()


def _read(folder: Store, name: str, work: str | None, notes: list[str]) -> Table | None:
    """The READ columns the table `name` of `folder` has, and the names of all its columns (for the
    missing-column note)."""
    filesystem, (path,) = folder.arrow([name])
    try:
        with pq.ParquetFile(path, filesystem=filesystem) as parquet:
            names = parquet.schema_arrow.names
            return parquet.read(columns=[column for column in READ if column in names]), names
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        where = f"work shard {work} is committed but its table shards/{name}" if work else name
        notes.append(f"{where} is unreadable: {exc}")
        return None


def _normalised(table: pa.Table) -> pa.Table:
    """The READ columns (a missing one all null): text as strings, numbers as float64 with every non-finite
    value null (an inf would break every histogram's range), media as read."""
    columns: dict[str, pa.ChunkedArray | pa.Array] = {}
    for name in READ:
        if name not in table.column_names:
            columns[name] = pa.nulls(table.num_rows, pa.string() if name in TEXTS else pa.null() if name in MEDIA
                                     else pa.float64())  # fmt: skip
        elif name in TEXTS:
            columns[name] = _as_text(table[name])
        elif name in MEDIA:
            columns[name] = table[name]
        else:
            numbers = _as_float(table[name])
            columns[name] = pc.if_else(pc.is_finite(numbers), numbers, pa.scalar(None, pa.float64()))
    return pa.table(columns)


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.chunked_array([pa.array([None if v is None else str(v) for v in column.to_pylist()], pa.string())])


def _as_float(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Numbers as float64; anything else as pandas' to_numeric(errors="coerce") reads it."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind):
        return pc.cast(column, pa.float64())
    coerced = pd.to_numeric(pd.Series(column.to_pylist(), dtype="object"), errors="coerce").astype("float64")
    return pa.chunked_array([pa.array(coerced.to_numpy(), pa.float64(), from_pandas=True)])


def _add(tally: Tally, tables: list[Table]) -> None:
    """Adds one family's rows, each item's latest attempt only (a retry's rows replace the earlier ones)."""
    filled = [(table, names) for table, names in tables if table.num_rows]
    if not filled:
        return
    for _, names in filled:
        tally.columns.update(names)
    rows = pa.concat_tables([_normalised(table) for table, _ in filled], promote_options="permissive")
    latest = _latest(rows)
    tally.superseded += rows.num_rows - int(pc.sum(latest).as_py() or 0)
    rows = rows.filter(latest)
    _add_groups(tally, rows)
    _add_dropped(tally, rows)
    ok = pc.and_(pc.equal(rows["kind"], "sample"), pc.equal(rows["status"], "ok"))
    ok = pc.and_(ok, pc.and_(pc.is_valid(rows["tar"]), pc.is_valid(rows["key"])))
    tally.pairs.append(rows.filter(pc.fill_null(ok, False)).select(["tar", "key"]))
    _add_media(tally, rows)


def _latest(rows: pa.Table) -> pa.Array:
    """True for rows of their item's highest attempt; rows without an item_id or attempt always count."""
    attempt = rows["attempt"].to_numpy()  # nulls are NaN
    if np.isnan(attempt).all() or np.nanmin(attempt) == np.nanmax(attempt):
        return pa.array(np.ones(rows.num_rows, dtype=bool))
    codes = pc.fill_null(pc.dictionary_encode(rows["item_id"].combine_chunks()).indices, -1).to_numpy()
    best = np.full(codes.max() + 2, np.nan)
    np.fmax.at(best, codes, attempt)  # code -1 (no item_id) lands in the last slot, never compared
    return pa.array(~((codes >= 0) & (attempt < best[codes])))


def _mask(column: pa.ChunkedArray, value: str | None) -> pa.ChunkedArray:
    return pc.is_null(column) if value is None else pc.fill_null(pc.equal(column, value), False)


def _add_groups(tally: Tally, rows: pa.Table) -> None:
    keys = rows.select(["dataset", "kind", "status"]).group_by(["dataset", "kind", "status"], use_threads=False)
    shown = rows.select(["reason", *NUMBERS])  # a group's copy holds only what the page shows of it
    for key in keys.aggregate([]).to_pylist():
        dataset, kind, status = key["dataset"], key["kind"], key["status"]
        mask = pc.and_(
            pc.and_(_mask(rows["dataset"], dataset), _mask(rows["kind"], kind)), _mask(rows["status"], status)
        )
        part = shown.filter(mask)
        group = tally.groups.setdefault((dataset, kind, status), Group())
        group.rows += part.num_rows
        counts = pc.value_counts(pc.drop_null(part["reason"]))
        group.reasons.update(
            dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))
        )
        for name in NUMBERS:
            values = pc.drop_null(part[name]).to_numpy()
            if len(values):  # a copy: a view would hold the family's Arrow buffers
                group.chunks[name].append(values.copy())


def _add_dropped(tally: Tally, rows: pa.Table) -> None:
    dropped = rows.filter(pc.is_in(rows["status"], pa.array(["filtered", "failed"])))
    if not dropped.num_rows:
        return
    reason = pc.coalesce(dropped["reason"], dropped["error_class"], pa.scalar("(no reason)"))
    label = pc.binary_join_element_wise(reason, " (", pc.coalesce(dropped["kind"], pa.scalar("?")), ")", "")
    counts = (
        pa.table({"label": label, "status": dropped["status"]})
        .group_by(["label", "status"])
        .aggregate([([], "count_all")])
    )
    for entry in counts.to_pylist():
        tally.dropped[entry["label"], entry["status"]] += entry["count_all"]


def media_labels(sources: pd.DataFrame) -> pd.DataFrame:
    """The media columns as the page shows them: rotation in degrees, the rate as yes/no, – where unknown."""
    labels = sources[list(MEDIA)].rename(columns=MEDIA).astype("object")
    labels["rotation"] = [f"{int(v)}°" if v is not None else None for v in sources["media_rotation"]]
    labels["variable rate"] = [None if v is None else "yes" if bool(v) else "no" for v in sources["media_vfr"]]
    return labels.fillna("–")


def _add_media(tally: Tally, rows: pa.Table) -> None:
    """Counts the source files per media combination, and keeps each combination's first MEDIA_LISTED files
    by (item_id, row order): the page lists the rarest combinations' files, and a combination's files
    are listed in that order."""
    recorded = reduce(pc.or_, [pc.is_valid(rows[name]) for name in MEDIA])
    sources = rows.filter(pc.and_(pc.fill_null(pc.equal(rows["kind"], "source"), False), recorded))
    if not sources.num_rows:
        return
    frame = sources.select(["dataset", "item_id", "status", *MEDIA]).to_pandas()
    for column in frame.columns:
        frame[column] = frame[column].astype("object").where(frame[column].notna(), None)
    table = pd.concat([frame[["dataset", "item_id", "status"]], media_labels(frame)], axis=1)
    table["order"] = np.arange(tally.media_rows, tally.media_rows + len(table))
    tally.media_rows += len(table)
    tally.media_counts.update(table[[*MEDIA_KEYS, "status"]].itertuples(index=False, name=None))
    both = table if tally.media_files is None else pd.concat([tally.media_files, table], ignore_index=True)
    first = both.sort_values(["item_id", "order"], kind="stable").groupby(MEDIA_KEYS, dropna=False).head(MEDIA_LISTED)
    tally.media_files = first.sort_values("order").reset_index(drop=True)
