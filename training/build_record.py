"""What a build says about itself without decoding a sample: its source manifests and its committed work shards.

Why one place: the held-out check and the choice of validation clips both match source items (split, video,
identity) against the samples the build committed, and must agree on which files count: the source manifests
without their `.problems` companions, and only the work shards whose stats file marks them committed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from training.config import ConfigError


def source_manifests(build_dir: Path, needed_for: str) -> list[Path]:
    """The build's source manifests (`sources/*.parquet`, problems aside); none is an error naming what needs them."""
    manifests = sorted((Path(build_dir) / "sources").glob("*.parquet"))
    manifests = [path for path in manifests if not path.name.endswith(".problems.parquet")]
    if not manifests:
        raise ConfigError(
            f"{build_dir}/sources/ has no source manifest (*.parquet, written by rp-data build): {needed_for}"
        )
    return manifests


def committed_shards(build_dir: Path, columns: Sequence[str]) -> Iterator[tuple[dict[str, Any], pa.Table]]:
    """(stats, rows) of every committed work shard (one with a stats file), by name, with `columns` of its parquet."""
    for marker in sorted((Path(build_dir) / "shards").glob("*.stats.json")):
        stats = json.loads(marker.read_text())
        yield stats, pq.read_table(marker.with_name(f"{stats['work']}.parquet"), columns=list(columns))
