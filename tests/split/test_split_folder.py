"""A folder source's test split, drawn and checked as the official one is: ranked clips, one per identity,
the build's face check, frozen with sha256s, verified, and identity-disjoint once a build excludes it."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from folderkit import own_footage

from manifests.folder_spec import folder_spec
from manifests.schema import load_specs
from pipeline.split import DEFAULT_THRESHOLDS, excluded_ids, load_split
from pipeline.split_folder import folder_split

RP_DATA = Path(sys.executable).with_name("rp-data")


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("split_footage")
    return own_footage(base / "mine", base / "outside", sidecar=False)


SHORT = DEFAULT_THRESHOLDS.model_copy(update={"celebvhq_min_seconds": 0.5})  # the footage's clips last 1 s


def test_one_clip_per_identity_photos_and_identityless_items_skipped(footage: Path) -> None:
    registry = {**load_specs(), "mine": folder_spec("mine")}
    split, _ = folder_split("mine", footage, registry, per_dataset=5, check="probe", thresholds=SHORT)
    assert sorted(clip.identity for clip in split.clips) == ["mine:alice", "mine:bob"]
    assert split.counts["mine"].excluded == {"not_a_clip": 2} and split.pairs.method == "drawn"
    assert all(pair.source != pair.driving for pair in split.pairs.pairs)
    youtube_ids, identities = excluded_ids(split)
    assert youtube_ids == set() and identities == {"mine:alice", "mine:bob"}
    again, _ = folder_split("mine", footage, registry, per_dataset=5, check="probe", thresholds=SHORT)
    assert again == split  # the same ranking on every run


def test_clips_shorter_than_the_official_minimum_are_skipped(footage: Path) -> None:
    registry = {**load_specs(), "mine": folder_spec("mine")}
    split, _ = folder_split("mine", footage, registry, per_dataset=5, check="probe")  # 5 s, as CelebV-HQ's
    assert split.clips == [] and Counter(skip.reason for skip in split.skipped) == {"too_short": 2, "not_a_clip": 2}
    assert all(skip.detail == "1.00 s < 5 s" for skip in split.skipped if skip.reason == "too_short")  # 25 at 25 fps


def test_the_cli_draws_it_with_the_face_check_and_verifies_it(footage: Path, tmp_path: Path) -> None:
    out = tmp_path / "mine-split.json"
    folder = f"mine=folder:{footage}"
    args = ["split", "--folder", folder, "--out", str(out), "--min-crop-px", "64", "--per-dataset", "2"]
    args += ["--celebvhq-min-seconds", "0.5"]
    result = subprocess.run([str(RP_DATA), *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    split = load_split(out)
    assert split.check == "faces" and len(split.clips) == 2, split.skipped
    verify = subprocess.run(
        [str(RP_DATA), "split", "--folder", folder, "--verify", str(out)], capture_output=True, text=True, timeout=600
    )
    assert verify.returncode == 0 and "every clip matches" in verify.stdout
