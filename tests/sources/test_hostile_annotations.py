"""Hostile values in official files: every adapter drops an item it cannot build, with a problem naming it.

Each case writes an annotation whose right answer is known: an infinite, NaN or negative time, a box or
crop without area, a zero size; paths that lead out of the dataset root. A dropped item's problem has
no item_id (it has no row of its own, so the build manifest keeps the problem as a row).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kit import item, run_adapter

from pipeline.sources.records import Problem, invalid_values


def _invalid(problems: list[Problem]) -> list[tuple[str, str]]:
    """(file, detail) of the invalid_value problems, which must carry no item_id."""
    found = [p for p in problems if p.reason == "invalid_value"]
    assert all(p.item_id is None for p in found), found
    return sorted((p.file, p.detail) for p in found)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"start": float("inf"), "end": 5.0}, "start inf"),
        ({"start": 0.0, "end": float("nan")}, "end nan"),
        ({"start": -1.0, "end": 5.0}, "start -1.0"),
        ({"start": 5.0, "end": 5.0, "end_inclusive": False}, "ends before it starts"),
        ({"fps": 0.0}, "fps 0.0"),
        ({"fps": float("-inf")}, "fps -inf"),
        ({"space_w": 0}, "space_w 0"),
        ({"crop": (10.0, 10.0, 10.0, 50.0)}, "crop: (10, 10, 10, 50) has no area"),
        ({"box": (0.0, 0.0, float("nan"), 5.0)}, "box: (0, 0, nan, 5) is not finite"),
        ({"frame_boxes": (0.0, 0.0, 4.0, 4.0, 5.0, 5.0, 1.0, 9.0)}, "frame_boxes: (5, 5, 1, 9) has no area"),
        ({"landmarks": (1.0, float("inf"))}, "landmarks"),
        ({"frame_index": (3, -1)}, "negative frame number -1"),
    ],
)
def test_every_hostile_value_is_named(values: dict[str, object], field: str) -> None:
    problem = invalid_values(item(**values))
    assert problem is not None and field in problem


def test_usable_values_pass_including_boxes_past_the_edge() -> None:
    # a one-frame inclusive range, a huge but finite end (shortened to the media when built) and a
    # loose box reaching past the image's top-left corner (VGGFace2) are all usable
    assert invalid_values(item(start=7, end=7, end_inclusive=True, fps=25.0)) is None
    assert invalid_values(item(time_unit="sec", start=0.0, end=1e308, end_inclusive=False)) is None
    assert invalid_values(item(box=(-12.0, -3.0, 60.0, 80.0), space_w=1, space_h=1)) is None


def test_celebvhq_infinite_nan_negative_and_empty_values(tmp_path: Path) -> None:
    good = {
        "ytb_id": "a-b_cdefghi",
        "duration": {"start_sec": 1.0, "end_sec": 3.5},
        "bbox": {"top": 0.1, "bottom": 0.5, "left": 0.2, "right": 0.6},
        "attributes": {},
    }

    def clip(start: object, end: object, **bbox: float) -> dict[str, object]:
        return {**good, "duration": {"start_sec": start, "end_sec": end}, "bbox": {**good["bbox"], **bbox}}

    clips = {
        "a-b_cdefghi_0": good,
        "a-b_cdefghi_1": clip("inf", 5.0),
        "a-b_cdefghi_2": clip(0.0, "NaN"),
        "a-b_cdefghi_3": clip(-2.0, 5.0),
        "a-b_cdefghi_4": clip(0.0, "Infinity"),
        "a-b_cdefghi_5": clip(0.0, 5.0, left=0.4, right=0.4),  # a face box without width
        "a-b_cdefghi_6": clip(0.0, 1e308),  # finite: kept, the build shortens it to the media with a note
    }
    (tmp_path / "celebvhq_info.json").write_text(json.dumps({"meta_info": {}, "clips": clips}))
    items, problems = run_adapter("celebvhq", tmp_path)
    assert [(item.native_id, item.end) for item in items] == [("a-b_cdefghi_0", 3.5), ("a-b_cdefghi_6", 1e308)]
    invalid = _invalid(problems)
    assert [file for file, _ in invalid] == ["celebvhq_info.json"] * 5
    details = " | ".join(detail for _, detail in invalid)
    for expected in ("_1: start inf", "_2: end nan", "_3: start -2.0", "_4: end inf", "'a-b_cdefghi_5': bbox"):
        assert expected in details


def test_talkinghead_negative_frame_and_zero_size(tmp_path: Path) -> None:
    (tmp_path / "data_list").mkdir()
    (tmp_path / "data_list" / "train_video_tubes.txt").write_text(
        "--Y9imYnfBw_0000, 720, 1280, 0, 271, 504, 63, 792, 351\n"
        "--Y9imYnfBw_0001, 720, 1280, -5, 271, 504, 63, 792, 351\n"
        "--Y9imYnfBw_0002, 0, 1280, 0, 271, 504, 63, 792, 351\n"
    )
    (tmp_path / "data_list" / "val_video_tubes.txt").write_text("")
    items, problems = run_adapter("talkinghead_1kh", tmp_path)
    assert [item.native_id for item in items] == ["--Y9imYnfBw_0000_S0_E271_L504_T63_R792_B351"]
    invalid = _invalid(problems)
    assert [file for file, _ in invalid] == ["data_list/train_video_tubes.txt"] * 2
    assert "_S-5_" in invalid[0][1] + invalid[1][1] and "start -5 is not a finite number >= 0" in invalid[0][1]
    assert "space_h 0 is not above 0" in invalid[1][1]


def test_hdtf_empty_interval_crop_without_area_and_zero_height(tmp_path: Path) -> None:
    (tmp_path / "RD_video_url.txt").write_text("Anna https://www.youtube.com/watch?v=abcdefghijk\n")
    (tmp_path / "RD_resolution.txt").write_text("Anna.mp4 0\n")
    (tmp_path / "RD_annotion_time.txt").write_text("Anna.mp4 00:10-00:05 00:20-00:30 00:40-00:50\n")
    (tmp_path / "RD_crop_wh.txt").write_text("Anna_1.mp4 10 0 20 0\nAnna_2.mp4 10 100 20 100\n")
    items, problems = run_adapter("hdtf", tmp_path)
    # interval 0 ends before it starts: dropped; interval 1 keeps going without its empty crop window
    assert [(item.native_id, item.crop, item.space_h) for item in items] == [
        ("RD_Anna_1", None, None),
        ("RD_Anna_2", (10.0, 20.0, 110.0, 120.0), None),
    ]
    assert [(p.file, p.line) for p in problems if p.reason == "invalid_value"] == [
        ("RD_resolution.txt", 1),
        ("RD_crop_wh.txt", 1),
        ("RD_annotion_time.txt", 1),
    ]
    assert "hdtf/RD_Anna_0: interval 0 of Anna ends before it starts" in _invalid(problems)[0][1]
    assert {p.item_id for p in problems if p.reason == "no_crop_window"} == {"hdtf/RD_Anna_1"}


VFHQ_META = """Video ID: XZ2qCoO0gbU
H: 1080
W: {width}
FPS: {fps}

FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]

157105 00000000 800 300 {box_w} 250 850 400 950 400 900 450 860 500 940 500
CROP: 700 200 {crop_x1} 600
"""


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"fps": "inf"}, "fps inf"),
        ({"fps": "nan"}, "fps nan"),
        ({"width": "0"}, "space_w 0"),
        ({"crop_x1": "700"}, "crop: (700, 200, 700, 600) has no area"),
        ({"box_w": "-200"}, "frame_boxes: (800, 300, 600, 550) has no area"),
    ],
)
def test_vfhq_hostile_header_crop_and_frame_box(tmp_path: Path, values: dict[str, str], field: str) -> None:
    name = "Clip+XZ2qCoO0gbU+P0+C2+F157105-157607"
    meta = tmp_path / "meta_info" / "train" / f"{name}.txt"
    meta.parent.mkdir(parents=True)
    meta.write_text(VFHQ_META.format(**({"width": "1920", "fps": "25", "box_w": "200", "crop_x1": "1100"} | values)))
    items, problems = run_adapter("vfhq", tmp_path)
    assert items == []
    ((file, detail),) = _invalid(problems)
    assert file == f"meta_info/train/{name}.txt" and detail.startswith(f"vfhq/{name}: {field}")


def test_celeba_box_without_area_and_nan_landmarks(tmp_path: Path) -> None:
    (tmp_path / "Img" / "img_celeba").mkdir(parents=True)
    for n in (1, 2, 3):
        (tmp_path / "Img" / "img_celeba" / f"{n:06d}.jpg").write_bytes(b"x")
    (tmp_path / "Eval").mkdir()
    (tmp_path / "Eval" / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 0\n")
    (tmp_path / "Anno").mkdir()
    (tmp_path / "Anno" / "identity_CelebA.txt").write_text("000001.jpg 1\n000002.jpg 2\n000003.jpg 3\n")
    boxes = ["3", "image_id x_1 y_1 width height", "000001.jpg 95 71 226 313", "000002.jpg 95 71 0 313"]
    (tmp_path / "Anno" / "list_bbox_celeba.txt").write_text("\n".join([*boxes, "000003.jpg 95 71 226 313"]) + "\n")
    marks = ["000001.jpg" + " 1" * 10, "000002.jpg" + " 1" * 10, "000003.jpg" + " nan" + " 1" * 9]
    (tmp_path / "Anno" / "list_landmarks_celeba.txt").write_text("\n".join(["3", "lefteye_x ...", *marks]) + "\n")
    items, problems = run_adapter("celeba", tmp_path)
    assert [item.native_id for item in items] == ["000001"]
    assert _invalid(problems) == [
        ("Img/img_celeba/000002.jpg", "celeba/000002: box: (95, 71, 95, 384) has no area (x1 <= x0 or y1 <= y0)"),
        ("Img/img_celeba/000003.jpg", "celeba/000003: landmarks: a point is not a finite number"),
    ]


def test_vggface2_infinite_and_negative_box_sizes(tmp_path: Path) -> None:
    (tmp_path / "train" / "n000009").mkdir(parents=True)
    names = ("0001_01", "0002_01", "0003_01")
    for name in names:
        (tmp_path / "train" / "n000009" / f"{name}.jpg").write_bytes(b"\xff\xd8 not decoded by a scan")
    (tmp_path / "train_list.txt").write_text("".join(f"n000009/{name}.jpg\n" for name in names))
    (tmp_path / "test_list.txt").write_text("")
    (tmp_path / "identity_meta.csv").write_text('Class_ID, Name, Sample_Num, Flag, Gender\nn000009, "A", 3, 1, f\n')
    (tmp_path / "bb_landmark").mkdir()
    rows = ['"n000009/0001_01",-4,-6,79,109', '"n000009/0002_01",4,6,inf,109', '"n000009/0003_01",4,6,79,-109']
    (tmp_path / "bb_landmark" / "loose_bb_train.csv").write_text("NAME_ID,X,Y,W,H\n" + "\n".join(rows) + "\n")
    marks = "".join(f'"n000009/{name}"' + ",1" * 10 + "\n" for name in names)
    (tmp_path / "bb_landmark" / "loose_landmark_train.csv").write_text("NAME_ID\n" + marks)
    (tmp_path / "bb_landmark" / "loose_bb_test.csv").write_text("NAME_ID,X,Y,W,H\n")
    (tmp_path / "bb_landmark" / "loose_landmark_test.csv").write_text("NAME_ID\n")
    items, problems = run_adapter("vggface2", tmp_path)
    assert [(item.native_id, item.box) for item in items] == [("n000009/0001_01", (-4.0, -6.0, 75.0, 103.0))]
    invalid = _invalid(problems)
    assert [file for file, _ in invalid] == ["train/n000009/0002_01.jpg", "train/n000009/0003_01.jpg"]
    assert "is not finite" in invalid[0][1] and "has no area" in invalid[1][1]


def _ffhq_entry(index: int, path: str, size: list[object]) -> dict[str, object]:
    return {
        "category": "training",
        "metadata": {"license": "Public Domain Mark"},
        "image": {"file_path": path, "pixel_size": size, "face_landmarks": [[512.0, 400.0]] * 68},
    }


def test_ffhq_zero_and_infinite_sizes_and_paths_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "ffhq"
    (root / "images1024x1024" / "00000").mkdir(parents=True)
    (root / "images1024x1024" / "00000" / "00000.png").write_bytes(b"png")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for training")
    os.symlink(secret, root / "images1024x1024" / "00000" / "00004.png")
    entries = {
        "0": _ffhq_entry(0, "images1024x1024/00000/00000.png", [1024, 1024]),
        "1": _ffhq_entry(1, "images1024x1024/00000/00001.png", [0, 0]),
        "2": _ffhq_entry(2, "images1024x1024/00000/00002.png", ["inf", 1024]),
        "3": _ffhq_entry(3, "../secret.png", [1024, 1024]),
        "4": _ffhq_entry(4, "images1024x1024/00000/00004.png", [1024, 1024]),
        "5": _ffhq_entry(5, str(secret), [1024, 1024]),
    }
    (root / "ffhq-dataset-v2.json").write_text(json.dumps(entries))
    items, problems = run_adapter("ffhq", root)
    assert [(item.native_id, item.media_status) for item in items] == [
        ("00000", "present"),
        ("00003", "outside_root"),
        ("00004", "outside_root"),
        ("00005", "outside_root"),
    ]
    by_reason = {(p.reason, p.file) for p in problems}
    assert ("invalid_value", "ffhq-dataset-v2.json") in by_reason  # entry 1: no pixels
    assert ("malformed_entry", "ffhq-dataset-v2.json") in by_reason  # entry 2: "inf" is no pixel count
    outside = {p.item_id: p.detail for p in problems if p.reason == "media_outside_root"}
    assert set(outside) == {"ffhq/00003", "ffhq/00004", "ffhq/00005"}
    assert all(str(secret) in detail for detail in outside.values())


def test_mead_take_and_vfhq_frame_linked_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "take.mp4").write_bytes(b"mp4")
    (outside / "00000001.png").write_bytes(b"png")
    level = tmp_path / "mead" / "M003" / "video" / "front" / "angry" / "level_1"
    level.mkdir(parents=True)
    (level / "001.mp4").write_bytes(b"mp4")
    os.symlink(outside / "take.mp4", level / "002.mp4")
    items, problems = run_adapter("mead", tmp_path / "mead")
    assert [(item.native_id, item.media_status) for item in items] == [
        ("M003/front/angry/level_1/001", "present"),
        ("M003/front/angry/level_1/002", "outside_root"),
    ]
    assert [p.item_id for p in problems if p.reason == "media_outside_root"] == ["mead/M003/front/angry/level_1/002"]

    name = "Clip+XZ2qCoO0gbU+P0+C2+F157105-157607"
    vfhq = tmp_path / "vfhq"
    (vfhq / "meta_info" / "train").mkdir(parents=True)
    meta = VFHQ_META.format(width="1920", fps="25", box_w="200", crop_x1="1100")
    (vfhq / "meta_info" / "train" / f"{name}.txt").write_text(meta)
    (vfhq / "frames" / name).mkdir(parents=True)
    (vfhq / "frames" / name / "00000000.png").write_bytes(b"png")
    os.symlink(outside / "00000001.png", vfhq / "frames" / name / "00000001.png")
    (item,), problems = run_adapter("vfhq", vfhq)
    assert item.media_status == "outside_root"
    (problem,) = [p for p in problems if p.reason == "media_outside_root"]
    assert problem.detail.startswith("00000001.png links to") and str(outside) in problem.detail
