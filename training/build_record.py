"""What a build says about itself without decoding a sample: its source manifests and its committed work shards.

Why one place: the held-out check and the choice of validation clips both match source items (split, video,
identity) against the samples the build committed, and must agree on which files count: the source manifests
without their `.problems` companions, and only the work shards whose stats file marks them committed. The build
is a local folder or an fsspec URL; pyarrow reads its tables through the store's filesystem (pipeline/storage.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.storage import Location, Store
from training.config import ConfigError


def source_manifests(build_dir: Location, needed_for: str) -> tuple[Any, list[str]]:
    """(filesystem, paths) for pyarrow of the build's source manifests (`sources/*.parquet`, problems aside);
    none is an error naming what needs them."""
    sources = Store.at(build_dir).child("sources")
    names = [name for name in sources.names("*.parquet") if not name.endswith(".problems.parquet")]
    if not names:
        raise ConfigError(
            f"{build_dir}/sources/ has no source manifest (*.parquet, written by rp-data build): {needed_for}"
        )
    return sources.arrow(names)


def committed_shards(build_dir: Location, columns: Sequence[str]) -> Iterator[tuple[dict[str, Any], pa.Table]]:
    """(stats, rows) of every committed work shard (one with a stats file), by name, with `columns` of its parquet."""
    shards = Store.at(build_dir).child("shards")
    for marker in shards.names("*.stats.json"):
        stats = json.loads(shards.read_text(marker))
        filesystem, (path,) = shards.arrow([f"{stats['work']}.parquet"])
        yield stats, pq.read_table(path, columns=list(columns), filesystem=filesystem)
