from __future__ import annotations

from pathlib import Path

from kit import reasons, run_adapter


def test_sample_layout(sample_root: Path) -> None:
    items, problems = run_adapter("talkinghead_1kh", sample_root / "talkinghead_1kh")
    assert [item.native_id for item in items] == [
        "-_k2Lx9Qe0A_0000_S0_E39_L210_T18_R822_B630",
        "-_k2Lx9Qe0A_0000_S50_E85_L480_T32_R1060_B612",
        "Qm3_r8Tz-Lw_0000_S2_E33_L122_T15_R388_B281",
    ]
    first, second, val = items
    assert [item.split for item in items] == ["train", "train", "val"]
    assert first.youtube_id == "-_k2Lx9Qe0A" and first.identity == "talkinghead_1kh:-_k2Lx9Qe0A"
    assert first.media_path == "train/cropped_clips/-_k2Lx9Qe0A_0000_S0_E39_L210_T18_R822_B630.mp4"
    assert first.media_cut and (first.start, first.end, first.end_inclusive) == (0, 39, True)
    # the box is L,T,R,B in the annotated 1280x720 frame (the download is 640x360: the build rescales)
    assert first.crop == (210.0, 18.0, 822.0, 630.0) and (first.space_w, first.space_h) == (1280, 720)
    # no cropped clip for the second tube: it is cut from its 1-min chunk
    assert second.media_path == "train/1min_clips/-_k2Lx9Qe0A_0000.mp4" and not second.media_cut
    assert (second.time_unit, second.start, second.end) == ("frame", 50, 85)
    assert val.media_status == "present"
    assert reasons(problems) == [("data_list/train_video_tubes.txt", "malformed_line")]
    assert problems[0].line == 3


def test_ids_with_dashes_duplicates_and_bad_ranges(tmp_path: Path) -> None:
    (tmp_path / "data_list").mkdir()
    (tmp_path / "data_list" / "train_video_tubes.txt").write_text(
        "--Y9imYnfBw_0000, 720, 1280, 0, 271, 504, 63, 792, 351\n"
        "--Y9imYnfBw_0000, 720, 1280, 0, 271, 504, 63, 792, 351\n"
        "--Y9imYnfBw_0001, 720, 1280, 30, 10, 504, 63, 792, 351\n"
        "short_0001, 720, 1280, 0, 10, 1, 2, 3, 4\n"
    )
    (tmp_path / "data_list" / "val_video_tubes.txt").write_text("")
    items, problems = run_adapter("talkinghead_1kh", tmp_path)
    (item,) = items
    assert item.native_id == "--Y9imYnfBw_0000_S0_E271_L504_T63_R792_B351"
    assert item.youtube_id == "--Y9imYnfBw" and item.labels["chunk"] == "--Y9imYnfBw_0000"
    assert item.media_status == "missing"
    assert sorted((p.line, p.reason) for p in problems if p.line) == [
        (2, "duplicate_id"),
        (3, "invalid_value"),
        (4, "malformed_line"),
    ]
