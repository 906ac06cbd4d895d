"""Ranking, annotation eligibility and the walk over media (datasets.md §11)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from kit import run_adapter
from split_items import celebvhq_item, vfhq_item, ytid

from pipeline.sources.records import SourceItem
from pipeline.split import SAMPLE_THRESHOLDS, Thresholds, rank_key, rank_pool, select_split

# computed with `printf '%s' 'facetest-v1:<dataset>:<native id>' | sha256sum`
HAND_COMPUTED = {
    (
        "vfhq",
        "Clip+XZ2qCoO0gbU+P0+C2+F157105-157607",
    ): "21814b9c9c7fcd702f775db08243117e4429c071a3f5ccb982880dd0b271c763",
    ("vfhq", "Clip+Zz9-yX_8wVu+P0+C2+F10-50"): "0db2098cd7cb9d5d8e23c8af7365e4978ad21a174fcab6ce5d3e406e00ec3784",
    ("celebvhq", "M2Ohb0FAaJU_1"): "41758af434576bee0d3f5358320730eea0986f0c9a67150ebe28fae1aafebd5f",
    ("celebvhq", "Y0L0sNxp2XI_1_0"): "fb1cabd2c6b2cb34aff3e8ecc289925cf763a2ada9b49604e322f2d55c5eeabc",
    ("celebvhq", "-xU_9kQ2mZ0_1"): "35c7265abf43b31d858f0817df6378fcce000f81edae55d469e760fd3208dc82",
}


def reasons(ranked: list) -> dict[str, str | None]:
    return {entry.item.native_id: entry.reason for entry in ranked}


def test_rank_key_is_the_hand_computed_sha256() -> None:
    for (dataset, native_id), digest in HAND_COMPUTED.items():
        assert rank_key(dataset, native_id) == digest


def test_pool_order_follows_the_hand_computed_digests() -> None:
    items = [celebvhq_item("Y0L0sNxp2XI_1_0"), celebvhq_item("M2Ohb0FAaJU_1"), celebvhq_item("-xU_9kQ2mZ0_1")]
    ranked = rank_pool(items, Thresholds(), set(), set())
    # 35c7... < 4175... < fb1c...
    assert [entry.item.native_id for entry in ranked] == ["-xU_9kQ2mZ0_1", "M2Ohb0FAaJU_1", "Y0L0sNxp2XI_1_0"]
    assert rank_pool(list(reversed(items)), Thresholds(), set(), set()) == ranked


def test_vfhq_rules_pid_and_length() -> None:
    items = [
        vfhq_item(ytid(1), pid=1),
        vfhq_item(ytid(2), first=500, last=699),  # 199 frames
        vfhq_item(ytid(3), first=500, last=700),  # 200 frames: the threshold itself is enough
    ]
    assert reasons(rank_pool(items, Thresholds(), set(), set())) == {
        items[0].native_id: "pid_not_0",
        items[1].native_id: "too_short",
        items[2].native_id: None,
    }
    lenient = rank_pool(items, Thresholds(vfhq_min_frames=150), set(), set())
    assert reasons(lenient)[items[1].native_id] is None


def test_celebvhq_rules_length_sep_flag_blurry() -> None:
    short = celebvhq_item(f"{ytid(1)}_0", start=3.0, end=7.99)
    exact = celebvhq_item(f"{ytid(2)}_0", start=3.0, end=8.0)
    separated = celebvhq_item(f"{ytid(3)}_0", sep_flag=True)
    unlabelled = celebvhq_item(f"{ytid(4)}_0", sep_flag=None)
    blurry = celebvhq_item(f"{ytid(5)}_0", appearance=("male", "Blurry"))
    fine = celebvhq_item(f"{ytid(6)}_1_0", appearance=("male", "young"))
    ranked = rank_pool([short, exact, separated, unlabelled, blurry, fine], Thresholds(), set(), set())
    assert reasons(ranked) == {
        short.native_id: "too_short",
        exact.native_id: None,
        separated.native_id: "sep_flag",
        unlabelled.native_id: "sep_flag",
        blurry.native_id: "blurry",
        fine.native_id: None,
    }


def test_one_clip_per_youtube_id_the_best_ranked_eligible_one() -> None:
    video = ytid(7)
    keys = sorted((f"{video}_{k}" for k in range(4)), key=lambda key: rank_key("celebvhq", key))
    best, second, third, fourth = keys
    items = [
        celebvhq_item(best, sep_flag=True),  # ranks first but is ineligible: it does not claim the video
        celebvhq_item(second),
        celebvhq_item(third),
        celebvhq_item(fourth, start=0.0, end=1.0),
    ]
    ranked = rank_pool(items, Thresholds(), set(), set())
    assert reasons(ranked) == {best: "sep_flag", second: None, third: "youtube_id_duplicate", fourth: "too_short"}
    assert f"celebvhq/{second}" in next(e.detail for e in ranked if e.item.native_id == third)


def test_training_and_shared_youtube_ids_are_dropped() -> None:
    items = [celebvhq_item(f"{ytid(n)}_0") for n in (1, 2, 3)]
    ranked = rank_pool(items, Thresholds(), shared={ytid(2)}, training={ytid(3)})
    assert reasons(ranked) == {
        items[0].native_id: None,
        items[1].native_id: "youtube_id_in_both_datasets",
        items[2].native_id: "youtube_id_in_training",
    }


@pytest.fixture(scope="module")
def sample_items(sample_root: Path) -> dict[str, list[SourceItem]]:
    return {name: run_adapter(name, sample_root / name)[0] for name in ("vfhq", "celebvhq")}


def roots_of(sample_root: Path) -> dict[str, Path]:
    return {name: sample_root / name for name in ("vfhq", "celebvhq")}


def test_a_youtube_id_in_both_datasets_or_in_training_is_dropped_from_the_selection(
    sample_root: Path, sample_items: dict[str, list[SourceItem]]
) -> None:
    # a VFHQ train clip (outside the test pool) still puts its video in both datasets
    other = vfhq_item("-xU_9kQ2mZ0", split="train")
    split = select_split(
        [*sample_items["vfhq"], other],
        sample_items["celebvhq"],
        roots=roots_of(sample_root),
        thresholds=SAMPLE_THRESHOLDS,
        train_youtube_ids={"Yk7_pQ3vW1s"},
    )
    assert [clip.item_id for clip in split.clips] == ["vfhq/Clip+Zz9-yX_8wVu+P0+C2+F10-50"]
    excluded = split.counts["celebvhq"].excluded
    assert excluded == {"sep_flag": 1, "youtube_id_in_both_datasets": 2, "youtube_id_in_training": 2}
    assert split.train_youtube_ids.count == 1
    # one clip cannot be paired with another: the file says so instead of pairing it with itself
    assert split.pairs.method == "impossible" and split.pairs.pairs == []


def test_the_walk_skips_unreadable_media_and_logs_why(
    sample_root: Path, sample_items: dict[str, list[SourceItem]], caplog: pytest.LogCaptureFixture
) -> None:
    # without its sibling, the truncated Yk7_pQ3vW1s_0 represents its video and the probe rejects it
    celebvhq = [item for item in sample_items["celebvhq"] if item.native_id != "Yk7_pQ3vW1s_4"]
    with caplog.at_level("INFO", logger="pipeline.split"):
        split = select_split(
            sample_items["vfhq"], celebvhq, roots=roots_of(sample_root), per_dataset=2, thresholds=SAMPLE_THRESHOLDS
        )
    assert [clip.native_id for clip in split.clips if clip.dataset == "celebvhq"] == ["-xU_9kQ2mZ0_1"]
    skipped = {skip.item_id: skip for skip in split.skipped}
    assert [skip.reason for skip in skipped.values()] == ["sep_flag", "failed_check", "youtube_id_duplicate"]
    detail = skipped["celebvhq/Yk7_pQ3vW1s_0"].detail
    assert detail.startswith("InvalidDataError") and str(sample_root) not in detail  # the record stays portable
    assert "Yk7_pQ3vW1s_0" in caplog.text and "failed_check" in caplog.text
    counts = split.counts["celebvhq"]
    assert (counts.pool, counts.eligible, counts.walked, counts.selected, counts.not_reached) == (4, 2, 4, 1, 0)
    assert any("celebvhq: selected 1 of the 2" in note for note in split.notes)


def test_media_that_pass_a_lenient_check_but_cannot_be_measured_are_skipped(
    sample_root: Path, sample_items: dict[str, list[SourceItem]]
) -> None:
    truncated = [item for item in sample_items["celebvhq"] if item.native_id == "Yk7_pQ3vW1s_0"]
    split = select_split([], truncated, roots=roots_of(sample_root), thresholds=SAMPLE_THRESHOLDS, check=lambda _: None)
    assert split.clips == [] and [s.reason for s in split.skipped] == ["media_unreadable"]


def test_the_walk_stops_at_per_dataset_and_uses_the_given_check(
    sample_root: Path, sample_items: dict[str, list[SourceItem]]
) -> None:
    seen: list[str] = []

    def check(item: SourceItem) -> str | None:
        seen.append(item.native_id)
        return "crop 256 px < 512" if item.native_id == "-xU_9kQ2mZ0_1" else None

    missing = [
        dataclasses.replace(item, media_status="missing") if item.native_id == "Clip+Zz9-yX_8wVu+P0+C2+F10-50" else item
        for item in sample_items["vfhq"]
    ]
    split = select_split(
        missing,
        sample_items["celebvhq"],
        roots=roots_of(sample_root),
        per_dataset=1,
        thresholds=SAMPLE_THRESHOLDS,
        check=check,
    )
    assert [clip.item_id for clip in split.clips] == ["celebvhq/Yk7_pQ3vW1s_4"]
    assert [(s.item_id, s.reason, s.detail) for s in split.skipped] == [
        ("vfhq/Clip+Zz9-yX_8wVu+P0+C2+F10-50", "media_missing", "raw/Zz9-yX_8wVu.mp4: media_status missing"),
        ("celebvhq/-xU_9kQ2mZ0_1", "failed_check", "crop 256 px < 512"),
        ("celebvhq/-xU_9kQ2mZ0_2_0", "sep_flag", "sep_flag is True"),
    ]
    # a missing file is never handed to the check; nothing is checked once one clip is accepted
    assert seen == ["-xU_9kQ2mZ0_1", "Yk7_pQ3vW1s_4"]
    assert split.counts["celebvhq"].not_reached == 2


def test_vfhq_without_a_test_split_uses_train_and_says_so(
    sample_root: Path, sample_items: dict[str, list[SourceItem]]
) -> None:
    train = [item for item in sample_items["vfhq"] if item.split == "train"]
    split = select_split(train, [], roots=roots_of(sample_root), thresholds=SAMPLE_THRESHOLDS)
    assert split.counts["vfhq"].pool_split == "train"
    assert any("no clips of split 'test'" in note for note in split.notes)
    (clip,) = split.clips
    assert clip.native_id == "Clip+Ab3_dE-7fGh+P0+C0+F100-130"  # P1 is the second person of the video
    assert (clip.modality, clip.fps, clip.fps_from, clip.media_frames) == ("frames", 25.0, "annotation", 29)
    assert clip.crop is not None and clip.crop.space == "source_px" and clip.crop.source_wh == (640, 360)


def test_items_must_match_their_dataset_and_roots(sample_root: Path) -> None:
    with pytest.raises(ValueError, match="include items of"):
        select_split([celebvhq_item(f"{ytid(1)}_0")], [], roots=roots_of(sample_root))
    with pytest.raises(ValueError, match="no entry for 'celebvhq'"):
        select_split([], [], roots={"vfhq": sample_root})
