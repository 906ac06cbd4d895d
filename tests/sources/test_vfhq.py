from __future__ import annotations

from pathlib import Path

from kit import reasons, run_adapter

META = """Video ID: XZ2qCoO0gbU
H: 1080
W: 1920
FPS: 29.97

FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]

157105 00000000 800 300 200 250 850 400 950 400 900 450 860 500 940 500
157106 00000000 802 301 200 250 852 401 952 401 902 451 862 501 942 501
CROP: 700 200 1100 600
"""
NAME = "Clip+XZ2qCoO0gbU+P0+C2+F157105-157607"


def test_meta_file_conversion(tmp_path: Path) -> None:
    (tmp_path / "meta_info" / "train").mkdir(parents=True)
    (tmp_path / "meta_info" / "train" / f"{NAME}.txt").write_text(META)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "XZ2qCoO0gbU.webm").write_bytes(b"webm")
    items, problems = run_adapter("vfhq", tmp_path)
    (item,) = items
    assert item.native_id == NAME and item.youtube_id == "XZ2qCoO0gbU"
    assert item.identity == "vfhq:XZ2qCoO0gbU+P0" and item.identity_kind == "proxy_track"
    assert (item.modality, item.media_path, item.media_cut) == ("video", "raw/XZ2qCoO0gbU.webm", False)
    # the reference extraction takes start+1 .. end-1; that exact inclusive range is stored
    assert (item.time_unit, item.start, item.end, item.end_inclusive) == ("frame", 157106, 157606, True)
    assert item.fps == 29.97 and (item.space_w, item.space_h) == (1920, 1080)
    assert item.crop == (700.0, 200.0, 1100.0, 600.0)
    assert item.frame_index == (157105, 157106)
    assert item.frame_boxes[:4] == (800.0, 300.0, 1000.0, 550.0)  # x, y, w, h -> corners
    assert item.frame_landmarks[:4] == (850.0, 400.0, 950.0, 400.0)
    assert reasons(problems) == [("meta_info/test", "missing_annotation_file")]


def test_sample_layout(sample_root: Path) -> None:
    items, problems = run_adapter("vfhq", sample_root / "vfhq")
    assert [(item.native_id, item.split, item.modality) for item in items] == [
        ("Clip+Ab3_dE-7fGh+P0+C0+F100-130", "train", "frames"),
        ("Clip+Ab3_dE-7fGh+P1+C1+F100-130", "train", "frames"),
        ("Clip+Zz9-yX_8wVu+P0+C2+F10-50", "test", "video"),
    ]
    p0, p1, test = items
    assert p0.identity != p1.identity and p0.youtube_id == p1.youtube_id == "Ab3_dE-7fGh"
    assert p0.media_path == "frames/Clip+Ab3_dE-7fGh+P0+C0+F100-130" and p0.media_cut
    assert len(p0.frame_index) == 31 and len(p0.frame_boxes) == 31 * 4 and len(p0.frame_landmarks) == 31 * 10
    assert len(p1.frame_index) == 30  # its malformed frame line is reported, not guessed
    assert test.media_path == "raw/Zz9-yX_8wVu.mp4" and (test.start, test.end) == (11, 49)
    assert reasons(problems) == [("meta_info/train/Clip+Ab3_dE-7fGh+P1+C1+F100-130.txt", "malformed_line")]


def test_broken_names_and_headers(tmp_path: Path) -> None:
    folder = tmp_path / "meta_info" / "test"
    folder.mkdir(parents=True)
    (tmp_path / "meta_info" / "train").mkdir()
    (folder / "Clip_XZ2qCoO0gbU_P0.txt").write_text(META)
    (folder / f"{NAME}.txt").write_text(META.replace("FPS: 29.97\n", "").replace("CROP: 700 200 1100 600\n", ""))
    items, problems = run_adapter("vfhq", tmp_path)
    assert items == []
    assert reasons(problems) == [
        ("meta_info/test/Clip+XZ2qCoO0gbU+P0+C2+F157105-157607.txt", "malformed_line"),
        ("meta_info/test/Clip_XZ2qCoO0gbU_P0.txt", "invalid_value"),
    ]
