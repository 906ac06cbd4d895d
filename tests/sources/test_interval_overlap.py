"""Overlapping HDTF intervals become one clip (issue 15, item 4), on the real annotation files.

The real files have a nest (WRA_MittRomney: 08:10-08:30 inside 00:33-08:53) and one interval listed
under two names of one YouTube video (WDA_JamesClyburn1 and WDA_WhipJimClyburn, both 00:05-04:40).
Media are real H.264 files at the paths the downloader writes; the adapter only looks at which exist.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kit import run_adapter

from pipeline.manifest_merge import annotation_rows
from pipeline.sample.render import write_mp4
from pipeline.sources.overlaps import overlap_runs, overlaps
from pipeline.sources.records import SourceItem
from pipeline.sources.scan import scan

MITT_LINE = 96  # of WRA_annotion_time.txt: "MittRomney.mp4 08:10-08:30 00:33-08:53"


def _video(path: Path) -> None:
    frames = np.random.default_rng(len(path.name)).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, frames, 25)


@pytest.fixture
def hdtf_root(hdtf_fixture: Path, tmp_path: Path) -> Path:
    """The real annotation files where the repository keeps them, without media yet."""
    root = tmp_path / "hdtf"
    shutil.copytree(hdtf_fixture, root / "HDTF_dataset")
    return root


def _problems(problems: list, reason: str = "overlapping_interval") -> list:
    return [p for p in problems if p.reason == reason]


def test_the_nested_interval_is_built_inside_the_outer_one(hdtf_root: Path) -> None:
    _video(hdtf_root / "_videos_raw" / "WRA_MittRomney.mp4")  # the outer interval has no clip: no crop window
    _video(hdtf_root / "WRA_MittRomney_000.mp4")  # the downloader's clip of the cropped interval 0
    items, problems = run_adapter("hdtf", hdtf_root)
    by_id = {item.native_id: item for item in items}
    assert "WRA_MittRomney_0" not in by_id and len(items) == 435
    outer = by_id["WRA_MittRomney_1"]
    assert (outer.start, outer.end, outer.media_path) == (33.0, 533.0, "_videos_raw/WRA_MittRomney.mp4")
    assert outer.labels["overlap"] == {
        "how": "nested",
        "intervals": [{"id": "WRA_MittRomney_0", "start": 490.0, "end": 510.0}],
    }
    [problem] = _problems(problems)
    assert (problem.file, problem.line, problem.item_id) == ("HDTF_dataset/WRA_annotion_time.txt", MITT_LINE, None)
    assert "hdtf/WRA_MittRomney_0 (08:10-08:30)" in problem.detail
    assert "within WRA_MittRomney_1 (00:33-08:53)" in problem.detail


def test_an_interval_that_cannot_be_built_takes_nothing_away(hdtf_root: Path) -> None:
    """Only the downloader's clips: the outer interval has no media, so the nested clip is kept."""
    _video(hdtf_root / "WRA_MittRomney_000.mp4")
    items, problems = run_adapter("hdtf", hdtf_root)
    by_id = {item.native_id: item for item in items}
    assert len(items) == 436 and not _problems(problems)
    assert by_id["WRA_MittRomney_0"].media_status == "present" and "overlap" not in by_id["WRA_MittRomney_0"].labels
    assert by_id["WRA_MittRomney_1"].media_status == "missing"


def test_one_interval_under_two_names_of_a_video_is_built_once(hdtf_root: Path) -> None:
    _video(hdtf_root / "WDA_JamesClyburn1_000.mp4")
    _video(hdtf_root / "WDA_WhipJimClyburn_000.mp4")
    items, problems = run_adapter("hdtf", hdtf_root)
    by_id = {item.native_id: item for item in items}
    assert "WDA_WhipJimClyburn_0" not in by_id
    kept = by_id["WDA_JamesClyburn1_0"]
    assert kept.labels["overlap"]["intervals"] == [{"id": "WDA_WhipJimClyburn_0", "start": 5.0, "end": 280.0}]
    [problem] = _problems(problems)
    assert problem.file == "HDTF_dataset/WDA_annotion_time.txt" and "hdtf/WDA_WhipJimClyburn_0" in problem.detail


