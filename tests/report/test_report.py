"""`write_report` on real build directories: complete, partial, broken and empty ones."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from shardkit import Build, clip_sample, commit, npy, row, sample_row

from pipeline.report import (
    BOX_COLOR,
    CAPTION,
    DOT_COLOR,
    GAP,
    SHEET,
    TILE,
    BuildView,
    choose_samples,
    draw_tile,
    load_build,
    sample_pool,
    write_report,
)


def linked(page: Path) -> list[str]:
    return re.findall(r"<img src='([^']+)'", page.read_text())


def pixels(path: Path, color: tuple[int, int, int]) -> int:
    with Image.open(path) as image:
        return int((np.asarray(image.convert("RGB")) == color).all(axis=-1).sum())


@pytest.fixture
def copy(build: Build, tmp_path: Path) -> Path:
    """A private copy of the shared build, for tests that write into it or break it."""
    return Path(shutil.copytree(build.root, tmp_path / "build"))


def test_full_report_links_every_picture_it_writes_and_only_those(copy: Path) -> None:
    page = write_report(copy)
    assert page == copy / "report" / "index.html"
    images = linked(page)
    expected = ["counts.png", "reasons.png", "frames.png", "face_px.png", "pose.png", "blur.png", SHEET]
    assert images == expected
    assert sorted(p.name for p in page.parent.iterdir()) == sorted([*expected, "index.html"])
    for name in images:
        with Image.open(page.parent / name) as image:
            assert image.format == "PNG" and min(image.size) > 150
    text = page.read_text()
    assert "fp-3fa2c1d9" in text and "1.0.0" in text and "2025-05-01T12:00:00+00:00" in text
    assert "The evaluation split <b>test</b> was excluded from this build" in text
    assert "&quot;min_face_px&quot;: 64" in text and "/data/VFHQ" in text  # config and sources, escaped
    assert "2 committed work shard(s): 3 tar(s), 5 samples" in text
    assert "they are not counted: vfhq-00001" in text


def counts(view: BuildView) -> dict[tuple[str | None, ...], int]:
    return {key: group.rows for key, group in view.tally.groups.items()}


def reasons(view: BuildView) -> set[str]:
    return {reason for group in view.tally.groups.values() for reason in group.reasons}


def test_only_committed_shards_count(build: Build) -> None:
    view = load_build(build.root)
    assert view.pending == ["vfhq-00001"]
    assert counts(view) == {
        ("ffhq", "sample", "ok"): 2,
        ("ffhq", "source", "filtered"): 1,
        ("ffhq", "source", "ok"): 2,
        ("vfhq", "sample", "filtered"): 1,
        ("vfhq", "sample", "ok"): 3,
        ("vfhq", "source", "failed"): 1,
        ("vfhq", "source", "filtered"): 2,
        ("vfhq", "source", "ok"): 2,
    }
    assert "missing_media" not in reasons(view)  # the uncommitted shard's failures
    assert view.pool.column("key").to_pylist() == sorted(build.committed_keys)  # not the uncommitted sample
    assert sorted(view.tally.numbers("face_px", "sample", "ok")) == [190.0, 210.0, 250.0, 380.0, 380.0]
    assert view.tally.numbers("face_px", None, "filtered").tolist() == [38.0]


def test_a_retry_replaces_the_earlier_attempt(copy: Path) -> None:
    """vfhq/Clip-Br2 failed on attempt 3 in vfhq-00000; its retry shard (named as the plan names it) now holds
    attempt 4, which worked."""
    before = counts(load_build(copy))
    retried = clip_sample("vfhq_Clip-Br2-F0-9_b2b2b2_c000", frames=9, seed=2)
    tar = "shards/vfhq-00000-r4-00.tar"
    commit(copy, "vfhq-00000-r4", {tar: [retried]},
           [row(item_id="vfhq/Clip-Br2", dataset="vfhq", kind="source", status="ok", shard="vfhq-00000-r4",
                attempt=4),
            sample_row(retried, "vfhq-00000-r4", tar) | {"item_id": "vfhq/Clip-Br2", "attempt": 4}])  # fmt: skip
    view = load_build(copy)
    after = counts(view)
    assert ("vfhq", "source", "failed") not in after and "decode_error" not in reasons(view)
    assert after[("vfhq", "source", "ok")] == before[("vfhq", "source", "ok")] + 1
    assert after[("vfhq", "sample", "ok")] == before[("vfhq", "sample", "ok")] + 1
    assert "1 row(s) of earlier attempts are replaced by a retry's rows and not counted." in view.notes
    assert "6 of 6 ok samples" in write_report(copy).read_text()


def test_contact_sheet_is_seeded_and_shows_the_drawn_samples(build: Build, tmp_path: Path) -> None:
    pool = load_build(build.root).pool
    first = list(choose_samples(pool, 3, seed=7)["key"])
    shuffled = pa.concat_tables([pool.take(list(reversed(range(pool.num_rows)))), pool.slice(0, 2)])
    assert first == list(choose_samples(sample_pool(shuffled), 3, seed=7)["key"])  # nor row order nor repeats matter
    assert len(set(first)) == 3 and set(first) <= set(build.committed_keys)
    draws = {tuple(choose_samples(pool, 3, seed=seed)["key"]) for seed in range(8)}
    assert len(draws) > 1
    assert len(choose_samples(pool, 50, seed=0)) == 5

    page = write_report(build.root, out_html=tmp_path / "r" / "page.html", samples=3, seed=7)
    text = page.read_text()
    assert f"<img src='{SHEET}'" in text and "3 of 5 ok samples (asked for 3, seed 7)" in text
    shown = re.findall(r"<tr><td>([^<]+)</td>", text.split("<h2>Contact sheet</h2>")[1])
    assert shown == first
    with Image.open(page.parent / SHEET) as sheet:  # 3 cells, two per row: two rows
        assert sheet.size[1] == 2 * (TILE + CAPTION + 3 * GAP) + GAP
    assert pixels(page.parent / SHEET, DOT_COLOR) > 200 and pixels(page.parent / SHEET, BOX_COLOR) > 200


def test_draw_tile_puts_dots_and_box_where_the_arrays_say() -> None:
    frame = np.zeros((1024, 1024, 3), np.uint8)
    landmarks = np.full((478, 2), np.nan, np.float16)
    landmarks[0], landmarks[1] = (512, 512), (96, 900)
    box = np.array([256, 256, 768, 768], np.float32)
    tile = np.asarray(draw_tile(frame, landmarks, box, side=192))
    assert tile.shape == (192, 192, 3)
    scale = 192 / 1024
    for x, y in ((512, 512), (96, 900)):
        assert tuple(tile[round(y * scale), round(x * scale)]) == DOT_COLOR
    assert tuple(tile[96, round(256 * scale)]) == BOX_COLOR  # left edge of the box, halfway down
    assert (tile == DOT_COLOR).all(axis=-1).sum() == 8  # two 2x2 dots, nothing for the NaN points
    no_face = np.asarray(draw_tile(frame, np.full((478, 2), np.nan, np.float16), np.full(4, np.nan, np.float32)))
    assert not no_face.any()


def test_partial_build_with_broken_parts_gives_notes_not_errors(copy: Path) -> None:
    shards = copy / "shards"
    tar = shards / "vfhq-00000-01.tar"
    tar.write_bytes(tar.read_bytes()[:5000])  # committed, then damaged on disk
    (shards / "ffhq-00000.parquet").write_bytes(b"PAR1 garbage")
    broken = clip_sample("vfhq_Clip-Dd1-F0-9_aa00aa_c000", frames=9, seed=2)
    broken["mp4"] = broken["mp4"][:4000]
    flat = clip_sample("vfhq_Clip-Dd1-F0-9_aa00aa_c001", frames=9, seed=2)
    flat["landmarks.npy"] = npy(np.zeros((9, 478), np.float16))  # (T, 478): the x/y axis is missing
    commit(copy, "vfhq-00002", {"shards/vfhq-00002-00.tar": [broken, flat]},
           [row(item_id="vfhq/Clip-Dd1", dataset="vfhq", kind="source", status="ok", shard="vfhq-00002"),
            sample_row(broken, "vfhq-00002", "shards/vfhq-00002-00.tar", face_px=float("inf")),
            sample_row(flat, "vfhq-00002", "shards/vfhq-00002-00.tar")])  # fmt: skip
    stats = json.loads((shards / "vfhq-00002.stats.json").read_text())
    stats["tars"].append("vfhq-00002-01.tar")  # listed, never written
    (shards / "vfhq-00002.stats.json").write_text(json.dumps(stats))
    (shards / "vfhq-00003.stats.json").write_text("{")  # a half-written marker
    page = write_report(copy, samples=16)
    text = page.read_text()
    assert "work shard ffhq-00000 is committed but its table shards/ffhq-00000.parquet is unreadable" in text
    assert "shards/vfhq-00003.stats.json is unreadable" in text
    assert "work shard vfhq-00002 is committed but its tar(s) vfhq-00002-01.tar are missing." in text
    assert text.count("are missing") == 1
    assert "sample vfhq_Clip-Xy9-F0-16_77aa01_c000 could not be drawn: ValueError: lacks member(s) landmarks" in text
    assert "sample vfhq_Clip-Dd1-F0-9_aa00aa_c000 could not be drawn: InvalidDataError: Invalid data found" in text
    assert "sample vfhq_Clip-Dd1-F0-9_aa00aa_c001 could not be drawn: ValueError: json, landmarks.npy" in text
    assert "2 of 5 ok samples" in text  # the two clips of the intact tar
    assert all((page.parent / name).is_file() for name in linked(page))
    assert "ffhq" not in {dataset for dataset, _, _ in load_build(copy).tally.groups}


def test_empty_build_says_so_and_links_nothing(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    text = write_report(bare).read_text()
    assert "build.json is missing" in text and "No work shard is committed yet" in text
    assert "does not say whether an evaluation split was excluded" in text
    assert linked(bare / "report" / "index.html") == [] and "No contact sheet" in text

    started = tmp_path / "started"
    (started / "shards").mkdir(parents=True)
    (started / "build.json").write_text(json.dumps({"fingerprint": "fp-0", "config": {}, "excluded_split": None}))
    text = write_report(started).read_text()
    assert "<b>No evaluation split was excluded</b>" in text and "fp-0" in text
    assert "build.json is missing" not in text and "No work shard is committed yet" in text
    commit(started, "vfhq-00000", {}, [])  # committed, but every item went nowhere (e.g. a crash-free no-op)
    text = write_report(started).read_text()
    assert "1 committed work shard(s): 0 tar(s), 0 samples" in text and "No work shard is committed" not in text
    assert "No data to plot yet" in text and "No contact sheet: no committed ok sample to show" in text
    with pytest.raises(FileNotFoundError, match="no build directory"):
        write_report(tmp_path / "absent")


def test_rerun_into_the_same_folder_drops_pictures_it_no_longer_links(build: Build, tmp_path: Path) -> None:
    page = write_report(build.root, out_html=tmp_path / "out" / "index.html", samples=2)
    assert len(list(page.parent.glob("*.png"))) == 7
    (page.parent / "notes.txt").write_text("mine")  # not the report's: left alone
    empty = tmp_path / "empty"
    empty.mkdir()
    write_report(empty, out_html=page)
    assert sorted(p.name for p in page.parent.iterdir()) == ["index.html", "notes.txt"]
