from __future__ import annotations

import json
from pathlib import Path

import pytest
from kit import reasons, run_adapter

from pipeline.sources.celebvhq import official_crop


def test_sample_layout(sample_root: Path) -> None:
    root = sample_root / "celebvhq"
    items, problems = run_adapter("celebvhq", root)
    assert [item.native_id for item in items] == [
        "-xU_9kQ2mZ0_1",
        "-xU_9kQ2mZ0_2_0",
        "-xU_9kQ2mZ0_3",
        "Yk7_pQ3vW1s_0",
        "Yk7_pQ3vW1s_4",
    ]
    assert [item.youtube_id for item in items] == ["-xU_9kQ2mZ0"] * 3 + ["Yk7_pQ3vW1s"] * 2
    assert {item.identity for item in items} == {"celebvhq:-xU_9kQ2mZ0", "celebvhq:Yk7_pQ3vW1s"}
    assert all(item.identity_kind == "proxy_video" and item.split == "unsplit" for item in items)
    by_id = {item.native_id: item for item in items}
    processed = by_id["-xU_9kQ2mZ0_2_0"]
    assert processed.media_path == "downloaded_celebvhq/processed/-xU_9kQ2mZ0_2_0.mp4" and processed.media_cut
    assert (processed.time_unit, processed.start, processed.end, processed.end_inclusive) == ("sec", 1.2, 2.8, False)
    assert processed.labels["emotion"]["sep_flag"] is True
    assert processed.labels["appearance"] == ["male", "young", "no_beard"]
    assert processed.labels["action"] == ["talk"]
    # the unprocessed clip is cut from the raw video: normalized bbox -> source pixels at 384x288
    raw = by_id["-xU_9kQ2mZ0_3"]
    assert raw.media_path == "downloaded_celebvhq/raw/-xU_9kQ2mZ0.mp4" and not raw.media_cut
    bbox = json.loads((root / "celebvhq_info.json").read_text())["clips"]["-xU_9kQ2mZ0_3"]["bbox"]
    assert (raw.geometry_space, raw.space_w, raw.space_h) == ("source", 384, 288)
    assert raw.box == pytest.approx((bbox["left"] * 384, bbox["top"] * 288, bbox["right"] * 384, bbox["bottom"] * 288))
    assert problems == []  # the truncated clip needs --probe (see test_scan)


def test_official_crop_geometry() -> None:
    face, window = official_crop({"top": 0.2, "bottom": 0.6, "left": 0.3, "right": 0.5}, 1000, 500)
    assert face == pytest.approx((300.0, 100.0, 500.0, 300.0))
    # widened by 0.02: rows 90..310, columns 280..520 -> square of side 2*floor(220/2) around (400, 200)
    assert window == (290.0, 90.0, 510.0, 310.0)


def test_bad_clips_are_reported(tmp_path: Path) -> None:
    good = {
        "ytb_id": "a-b_cdefghi",
        "duration": {"start_sec": 1.0, "end_sec": 3.5},
        "bbox": {"top": 0.1, "bottom": 0.5, "left": 0.2, "right": 0.6},
        "attributes": {},
    }
    clips = {
        "a-b_cdefghi_7_2": good,
        "zzzzzzzzzzz_1": good,  # the key does not start with its ytb_id
        "a-b_cdefghi_8": {**good, "bbox": {"top": 0.1}},
        "a-b_cdefghi_9": {**good, "duration": {"start_sec": 4.0, "end_sec": 2.0}},
    }
    (tmp_path / "celebvhq_info.json").write_text(json.dumps({"meta_info": {}, "clips": clips}))
    items, problems = run_adapter("celebvhq", tmp_path)
    assert [(i.native_id, i.youtube_id, i.media_status) for i in items] == [
        ("a-b_cdefghi_7_2", "a-b_cdefghi", "missing")
    ]
    assert items[0].media_path == "downloaded_celebvhq/processed/a-b_cdefghi_7_2.mp4"
    assert reasons(problems) == [
        ("celebvhq_info.json", "invalid_value"),
        ("celebvhq_info.json", "invalid_value"),
        ("celebvhq_info.json", "malformed_entry"),
        ("downloaded_celebvhq/processed/a-b_cdefghi_7_2.mp4", "missing_media"),
        ("downloaded_celebvhq/processed/a-b_cdefghi_9.mp4", "missing_media"),  # its media were looked for first
    ]
