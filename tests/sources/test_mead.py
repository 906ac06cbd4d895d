from __future__ import annotations

from pathlib import Path

import pytest
from kit import reasons, run_adapter

from manifests.schema import SpecError, get_spec
from pipeline.sources import open_adapter


def test_sample_layout_split_rule_and_gaps(sample_root: Path) -> None:
    items, problems = run_adapter("mead", sample_root / "mead")
    assert len(items) == 23
    by_id = {item.native_id: item for item in items}
    # README protocol: per level, the last 10 neutral and the last 6 takes of other emotions are test
    neutral = [by_id[f"M003/front/neutral/level_1/{n:03d}"].split for n in range(1, 13)]
    assert neutral == ["train"] * 2 + ["test"] * 10
    angry = [by_id[f"M003/front/angry/level_1/{n:03d}"].split for n in range(1, 8)]
    assert angry == ["train"] + ["test"] * 6
    assert by_id["M003/left_30/angry/level_1/001"].split == "train"  # same utterance, same split
    assert {item.identity for item in items} == {"mead:M003", "mead:W017"}
    assert all(item.identity_kind == "actor" for item in items)
    take = by_id["M003/front/neutral/level_1/004"]
    assert take.media_path == "M003/video/front/neutral/level_1/004.mp4"
    assert take.audio_path == "M003/audio/neutral/level_1/004.m4a"
    assert take.labels == {"view": "front", "emotion": "neutral", "level": 1, "take": "004"}
    assert by_id["M003/front/angry/level_1/003"].media_status == "empty"
    assert reasons(problems) == [
        ("M003/video", "missing_view"),
        ("M003/video", "missing_view"),
        ("M003/video/front/angry/level_1/003.mp4", "empty_file"),
        ("M019/video.tar", "unextracted_archive"),
        ("W017/video", "missing_view"),
        ("W017/video", "missing_view"),
    ]
    w017 = [p.detail for p in problems if p.file == "W017/video"]
    assert "W017 has no front, top, left_30, left_60, right_30, right_60 view(s)" in w017


def test_view_selection_and_its_validation(sample_root: Path) -> None:
    spec = get_spec("mead").model_copy(update={"options": {"views": ["down"]}})
    problems: list = []
    items = list(open_adapter(spec, sample_root / "mead", problems.append).items())
    assert [item.native_id for item in items] == ["W017/down/neutral/level_1/001", "W017/down/neutral/level_1/002"]
    bad = get_spec("mead").model_copy(update={"options": {"views": ["front", "back"]}})
    with pytest.raises(SpecError, match=r"mead\.yaml.*options\.views.*back"):
        open_adapter(bad, sample_root / "mead", problems.append)
