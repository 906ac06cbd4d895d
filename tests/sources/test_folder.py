"""The folder source on real media (H.264 clips, JPEG and PNG photos): items, ids, identities, the sidecar,
and every trap a folder nobody curated brings, each recorded with its reason."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from folderkit import CAFE_NFD, clip, own_footage
from kit import reasons

from manifests.folder_spec import folder_spec, resolve_sources
from manifests.schema import SpecError, load_specs, source_name_problem
from pipeline.sources import open_adapter
from pipeline.sources.folder import container_kind
from pipeline.sources.records import Problem, SourceItem


def read(root: Path, name: str = "mine", **options: object) -> tuple[list[SourceItem], list[Problem]]:
    spec = folder_spec(name)
    spec = spec.model_copy(update={"options": {**spec.options, **options}})
    problems: list[Problem] = []
    return list(open_adapter(spec, root, problems.append).items()), problems


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("footage")
    return own_footage(base / "mine", base / "outside")


def test_every_file_is_one_item_with_a_stable_nfc_id_and_the_sidecar_s_values(footage: Path) -> None:
    items, _ = read(footage)
    by_id = {item.item_id: item for item in items}
    assert sorted(by_id) == [
        "mine/../escape.mp4",
        "mine/alice/clip one.mp4#0-0.6s",
        "mine/alice/clip one.mp4#5-9s",
        "mine/alice/stills/photo.jpg",
        "mine/bob/café.mp4",
        "mine/missing.mp4",
    ]
    cafe = by_id["mine/bob/café.mp4"]
    assert unicodedata.is_normalized("NFC", cafe.native_id) and cafe.media_path == f"bob/{CAFE_NFD}"
    assert (cafe.split, cafe.identity, cafe.modality, cafe.media_cut) == ("test", "mine:bob", "video", True)
    ranged = by_id["mine/alice/clip one.mp4#0-0.6s"]
    assert (ranged.start, ranged.end, ranged.time_unit, ranged.media_cut) == (0.0, 0.6, "sec", False)
    assert ranged.labels == {"tags": ["talking", "indoor"], "sidecar_line": 2}
    photo = by_id["mine/alice/stills/photo.jpg"]  # no row: identity from the first folder, unsplit
    assert (photo.modality, photo.identity, photo.split) == ("image", "mine:alice", "unsplit")
    assert by_id["mine/missing.mp4"].media_status == "missing"
    assert by_id["mine/../escape.mp4"].media_status == "outside_root"
    assert [item.item_id for item in read(footage)[0]] == [item.item_id for item in items]  # same order every run


def test_traps_are_recorded_with_their_reasons_and_nothing_outside_is_read(footage: Path) -> None:
    _, problems = read(footage)
    assert reasons(problems) == [
        ("../escape.mp4", "media_outside_root"),
        ("alice/loop", "symlink_loop"),
        ("bob/copy of clip.mp4", "duplicate_content"),
        ("elsewhere.mp4", "media_outside_root"),
        ("fake.mp4", "not_media"),
        ("missing.mp4", "missing_media"),
        ("notes/readme.txt", "not_media"),
        ("sidecar.csv", "unknown_split"),
    ]
    copy = next(p for p in problems if p.reason == "duplicate_content")
    assert "alice/clip one.mp4" in copy.detail and copy.file == "bob/copy of clip.mp4"
    split = next(p for p in problems if p.reason == "unknown_split")
    assert split.line == 5 and "holdout" in split.detail


def test_identity_modes_and_configured_extensions(footage: Path) -> None:
    no_sidecar = footage.parent / "no_sidecar"
    own_footage(no_sidecar, footage.parent / "outside2", sidecar=False)
    items, _ = read(no_sidecar, identity="file")
    assert {i.native_id: i.identity for i in items}["alice/stills/photo.jpg"] == "mine:alice/stills/photo.jpg"
    assert {i.identity for i in read(no_sidecar, identity="none")[0]} == {None}
    videos, problems = read(no_sidecar, image_extensions=[".gif"])
    assert {i.modality for i in videos} == {"video"}
    assert ("alice/stills/photo.jpg", "not_media") in reasons(problems)


def test_jsonl_sidecar_and_malformed_rows_name_the_line(tmp_path: Path) -> None:
    clip(tmp_path / "a.mp4", "hanks", 7, frames=5)
    rows = [
        {
            "path": "a.mp4",
            "identity": "ann",
            "split": "val",
            "start": 1,
            "end": 4,
            "unit": "frame",
            "box": [8, 8, 60, 70],
        },
        {"path": "a.mp4", "colour": "red"},
        "not an object",
    ]
    (tmp_path / "sidecar.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    items, problems = read(tmp_path)
    [item] = items
    assert (item.native_id, item.split, item.time_unit, item.box) == ("a.mp4#1-4f", "val", "frame", (8, 8, 60, 70))
    assert [(p.line, p.reason) for p in problems] == [
        (2, "malformed_line"),
        (3, "malformed_line"),
        (4, "malformed_line"),
    ]
    assert "colour" in problems[0].detail


def test_content_sniffing() -> None:
    assert container_kind(b"\x00\x00\x00\x18ftypisom") == "video"
    assert container_kind(b"\xff\xd8\xff\xe0") == "image"
    assert container_kind(b"hello world!") is None


def test_names_that_readers_would_misread_are_refused_clearly(tmp_path: Path) -> None:
    official = load_specs()
    assert "lowercase letters, digits and underscores" in (source_name_problem("my-clips", official) or "")
    assert "official dataset" in (source_name_problem("hdtf", official) or "")
    with pytest.raises(SpecError, match="'My' is not a folder source name"):
        resolve_sources([("My", f"folder:{tmp_path}")], dict(official))
    registry = dict(official)
    assert resolve_sources([("mine", f"folder:{tmp_path}")], registry) == [("mine", tmp_path)]
    assert registry["mine"].adapter == "folder"
