from __future__ import annotations

from pathlib import Path

from kit import reasons, run_adapter


def test_sample_layout_items_identities_and_planted_problems(sample_root: Path) -> None:
    items, problems = run_adapter("vggface2", sample_root / "vggface2")
    ids = [item.native_id for item in items]
    assert ids == [
        "n000002/0001_01",
        "n000002/0002_01",
        "n000002/0003_01",
        "n000003/0001_01",
        "n000003/0002_01",
        "n000003/0003_01",
        "n000007/0001_01",
        "n000007/0002_01",
        "n000001/0001_01",
        "n000001/0002_01",
    ]
    by_id = {item.native_id: item for item in items}
    assert [by_id[i].split for i in ("n000002/0001_01", "n000001/0002_01")] == ["train", "test"]
    assert by_id["n000003/0001_01"].identity == "vggface2:n000003"
    assert by_id["n000003/0001_01"].identity_kind == "label"
    assert by_id["n000003/0001_01"].labels["name"] == '"Doe, Jane"'.strip('"')
    assert by_id["n000007/0001_01"].labels["name"] == "Naut, Astro"  # unquoted comma re-joined
    assert by_id["n000002/0003_01"].media_status == "missing"
    assert by_id["n000003/0002_01"].box is None  # its box line is the malformed one
    assert by_id["n000001/0001_01"].box is not None and len(by_id["n000001/0001_01"].landmarks) == 10
    assert reasons(problems) == [
        ("bb_landmark/loose_bb_train.csv", "malformed_line"),
        ("bb_landmark/loose_bb_train.csv", "missing_annotation"),
        ("train/n000002", "count_mismatch"),
        ("train/n000002/0003_01.jpg", "missing_media"),
    ]
    malformed = next(p for p in problems if p.reason == "malformed_line")
    assert malformed.line == 6 and "n000003/0002_01" in malformed.detail


def _layout(root: Path, bb_rows: list[str]) -> None:
    (root / "train" / "n000009").mkdir(parents=True)
    for name in ("0001_01", "0002_01"):
        (root / "train" / "n000009" / f"{name}.jpg").write_bytes(b"\xff\xd8 not decoded by a scan")
    (root / "train_list.txt").write_text("n000009/0001_01.jpg\nn000009/0002_01.jpg\n")
    (root / "test_list.txt").write_text("")
    (root / "identity_meta.csv").write_text(
        "Class_ID, Name, Sample_Num, Flag, Gender\nn000009, 14th_Dalai_Lama, Tenzin, 2, 1, m\n"
    )
    (root / "bb_landmark").mkdir()
    (root / "bb_landmark" / "loose_bb_train.csv").write_text("NAME_ID,X,Y,W,H\n" + "\n".join(bb_rows) + "\n")
    (root / "bb_landmark" / "loose_landmark_train.csv").write_text("NAME_ID\n")
    (root / "bb_landmark" / "loose_bb_test.csv").write_text("NAME_ID,X,Y,W,H\n")
    (root / "bb_landmark" / "loose_landmark_test.csv").write_text("NAME_ID\n")


def test_box_is_converted_from_xywh_and_kept_past_the_edge(tmp_path: Path) -> None:
    # rows out of order: the join must not depend on the companion file's order
    _layout(tmp_path, ['"n000009/0002_01",10,20,30,40', '"n000009/0001_01",60,-5,79,109'])
    items, problems = run_adapter("vggface2", tmp_path)
    boxes = {item.native_id: item.box for item in items}
    assert boxes == {"n000009/0001_01": (60.0, -5.0, 139.0, 104.0), "n000009/0002_01": (10.0, 20.0, 40.0, 60.0)}
    assert items[0].geometry_space == "media"
    assert items[0].labels["name"] == "14th_Dalai_Lama, Tenzin"
    assert ("bb_landmark/loose_landmark_train.csv", "missing_annotation") in reasons(problems)
    assert not [p for p in problems if p.reason in ("malformed_line", "count_mismatch")]
