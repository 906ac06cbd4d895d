"""The scan of a large root lists it with Ray tasks: the same rows, problems and order as the serial scan."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from manifests.schema import get_spec
from pipeline.sources.listing import TreeLister, media_depth
from pipeline.sources.scan import scan


def test_a_parallel_scan_gives_the_serial_scans_rows_in_order(
    sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ray reads its auth mode once per process: a test that joined a local cluster earlier in this process
    # (started without token auth, as every test cluster is) left it disabled, so the embedded Ray must match
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    root = tmp_path / "sample"
    shutil.copytree(sample_root, root, symlinks=True)
    # what a stat tells apart must come out the same: a file emptied, one removed, a link that leads nowhere
    mead = root / "mead"
    media = sorted(p for p in mead.rglob("*.mp4"))
    media[0].write_bytes(b"")
    media[1].unlink()
    os.symlink(tmp_path / "nowhere.mp4", media[1])
    serial = scan("sample", root, out=tmp_path / "serial" / "sample.parquet")
    depth = media_depth(get_spec("mead"))
    with TreeLister(threshold=5) as lister:  # its Ray serves the scan's tasks too: one start
        listing = lister.list(mead, depth)
        parallel = scan("sample", root, out=tmp_path / "parallel" / "sample.parquet", parallel_entries=5)
    assert [s.items for s in serial] == [s.items for s in parallel] and sum(s.items for s in serial) > 20
    for name in ("sample.parquet", "sample.problems.parquet"):
        assert pq.read_table(tmp_path / "parallel" / name).equals(pq.read_table(tmp_path / "serial" / name)), name
    problems = pq.read_table(tmp_path / "serial" / "sample.problems.parquet")["reason"].to_pylist()
    assert "empty_file" in problems and "missing_media" in problems
    # the lowered threshold did list the tree, in tasks; the default one leaves a tree this small to stats
    assert listing is not None and listing.size(media[0].relative_to(mead).as_posix()) == 0
    assert listing.size(media[1].relative_to(mead).as_posix()) is None
    assert TreeLister().list(mead, depth) is None
