from __future__ import annotations

from collections import Counter
from pathlib import Path

from kit import reasons, run_adapter

# datasets.md §6: the 15 annotated intervals that have no crop window
NO_CROP = {
    "RD_Radio6_0",
    "RD_Radio15_0",
    "WDA_DeanPhillips_0",
    "WDA_JimMcGovern_0",
    "WDA_JimMcGovern1_0",
    "WDA_JeffMerkley0_0",
    "WDA_LindaSnchez_0",
    "WDA_ByronDorgan0_0",
    "WRA_BillCassidy_0",
    "WRA_CandiceMiller_0",
    "WRA_DuncanHunter_1",
    "WRA_JaimeHerreraBeutler_0",
    "WRA_KevinBrady0_0",
    "WRA_MittRomney_1",
    "WRA_RudyGiuliani_0",
}


def test_real_annotation_files(hdtf_fixture: Path) -> None:
    items, problems = run_adapter("hdtf", hdtf_fixture)
    assert len(items) == 436  # every annotated interval
    flagged = {p.item_id.split("/", 1)[1] for p in problems if p.reason == "no_crop_window"}
    assert flagged == NO_CROP
    assert sum(1 for item in items if item.crop is not None) == 421
    assert [(p.file, p.line, p.detail) for p in problems if p.reason == "no_intervals"] == [
        ("RD_video_url.txt", 24, "Radio24 has no interval in RD_annotion_time.txt")
    ]
    assert Counter(p.reason for p in problems) == {
        "missing_media": 436,
        "no_crop_window": 15,
        "no_intervals": 1,
        "invalid_value": 1,
    }
    # the official WRA_resolution.txt states a height of 0: its crops cannot be rescaled by it
    assert [(p.file, p.line) for p in problems if p.reason == "invalid_value"] == [("WRA_resolution.txt", 76)]
    assert {item.space_h for item in items if item.labels["name"] == "KevinMcCarthy1"} == {None}
    by_id = {item.native_id: item for item in items}
    # the byte-order mark does not eat the first name of WDA_video_url.txt
    assert by_id["WDA_CarolynMaloney2_0"].youtube_id == "RApGxN-O9Qc"
    assert by_id["RD_Radio2_0"].youtube_id == "uBWJJvynXpA"  # the URL carries &t=6s
    # unordered intervals keep their index on the line
    assert (by_id["WRA_MittRomney_0"].start, by_id["WRA_MittRomney_0"].end) == (490.0, 510.0)
    assert (by_id["WRA_MittRomney_1"].start, by_id["WRA_MittRomney_1"].end) == (33.0, 533.0)
    # one YouTube video under two names is one person
    assert by_id["WDA_WhipJimClyburn_0"].identity == by_id["WDA_JamesClyburn1_0"].identity == "hdtf:JamesClyburn"
    assert by_id["WDA_JeffMerkley0_0"].identity == "hdtf:JeffMerkley"
    assert by_id["RD_Radio2_0"].identity_kind == "proxy_video"
    assert len({item.identity for item in items if item.identity_kind == "name"}) == 219
    # x w y h -> x0, y0, x1, y1 at the reference resolution: "Radio10_0.mp4 483 390 0 390" at 720p
    radio10 = by_id["RD_Radio10_0"]
    assert radio10.crop == (483.0, 0.0, 873.0, 390.0) and radio10.space_h == 720
    assert radio10.geometry_space == "source" and radio10.time_unit == "sec"


def test_sample_layout(sample_root: Path) -> None:
    items, problems = run_adapter("hdtf", sample_root / "hdtf")
    by_id = {item.native_id: item for item in items}
    assert sorted(by_id) == [
        "RD_Radio3_0",
        "WDA_JaneDoe0_0",
        "WDA_JaneDoe0_1",
        "WDA_JaneDoe1_0",
        "WRA_AnnaRoe_0",
        "WRA_AnnaRoe_1",
        "WRA_FayRoe_0",
        "WRA_FayRoe_1",
        "WRA_JohnRoe_0",
        "WRA_JohnRoe_1",
    ]
    # the downloader numbers clips over intervals with a crop window: JohnRoe's clip 000 is interval 1
    assert by_id["WRA_JohnRoe_1"].media_path == "WRA_JohnRoe_000.mp4"
    assert by_id["WRA_JohnRoe_0"].media_status == "missing" and by_id["WRA_JohnRoe_0"].crop is None
    assert by_id["WDA_JaneDoe0_1"].media_path == "WDA_JaneDoe0_001.mp4" and by_id["WDA_JaneDoe0_1"].media_cut
    assert by_id["WDA_JaneDoe1_0"].media_path == "_videos_raw/WDA_JaneDoe1.mp4"
    assert not by_id["WDA_JaneDoe1_0"].media_cut and (by_id["WDA_JaneDoe1_0"].start, by_id["WDA_JaneDoe1_0"].end) == (
        1,
        3,
    )
    assert by_id["WDA_JaneDoe1_0"].youtube_id == "Zx8_yW7-vU6"
    assert {by_id[i].identity for i in ("WDA_JaneDoe0_0", "WDA_JaneDoe1_0")} == {"hdtf:JaneDoe"}
    # the alias WhipJohnRoe lists JohnRoe's interval 1 again: its frames are built once, as JohnRoe's
    assert by_id["WRA_JohnRoe_1"].labels["overlap"]["intervals"] == [{"id": "WRA_WhipJohnRoe_0", "start": 0, "end": 2}]
    assert by_id["RD_Radio3_0"].identity == "hdtf:Rr4_Tt5-Yy6"
    assert reasons(problems) == [
        ("HDTF_dataset/RD_video_url.txt", "no_intervals"),
        ("HDTF_dataset/WRA_annotion_time.txt", "no_crop_window"),
        ("HDTF_dataset/WRA_annotion_time.txt", "overlapping_interval"),
        ("JohnRoe_0.mp4", "missing_media"),
    ]


def test_malformed_lines(tmp_path: Path) -> None:
    (tmp_path / "RD_video_url.txt").write_text("Radio1 https://www.youtube.com/watch?v=CPCoMyuBRM0\nRadio2 not-a-url\n")
    (tmp_path / "RD_resolution.txt").write_text("Radio1.mp4 720\n")
    (tmp_path / "RD_annotion_time.txt").write_text("Radio1.mp4 00:20-01:35 1:2:3 01:00-00:50\n")
    (tmp_path / "RD_crop_wh.txt").write_text("Radio1_0.mp4 10 100 20 100\nRadio1_2.mp4 1 2 3\n")
    for sub in ("WDA", "WRA"):
        for kind in ("video_url", "resolution", "annotion_time", "crop_wh"):
            (tmp_path / f"{sub}_{kind}.txt").write_text("")
    spec_items, problems = run_adapter("hdtf", tmp_path)
    assert [(i.native_id, i.start, i.end, i.crop) for i in spec_items] == [
        ("RD_Radio1_0", 20.0, 95.0, (10.0, 20.0, 110.0, 120.0))
    ]
    assert sorted((p.file, p.line, p.reason) for p in problems if p.reason != "missing_media") == [
        ("RD_annotion_time.txt", 1, "invalid_value"),
        ("RD_annotion_time.txt", 1, "malformed_line"),
        ("RD_crop_wh.txt", 2, "malformed_line"),
        ("RD_video_url.txt", 2, "malformed_line"),
    ]
