"""A build given --ray-address lists its large roots with tasks on that cluster, not on an embedded Ray."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray
from buildkit import RAY_NO_AUTH, local_cluster

from manifests.schema import get_spec
from pipeline.sources.listing import TreeLister, media_depth
from pipeline.sources.scan import DatasetScan, scan


def gcs_port() -> str | None:
    """The port of the Ray this process is connected to (its host is reported as the machine's address)."""
    return ray.get_runtime_context().gcs_address.rpartition(":")[2] if ray.is_initialized() else None


@pytest.mark.slow
def test_the_scan_lists_on_the_builds_cluster(
    sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in RAY_NO_AUTH.items():  # as the cluster was started
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(sample_root.parent)
    relative = Path(sample_root.name)  # the tasks' working directory is not the driver's
    serial = tmp_path / "serial" / "sample.parquet"
    scan("sample", relative, out=serial)
    with local_cluster(tmp_path, head_cpus=2) as cluster:
        port = cluster.address.rpartition(":")[2]
        with TreeLister(threshold=5, address=cluster.address) as lister:
            listing = lister.list(relative / "mead", media_depth(get_spec("mead")))
            assert gcs_port() == port
        assert gcs_port() is None  # let go, so the runner connects with its workers' environment
        assert listing is not None and listing.sizes.get("")  # the tasks found the root from another folder

        during: set[str | None] = set()

        def on_item(stats: DatasetScan) -> None:
            during.add(gcs_port())

        parallel = tmp_path / "parallel" / "sample.parquet"
        scan("sample", relative, out=parallel, parallel_entries=5, ray_address=cluster.address, on_item=on_item)
        assert during == {port} and gcs_port() is None
    for name in ("sample.parquet", "sample.problems.parquet"):
        assert pq.read_table(parallel.with_name(name)).equals(pq.read_table(serial.with_name(name))), name
