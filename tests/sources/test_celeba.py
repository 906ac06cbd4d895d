from __future__ import annotations

from pathlib import Path

from kit import reasons

from manifests.schema import get_spec
from pipeline.sources import open_adapter
from pipeline.sources.records import Problem, SourceItem


def _scan(root: Path, variant: str = "wild") -> tuple[list[SourceItem], list[Problem]]:
    spec = get_spec("celeba").model_copy(update={"options": {"variant": variant}})
    problems: list[Problem] = []
    return list(open_adapter(spec, root, problems.append).items()), problems


def test_sample_layout(sample_root: Path) -> None:
    items, problems = _scan(sample_root / "celeba")
    assert [item.native_id for item in items] == [f"{n:06d}" for n in range(1, 9)]
    assert [item.split for item in items] == ["train"] * 4 + ["val"] * 2 + ["test"] * 2
    assert [item.identity for item in items] == [f"celeba:{i}" for i in (101, 101, 102, 102, 103, 103, 104, 104)]
    # identities are disjoint across splits, as in the real partition
    by_split: dict[str, set[str | None]] = {}
    for item in items:
        by_split.setdefault(item.split, set()).add(item.identity)
    assert not (by_split["train"] & by_split["val"]) and not (by_split["val"] & by_split["test"])
    assert all(item.media_path.startswith("Img/img_celeba/") and item.media_status == "present" for item in items)
    assert problems == []  # the two-face image is a content problem: only the build can see it


def test_sample_aligned_variant_never_takes_wild_boxes(sample_root: Path) -> None:
    wild, _ = _scan(sample_root / "celeba", "wild")
    aligned, problems = _scan(sample_root / "celeba", "aligned")
    assert problems == []
    assert all(item.box is None for item in aligned)
    assert all(item.media_path.startswith("Img/img_align_celeba/") for item in aligned)
    assert [item.labels["wild_box"] for item in aligned] == [list(item.box) for item in wild]
    # aligned landmarks are the 178x218 ones, not the wild ones
    assert all(0 <= x < 178 for item in aligned for x in item.landmarks[0::2])
    assert [item.landmarks for item in aligned] != [item.landmarks for item in wild]


def _layout(root: Path, identity_text: bytes, bbox_rows: list[str], count: int) -> None:
    (root / "Img" / "img_celeba").mkdir(parents=True)
    for n in (1, 2):
        (root / "Img" / "img_celeba" / f"{n:06d}.jpg").write_bytes(b"x")
    (root / "Eval").mkdir()
    (root / "Eval" / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 2\n")
    (root / "Anno").mkdir()
    (root / "Anno" / "identity_CelebA.txt").write_bytes(identity_text)
    header = "image_id x_1 y_1 width height"
    (root / "Anno" / "list_bbox_celeba.txt").write_text("\n".join([str(count), header, *bbox_rows]) + "\n")
    marks = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
    rows = [f"{n:06d}.jpg" + "  1" * 10 for n in (1, 2)]
    (root / "Anno" / "list_landmarks_celeba.txt").write_text("\n".join(["2", marks, *rows]) + "\n")


def test_whitespace_runs_boxes_and_a_rehosted_identity_file(tmp_path: Path) -> None:
    _layout(
        tmp_path,
        b"image identity\r\n000001.jpg 2880\r\n000002.jpg 17\r\n",
        ["000001.jpg    95  71 226 313", "000002.jpg   72  94 221 306"],
        2,
    )
    items, problems = _scan(tmp_path)
    assert problems == []
    assert [item.identity for item in items] == ["celeba:2880", "celeba:17"]
    assert [item.split for item in items] == ["train", "test"]
    assert items[0].box == (95.0, 71.0, 321.0, 384.0)


def test_count_line_and_malformed_rows_are_reported(tmp_path: Path) -> None:
    _layout(tmp_path, b"000001.jpg 1\n000002.jpg 2\n", ["000001.jpg 95 71 226", "000002.jpg 1 2 3 4"], 3)
    items, problems = _scan(tmp_path)
    assert len(items) == 2 and items[0].box is None and items[1].box == (1.0, 2.0, 4.0, 6.0)
    assert reasons(problems) == [
        ("Anno/list_bbox_celeba.txt", "count_mismatch"),
        ("Anno/list_bbox_celeba.txt", "malformed_line"),
        ("Anno/list_bbox_celeba.txt", "missing_annotation"),
    ]
    assert next(p for p in problems if p.reason == "malformed_line").line == 3