def _overlapping_mitt(root: Path) -> None:
    """MittRomney's line edited so that interval 0 (08:10-09:00) sticks out of interval 1 (00:33-08:53)."""
    path = root / "HDTF_dataset" / "WRA_annotion_time.txt"
    text = path.read_text(encoding="utf-8")
    assert "MittRomney.mp4 08:10-08:30 00:33-08:53" in text
    path.write_text(text.replace("MittRomney.mp4 08:10-08:30", "MittRomney.mp4 08:10-09:00"), encoding="utf-8")


def test_a_partial_overlap_is_merged_over_the_raw_download(hdtf_root: Path) -> None:
    _overlapping_mitt(hdtf_root)
    _video(hdtf_root / "_videos_raw" / "WRA_MittRomney.mp4")
    _video(hdtf_root / "WRA_MittRomney_000.mp4")
    items, problems = run_adapter("hdtf", hdtf_root)
    by_id = {item.native_id: item for item in items}
    assert "WRA_MittRomney_0" not in by_id
    merged = by_id["WRA_MittRomney_1"]  # the run takes the id of its earliest interval
    assert (merged.start, merged.end) == (33.0, 540.0)
    assert merged.media_path == "_videos_raw/WRA_MittRomney.mp4" and not merged.media_cut
    assert merged.crop is None  # interval 1 has no crop window: the whole frame is searched
    assert merged.labels["overlap"] == {
        "how": "merged",
        "intervals": [
            {"id": "WRA_MittRomney_1", "start": 33.0, "end": 533.0},
            {"id": "WRA_MittRomney_0", "start": 490.0, "end": 540.0},
        ],
    }
    assert len(_problems(problems)) == 2 and all("over 00:33-09:00" in p.detail for p in _problems(problems))


def test_without_a_raw_download_the_longer_interval_wins(hdtf_root: Path) -> None:
    _overlapping_mitt(hdtf_root)
    _video(hdtf_root / "MittRomney_1.mp4")  # the README's naming of interval 1
    _video(hdtf_root / "WRA_MittRomney_000.mp4")
    items, problems = run_adapter("hdtf", hdtf_root)
    by_id = {item.native_id: item for item in items}
    assert "WRA_MittRomney_0" not in by_id and by_id["WRA_MittRomney_1"].media_path == "MittRomney_1.mp4"
    [problem] = _problems(problems)
    assert "overlaps WRA_MittRomney_1" in problem.detail and "dropped" in problem.detail


def test_the_scan_is_deterministic_and_the_build_manifest_keeps_the_record(hdtf_root: Path, tmp_path: Path) -> None:
    _video(hdtf_root / "_videos_raw" / "WRA_MittRomney.mp4")
    _video(hdtf_root / "WRA_MittRomney_000.mp4")
    written = []
    for run in ("a", "b"):
        out = tmp_path / run / "sources" / "hdtf.parquet"
        out.parent.mkdir(parents=True)
        scan("hdtf", hdtf_root, out=out)
        written.append(pd.read_parquet(out))
    pd.testing.assert_frame_equal(*written)
    row = written[0].set_index("item_id").loc["hdtf/WRA_MittRomney_1"]
    assert json.loads(row.labels)["overlap"]["intervals"][0]["id"] == "WRA_MittRomney_0"
    rows = [r for r in annotation_rows(tmp_path / "a") if r["reason"] == "overlapping_interval"]
    assert [r["item_id"] for r in rows] == [f"hdtf/HDTF_dataset/WRA_annotion_time.txt:{MITT_LINE}"]
    assert "hdtf/WRA_MittRomney_0" in str(rows[0]["message"])


def _item(native_id: str, start: float, end: float, youtube_id: str = "vid00000001") -> SourceItem:
    return SourceItem(
        dataset="hdtf",
        native_id=native_id,
        modality="video",
        media_path=f"{native_id}.mp4",
        media_status="present",
        split="unsplit",
        identity=None,
        identity_kind="name",
        license_tag="t",
        youtube_id=youtube_id,
        time_unit="sec",
        start=start,
        end=end,
        end_inclusive=False,
    )


def test_runs_join_chains_and_not_touching_intervals() -> None:
    a, b, c = _item("a", 0, 10), _item("b", 8, 20), _item("c", 19, 30)  # a-b and b-c overlap, a-c do not
    touching, other_video = _item("d", 30, 40), _item("e", 0, 40, "vid00000002")
    assert overlaps(a, b) and not overlaps(a, c) and not overlaps(c, touching)
    runs = overlap_runs([touching, c, other_video, b, a])
    assert [[i.native_id for i in run] for run in runs] == [["a", "b", "c"], ["d"], ["e"]]
