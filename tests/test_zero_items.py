"""A root in which an adapter finds no item is refused, by scan, build and split, with a message that names
what was looked for; nothing is written, and a build that was already planned is never stopped by it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.build import BuildError, build
from pipeline.config import BuildConfig
from pipeline.sources.scan import ManifestWriter

RP_DATA = Path(sys.executable).with_name("rp-data")


def run(*args: str) -> tuple[int, str]:
    """Exit code and the output as one line (the console wraps long messages)."""
    result = subprocess.run([str(RP_DATA), *args], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, " ".join((result.stdout + result.stderr).split())


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "HDTF"
    folder.mkdir()
    return folder


def test_a_scan_of_an_empty_folder_names_the_files_it_looked_for(empty: Path, tmp_path: Path) -> None:
    code, out = run("scan", "--dataset", "hdtf", "--root", str(empty), "--out", str(tmp_path / "m" / "hdtf.parquet"))
    assert code == 2
    assert f"error: found no items in {empty} for hdtf: missing_annotation_file HDTF_dataset/RD_video_url.txt" in out
    assert "and 9 more (not found in the dataset root)" in out and "*_annotion_time.txt" in out
    assert "(see `rp-data datasets hdtf`)" in out and "the folder holds" not in out
    assert f"nothing was written to {tmp_path / 'm' / 'hdtf.parquet'}" in out
    assert not list((tmp_path / "m").glob("*.parquet")) and not list((tmp_path / "m").glob(".*"))


def test_a_scan_of_another_datasets_folder_says_whose_it_is(sample_root: Path) -> None:
    code, out = run("scan", "--dataset", "hdtf", "--root", str(sample_root / "vfhq"))
    assert code == 2
    assert f"found no items in {sample_root / 'vfhq'} for hdtf" in out
    assert "the folder holds vfhq's meta_info/" in out
    code, out = run("scan", "--dataset", "mead", "--root", str(sample_root / "hdtf"))
    assert code == 2 and "missing_media (no actor folder" in out and "*/video/*/*/level_*/*.mp4" in out
    assert "the folder holds hdtf's HDTF_dataset/" in out


def test_an_empty_scan_keeps_the_manifest_already_at_out(sample_root: Path, empty: Path, tmp_path: Path) -> None:
    out = tmp_path / "hdtf.parquet"
    assert run("scan", "--dataset", "hdtf", "--root", str(sample_root / "hdtf"), "--out", str(out))[0] == 0
    before = out.read_bytes(), out.with_name("hdtf.problems.parquet").read_bytes()
    assert run("scan", "--dataset", "hdtf", "--root", str(empty), "--out", str(out))[0] == 2
    assert (out.read_bytes(), out.with_name("hdtf.problems.parquet").read_bytes()) == before
    assert len(pd.read_parquet(out)) > 0


@pytest.mark.parametrize("wrong", ["empty", "vfhq"])
def test_a_build_of_a_root_without_items_is_refused_before_anything_is_written(
    wrong: str, empty: Path, sample_root: Path, tmp_path: Path
) -> None:
    root = empty if wrong == "empty" else sample_root / "vfhq"
    out = tmp_path / "out"
    code, text = run("build", "--source", f"hdtf={root}", "--out", str(out))
    assert code == 2
    assert f"error: --source hdtf={root}: found no items in {root} for hdtf" in text
    assert f"nothing was written to {out}" in text and not out.exists()
    assert ("the folder holds vfhq's meta_info/" in text) == (wrong == "vfhq")


def test_one_empty_source_beside_a_good_one_stops_the_whole_build(
    empty: Path, sample_root: Path, tmp_path: Path
) -> None:
    """The user mistyped one path: building the rest would tie the build folder to the wrong path."""
    out = tmp_path / "out"
    code, text = run(
        "build", "--source", f"vfhq={sample_root / 'vfhq'}", "--source", f"hdtf={empty}", "--out", str(out)
    )
    assert code == 2 and not out.exists()
    assert f"--source hdtf={empty}: found no items" in text and "--source vfhq" not in text


def test_a_split_of_an_empty_root_is_refused(empty: Path, sample_root: Path, tmp_path: Path) -> None:
    split = tmp_path / "split.json"
    code, text = run(
        "split", "--vfhq-root", str(sample_root / "vfhq"), "--celebvhq-root", str(empty), "--out", str(split)
    )
    assert code == 2 and not split.exists()
    assert f"error: --celebvhq-root {empty}: found no items in {empty} for celebvhq" in text
    assert "celebvhq_info.json" in text


def test_a_planned_build_with_an_empty_scan_goes_on_and_says_so(empty: Path, tmp_path: Path) -> None:
    """Only a build begun before empty roots were refused has a scan without rows; refusing its resume
    would strand what it built, so it goes on without that dataset and notes it."""
    out = tmp_path / "out"
    with pytest.raises(BuildError, match="found no items"):
        build([("hdtf", empty)], out, BuildConfig())
    assert not out.exists()
    ManifestWriter(out / "sources" / "hdtf.parquet").close()  # the scan an earlier version left
    result = build([("hdtf", empty)], out, BuildConfig())
    scanned = out / "sources" / "hdtf.parquet"
    note = (
        f"{scanned} holds no items: this build goes on without hdtf; build it into a new --out once its folder is right"
    )
    assert result.notes == [note]
    assert result.progress.total == 0 and (out / "manifest.parquet").exists()
    shutil.rmtree(out / "sources")  # not scanned yet: checked again, and refused again
    with pytest.raises(BuildError, match=re.escape(f"--source hdtf={empty}: found no items")):
        build([("hdtf", empty)], out, BuildConfig())
