"""The split's faces check (issue 15, item 2): clips made for the test from real face photos, encoded as
real H.264, go through the build's detector, tracker, crop and scene-cut code; a clip with two people, one
with a cut and one too small for a 512 px crop are skipped with those reasons, the clean one is selected.
Each rejected clip has that one defect: the two people and the cut clips' crops exceed 512 px, and the
same face is in both shots of the cut (the tracker holds it across: only the cut detector sees the cut)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from split_items import celebvhq_item, ytid

from pipeline.sample.render import Actor, Shot, render_video, write_mp4
from pipeline.split import DEFAULT_THRESHOLDS, select_split

RP_DATA = Path(sys.executable).with_name("rp-data")
SIZE = (768, 640)  # a 290 px face: the build's crop (2.2x the detector's smaller box) is about 560 px
CLIPS = {
    "clean": ([Shot((Actor("t1_a", (0.5, 0.5), 290),), 40, scene=21)], SIZE),
    "two_people": ([Shot((Actor("t1_b", (0.28, 0.5), 200), Actor("t1_c", (0.72, 0.5), 200)), 40, scene=22)], SIZE),
    "cut": (
        [Shot((Actor("t1_a", (0.5, 0.5), 290),), 20, scene=23), Shot((Actor("t1_a", (0.5, 0.5), 290),), 20, scene=24)],
        SIZE,
    ),
    "small": ([Shot((Actor("t1_a", (0.5, 0.5), 90),), 40, scene=25)], (320, 240)),
}
EXPECTED = {"two_people": "multiple_faces", "cut": "scene_cut", "small": "crop_too_small"}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A CelebV-HQ root holding the four clips, and each clip's item id."""
    root = tmp_path_factory.mktemp("split_check") / "celebvhq"
    ids = {}
    for n, (name, (shots, size)) in enumerate(CLIPS.items()):
        key = f"{ytid(n)}_0"
        frames, _ = render_video(shots, size, seed=n)
        write_mp4(root / "downloaded_celebvhq" / "processed" / f"{key}.mp4", frames, 25)
        ids[name] = f"celebvhq/{key}"
    return root, ids


def test_the_faces_check_skips_two_people_a_cut_and_a_small_crop(made: tuple[Path, dict[str, str]]) -> None:
    root, ids = made
    items = [celebvhq_item(item_id.split("/")[1]) for item_id in ids.values()]
    split = select_split([], items, roots={"vfhq": root.parent, "celebvhq": root}, per_dataset=4)
    assert split.check == "faces" and split.thresholds.min_crop_px == DEFAULT_THRESHOLDS.min_crop_px == 512
    assert [clip.item_id for clip in split.clips] == [ids["clean"]]
    reasons = {skip.item_id: (skip.reason, skip.detail) for skip in split.skipped}
    assert {item_id: reasons[item_id][0] for item_id in reasons} == {ids[name]: r for name, r in EXPECTED.items()}
    assert reasons[ids["two_people"]][1] == "100% of sampled frames show 2+ prominent faces (> 30%)"
    assert reasons[ids["cut"]][1] == "a cut at frame 20 of 40"  # the second shot starts at frame 20
    assert reasons[ids["small"]][1].endswith("px < 512 px")


def test_the_probe_level_keeps_them_all_and_the_file_says_which_check(
    made: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    root, ids = made
    items = [celebvhq_item(item_id.split("/")[1]) for item_id in ids.values()]
    split = select_split([], items, roots={"vfhq": root.parent, "celebvhq": root}, per_dataset=4, check="probe")
    assert split.check == "probe" and sorted(clip.item_id for clip in split.clips) == sorted(ids.values())


def test_the_cli_check_option(sample_root: Path, tmp_path: Path) -> None:
    for level in ("faces", "probe"):
        out = tmp_path / f"{level}.json"
        command = [str(RP_DATA), "split", "--sample", str(sample_root), "--out", str(out)]
        result = subprocess.run(
            command + ([] if level == "faces" else ["--check", level]), capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        written = json.loads(out.read_text())
        assert written["check"] == level and written["thresholds"]["min_crop_px"] == 128
    # the sample's clips are clean: both levels select the same ones
    assert (
        json.loads((tmp_path / "faces.json").read_text())["clips"]
        == json.loads((tmp_path / "probe.json").read_text())["clips"]
    )
    refused = subprocess.run(
        [str(RP_DATA), "split", "--sample", str(sample_root), "--out", str(tmp_path / "x.json"), "--check", "eyes"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "invalid choice: 'eyes'" in refused.stderr
