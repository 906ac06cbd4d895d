"""The frozen file: round trip, validation, verification, exclusion sets, the committed sample split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from manifests.schema import SpecError
from pipeline.split import (
    SAMPLE_SPLIT,
    SAMPLE_THRESHOLDS,
    excluded_ids,
    load_split,
    sample_split,
    split_from_roots,
    verify_split,
    write_split,
)


@pytest.fixture()
def copied(sample_root: Path, tmp_path: Path) -> dict[str, Path]:
    """A private copy of the sample's two video datasets, free to damage."""
    roots = {}
    for name in ("vfhq", "celebvhq"):
        roots[name] = tmp_path / name
        shutil.copytree(sample_root / name, roots[name])
    return roots


def test_the_committed_sample_split_regenerates_byte_for_byte(sample_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "sample.json"
    write_split(sample_split(sample_root), out)
    assert out.read_bytes() == SAMPLE_SPLIT.read_bytes(), (
        "the sample changed: regenerate the split with pipeline.split.regenerate_sample_split()"
    )


def test_the_committed_sample_split_loads_and_verifies(sample_root: Path) -> None:
    split = load_split(SAMPLE_SPLIT)
    assert split.thresholds == SAMPLE_THRESHOLDS and split.per_dataset == 2
    assert verify_split(split, {name: sample_root / name for name in ("vfhq", "celebvhq")}) == []
    youtube_ids, identities = excluded_ids(split)
    assert youtube_ids == {clip.youtube_id for clip in split.clips} == {"Zz9-yX_8wVu", "-xU_9kQ2mZ0", "Yk7_pQ3vW1s"}
    assert identities == {"vfhq:Zz9-yX_8wVu+P0", "celebvhq:-xU_9kQ2mZ0", "celebvhq:Yk7_pQ3vW1s"}


def test_round_trip(copied: dict[str, Path], tmp_path: Path) -> None:
    split, problems = split_from_roots(copied, per_dataset=2, thresholds=SAMPLE_THRESHOLDS, seed=3)
    assert [p.reason for p in problems] == ["malformed_line"]  # the sample's planted VFHQ line
    path = tmp_path / "splits" / "test.json"
    write_split(split, path)
    loaded = load_split(path)
    assert loaded == split and loaded.pairs.seed == 3
    again = tmp_path / "again.json"
    write_split(loaded, again)
    assert again.read_bytes() == path.read_bytes()
    assert not list(path.parent.glob(".*"))  # no temporary file left behind


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["pairs"]["pairs"][0].update(driving=d["pairs"]["pairs"][0]["source"]), "pairs"),
        (lambda d: d["clips"][0].update(sha256="not-a-hash"), "clips.0.sha256"),
        (lambda d: d["counts"]["celebvhq"].update(selected=5), "counts.celebvhq.selected"),
        (lambda d: d["skipped"][0].update(reason="felt like it"), "unknown skip reason"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_a_hand_edited_file_is_refused_with_the_field_named(tmp_path: Path, edit, field: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(SAMPLE_SPLIT.read_text())
    edit(data)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=str(path)) as error:
        load_split(path)
    assert field in str(error.value)


def test_verify_detects_a_changed_byte_in_a_video(copied: dict[str, Path]) -> None:
    split, _ = split_from_roots(copied, per_dataset=2, thresholds=SAMPLE_THRESHOLDS)
    assert verify_split(split, copied) == []
    clip = next(c for c in split.clips if c.dataset == "celebvhq")
    media = copied["celebvhq"] / clip.media
    data = bytearray(media.read_bytes())
    data[len(data) // 2] ^= 0x01
    media.write_bytes(bytes(data))
    (problem,) = verify_split(split, copied)
    assert problem.startswith(clip.item_id) and clip.sha256 in problem
    media.unlink()
    assert verify_split(split, copied) == [f"{clip.item_id}: {media} is missing"]


def test_verify_detects_a_changed_or_renamed_frame(copied: dict[str, Path]) -> None:
    # with the test meta files gone, VFHQ's pool is train: a frame-folder clip is selected
    shutil.rmtree(copied["vfhq"] / "meta_info" / "test")
    split, _ = split_from_roots(copied, per_dataset=2, thresholds=SAMPLE_THRESHOLDS)
    clip = next(c for c in split.clips if c.dataset == "vfhq")
    assert clip.modality == "frames" and verify_split(split, copied) == []
    folder = copied["vfhq"] / clip.media
    frame = folder / "00000007.jpg"
    original = frame.read_bytes()
    frame.write_bytes(original[:-1] + bytes([original[-1] ^ 0x01]))
    assert [p.split(":")[0] for p in verify_split(split, copied)] == [clip.item_id]
    frame.write_bytes(original)
    assert verify_split(split, copied) == []
    frame.rename(folder / "00000007.png")
    assert len(verify_split(split, copied)) == 1
