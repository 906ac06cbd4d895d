"""A folder of one's own footage end to end, as a user runs it: `rp-data datasets new`, an edit of the spec,
`rp-data build` of it beside the sample's HDTF (real Ray), `scan`, `report` and `inspect` on it, and the
training loader mixing the two at 3:1."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from buildkit import rp_data, samples
from folderkit import own_footage

from training.config import DataConfig, StageConfig
from training.data import PortraitStream, plan_sources, read_index, stage_framing

# the footage is 128 px with 56 px faces and 1 s clips: the spec's defaults are edited as a user would
SMALL = {"min_face_px": 32, "min_clip_frames": 8, "max_clip_frames": 32, "min_sharpness": 1.0}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, sample_root: Path) -> tuple[Path, Path, Path]:
    """(registry, footage, build folder)."""
    base = tmp_path_factory.mktemp("folder_build")
    footage = own_footage(base / "My Footage", base / "outside")
    registry = base / "registry"
    rp_data("--registry", str(registry), "datasets", "new", "mine", "--root", str(footage))
    spec = registry / "mine.yaml"
    data = yaml.safe_load(spec.read_text())
    data["defaults"] = data.get("defaults", {}) | SMALL
    spec.write_text(yaml.safe_dump(data, allow_unicode=True))
    out = base / "out"
    hdtf = f"hdtf={sample_root / 'hdtf'}"
    rp_data(
        "--registry", str(registry), "build", "--source", "mine", "--source", hdtf, "--out", str(out), "--workers", "2"
    )
    return registry, footage, out


@pytest.mark.slow
def test_the_build_holds_each_file_once_and_records_every_refusal(built: tuple[Path, Path, Path]) -> None:
    _, _, out = built
    manifest = pd.read_parquet(out / "manifest.parquet")
    mine = manifest[manifest.dataset == "mine"]
    sources = mine[mine.kind == "source"].set_index("item_id")
    assert sources.loc["mine/alice/clip one.mp4#5-9s", "reason"] == "range_outside_media"
    assert sources.loc["mine/missing.mp4", "reason"] == "missing_media"
    assert sources.loc["mine/../escape.mp4", "reason"] == "media_outside_root"
    built_ids = set(mine[mine.status == "ok"].item_id)
    assert {"mine/alice/clip one.mp4#0-0.6s", "mine/alice/stills/photo.jpg", "mine/bob/café.mp4"} <= built_ids
    refused = mine[mine.kind == "annotation"].set_index("item_id").reason.to_dict()
    assert refused == {
        "mine/alice/loop": "symlink_loop",
        "mine/bob/copy of clip.mp4": "duplicate_content",
        "mine/elsewhere.mp4": "media_outside_root",
        "mine/fake.mp4": "not_media",
        "mine/notes/readme.txt": "not_media",
        "mine/sidecar.csv:5": "unknown_split",
    }
    keys = [json.loads(s["json"]) for s in samples(out).values()]
    assert Counter(meta["dataset"] for meta in keys)["mine"] >= 3


@pytest.mark.slow
def test_scan_report_and_inspect_work_on_it(built: tuple[Path, Path, Path]) -> None:
    registry, footage, out = built
    scanned = rp_data("--registry", str(registry), "scan", "--dataset", "mine", "--root", str(footage))
    assert "duplicate_content" in scanned.stdout and "mine" in scanned.stdout
    rp_data("report", str(out))
    assert (out / "report" / "index.html").exists()
    assert "mine-" in rp_data("inspect", str(out), "--all").stdout


@pytest.mark.slow
def test_training_mixes_own_footage_with_hdtf_at_3_to_1(built: tuple[Path, Path, Path]) -> None:
    _, _, out = built
    data = DataConfig(build_dir=out, weights={"mine": 3.0, "hdtf": 1.0}, default_weight=0.0, exclude_splits=[])
    sources = plan_sources(read_index(out), data, "image")
    assert [(s.dataset, s.weight) for s in sources] == [("hdtf", 1.0), ("mine", 3.0)]
    stage = StageConfig(name="s", mode="image", steps=1, global_batch=2, resolution=64)
    loader = PortraitStream(
        sources, stage_framing(data, stage), batch_size=2, shuffle_buffer=8, epoch_batches=10**6, seed=(0,)
    )
    batches = [batch for batch, _ in zip(loader, range(100), strict=False)]
    datasets = Counter(d for batch in batches for d in batch["datasets"])
    assert set(datasets) == {"mine", "hdtf"} and 0.65 < datasets["mine"] / 200 < 0.85
