"""The evaluation split kept out of training (issue 13 item 5), on real shards of `rp-data build --sample`
(built without `--exclude-split`, so they hold the sample split's clips) and the shipped sample split."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import webdataset as wds

from model.realportrait import RealPortrait
from pipeline.split import SAMPLE_SPLIT, load_split
from training.checkpoints import export_model
from training.config import ConfigError, DataConfig, StageConfig
from training.data import PortraitStream, plan_sources, read_index, stage_framing
from training.heldout import RECORD, checkpoint_warnings, file_sha256, plan_heldout, read_record, stage_record


def build_meta(build_dir: Path) -> dict[str, dict]:
    """Every sample's json as the tars hold it, by key (the truth the manifest-based matching must agree with)."""
    return {
        json.loads(sample["json"])["key"]: json.loads(sample["json"])
        for entry in read_index(build_dir)
        for sample in wds.WebDataset(str(entry.path), shardshuffle=False)
    }


def test_the_build_samples_of_the_split_are_found_by_clip_video_and_identity(build_dir: Path) -> None:
    split = load_split(SAMPLE_SPLIT)
    clips = {clip.item_id for clip in split.clips}
    videos = {clip.youtube_id for clip in split.clips}
    identities = {clip.identity for clip in split.clips}
    expected = {
        key
        for key, meta in build_meta(build_dir).items()
        if meta["item_id"] in clips or meta["youtube_id"] in videos or meta["identity"] in identities
    }
    plan = plan_heldout(DataConfig(build_dir=build_dir, heldout_split=SAMPLE_SPLIT))
    assert plan is not None and plan.keys == expected
    metas = build_meta(build_dir)
    # the point: CelebV-HQ's test clips are `unsplit`, which exclude_splits: [test] lets through
    assert "unsplit" in {metas[key]["split"] for key in expected}
    whys = {leak.item_id: leak.why for leak in plan.leaks}
    assert {item for item, why in whys.items() if why == "clip"} == clips & set(whys)
    assert "video" in whys.values()  # other intervals of a test video are held out too
    message = plan.describe()
    items = {leak.item_id for leak in plan.leaks}
    assert f"holds {len(expected)} sample(s) of {len(items)} item(s)" in message and "filtered out" in message
    assert all(item in message for item in items) and str(SAMPLE_SPLIT) in message


def test_a_refusing_config_names_the_split_the_count_and_the_items(build_dir: Path) -> None:
    data = DataConfig(build_dir=build_dir, heldout_split=SAMPLE_SPLIT, heldout_policy="refuse")
    with pytest.raises(ConfigError) as error:
        plan_heldout(data)
    text = str(error.value)
    assert "refused" in text and str(SAMPLE_SPLIT) in text and "--exclude-split" in text
    assert all(clip.item_id in text for clip in load_split(SAMPLE_SPLIT).clips)  # all in the build
    with pytest.raises(ConfigError, match="not found"):
        plan_heldout(DataConfig(build_dir=build_dir, heldout_split=build_dir / "no_split.json"))
    with pytest.raises(ValueError, match="heldout_policy"):
        DataConfig(build_dir=build_dir, heldout_split=SAMPLE_SPLIT, heldout_policy="warn")


def keys_seen(build_dir: Path, data: DataConfig, batches: int) -> tuple[set[str], int]:
    stage = StageConfig(name="s", mode="image", steps=1, global_batch=2, resolution=64)
    sources = plan_sources(read_index(build_dir), data, "image")
    stream = PortraitStream(
        sources, stage_framing(data, stage), batch_size=4, shuffle_buffer=8, epoch_batches=10**6, seed=(0,)
    )
    taken = list(itertools.islice(iter(stream), batches))
    return {key for batch in taken for key in batch["keys"]}, sum(b["skipped"].get("unfit:held_out", 0) for b in taken)


def test_the_loader_never_yields_a_held_out_sample(build_dir: Path) -> None:
    held = plan_heldout(DataConfig(build_dir=build_dir, heldout_split=SAMPLE_SPLIT))
    assert held is not None
    weights = {"celebvhq": 4.0, "vfhq": 4.0}  # the datasets of the split, drawn often
    unchecked, _ = keys_seen(build_dir, DataConfig(build_dir=build_dir, exclude_splits=[], weights=weights), 60)
    assert unchecked & held.keys  # without the split file, its clips are trained on
    data = DataConfig(build_dir=build_dir, exclude_splits=[], weights=weights, heldout_split=SAMPLE_SPLIT)
    seen, skipped = keys_seen(build_dir, data, 60)
    assert seen and not seen & held.keys and skipped > 0


def exported(folder: Path, data: DataConfig, parent: Path | None = None) -> Path:
    export_model(RealPortrait.from_preset("tiny"), folder, stage_record(data, parent))
    return folder


def test_the_export_records_the_split_and_the_evaluation_warns_on_another(build_dir: Path, tmp_path: Path) -> None:
    data = DataConfig(build_dir=build_dir, heldout_split=SAMPLE_SPLIT)
    stage1 = exported(tmp_path / "stage1", data)
    record = read_record(stage1)
    assert record is not None and record["split"]["sha256"] == file_sha256(SAMPLE_SPLIT)
    assert record["split"]["path"] == str(SAMPLE_SPLIT) and record["filtered_samples"] > 0
    assert checkpoint_warnings(stage1, SAMPLE_SPLIT) == []

    other = tmp_path / "other.json"  # the same clips, other bytes: another file than the one held out
    other.write_text(SAMPLE_SPLIT.read_text() + "\n")
    (warning,) = checkpoint_warnings(stage1, other)
    assert str(other) in warning and str(SAMPLE_SPLIT) in warning

    unchecked = exported(tmp_path / "unchecked", DataConfig(build_dir=build_dir))
    (warning,) = checkpoint_warnings(unchecked, SAMPLE_SPLIT)
    assert "without data.heldout_split" in warning

    unrecorded = tmp_path / "unrecorded"
    RealPortrait.from_preset("tiny").save_pretrained(unrecorded)
    (warning,) = checkpoint_warnings(unrecorded, SAMPLE_SPLIT)
    assert f"has no {RECORD}" in warning

    # a stage that held the split out but started from weights that did not is not clean either
    stage2 = exported(tmp_path / "stage2", data, parent=unchecked)
    (warning,) = checkpoint_warnings(stage2, SAMPLE_SPLIT)
    assert str(unchecked) in warning and "without data.heldout_split" in warning
    assert checkpoint_warnings(exported(tmp_path / "stage2b", data, parent=stage1), SAMPLE_SPLIT) == []


def test_rp_eval_gives_ours_the_warning(build_dir: Path, vae_dir: Path, tmp_path: Path) -> None:
    """`rp-eval run --method ours` as parsed from its command line: the method carries the warning that run.json
    and the table footer show (none for a checkpoint that held the evaluated split out)."""
    from eval.cli import make_method, parser

    def method_for(checkpoint: Path) -> Any:
        arguments = ["run", "--split", str(SAMPLE_SPLIT), "--method", "ours", "--out", str(tmp_path / "run")]
        return make_method(parser().parse_args([*arguments, "--checkpoint", str(checkpoint), "--vae", str(vae_dir)]))

    held = exported(tmp_path / "held", DataConfig(build_dir=build_dir, heldout_split=SAMPLE_SPLIT))
    assert method_for(held).warnings == []
    (warning,) = method_for(exported(tmp_path / "unchecked", DataConfig(build_dir=build_dir))).warnings
    assert str(SAMPLE_SPLIT) in warning and "without data.heldout_split" in warning
