"""The demo's stand-in VAE (issue 14 item 1): `python -m training.train_vae` run as a user runs it, for a handful
of steps at a small resolution on the real shards of `rp-data build --sample`, then loaded the ways the
toolkit loads a VAE."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import webdataset as wds
from diffusers import AutoencoderKL

from model.vae import FrameVAE
from pipeline.split import SAMPLE_SPLIT, load_split
from pipeline.video_file import VideoFile
from training.config import CONFIG_DIR, ConfigError
from training.config import load_config as load_training_config
from training.data import read_index
from training.train_vae import DEFAULT_CONFIG, RESULT, load_config, main, run, to_model

REPO = Path(__file__).resolve().parents[2]
SMOKE = [
    "steps=12",
    "warmup_steps=1",
    "batch_size=4",
    "resolution=32",
    "crops_per_image=2",
    "lr=3e-3",
    "validation_fraction=0.3",
]


def build_meta(build_dir: Path) -> dict[str, dict[str, Any]]:
    """Every sample's json as the tars hold it, by key."""
    metas = {}
    for entry in read_index(build_dir):
        for sample in wds.WebDataset(str(entry.path), shardshuffle=False):
            meta = json.loads(sample["json"])
            metas[meta["key"]] = meta
    return metas


@pytest.fixture(scope="module")
def smoke_vae(build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("demo_vae") / "vae"
    command = [sys.executable, "-m", "training.train_vae", f"build_dir={build_dir}", f"out={out}", *SMOKE]
    result = subprocess.run([*command, "--no-progress"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out, json.loads((out / RESULT).read_text()), result.stdout


def test_the_vae_loads_with_diffusers_and_through_the_training_loader(smoke_vae: tuple[Path, dict, str]) -> None:
    out, record, _ = smoke_vae
    vae = AutoencoderKL.from_pretrained(out, use_safetensors=True, local_files_only=True)
    assert vae.config.latent_channels == 4 and len(vae.config.block_out_channels) == 3  # the demo's factor 4
    frame_vae = FrameVAE.from_path(out)
    assert frame_vae.factor == 4
    assert frame_vae.scaling_factor == pytest.approx(record["scaling_factor"])
    frames = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    latents = frame_vae.encode(frames, sample=False)
    assert latents.shape == (1, 4, 2, 8, 8)
    assert frame_vae.decode(latents).shape == frames.shape


def test_the_scaling_factor_gives_training_latents_of_about_unit_variance(
    smoke_vae: tuple[Path, dict, str], build_dir: Path
) -> None:
    out, record, _ = smoke_vae
    metas = build_meta(build_dir)
    trained_clip = next(key for key in record["train_keys"] if metas[key]["kind"] == "clip")
    sample = next(
        sample
        for entry in read_index(build_dir)
        for sample in wds.WebDataset(str(entry.path), shardshuffle=False)
        if json.loads(sample["json"])["key"] == trained_clip
    )
    video = VideoFile(sample["mp4"])
    frames = to_model(video.frames(range(len(video)), 32, 32)).transpose(0, 1)[None]
    latents = FrameVAE.from_path(out).encode(frames, generator=torch.Generator().manual_seed(1))
    assert 0.5 < float(latents.std()) < 2.0, (float(latents.std()), record["latent_std"])


def test_the_held_out_split_is_never_trained_and_scores_the_psnr(
    smoke_vae: tuple[Path, dict, str], build_dir: Path
) -> None:
    _, record, stdout = smoke_vae
    split = load_split(SAMPLE_SPLIT)
    clips = {clip.item_id for clip in split.clips}
    videos = {clip.youtube_id for clip in split.clips}
    identities = {clip.identity for clip in split.clips}
    metas = build_meta(build_dir)
    held_out = {
        key
        for key, meta in metas.items()
        if meta["item_id"] in clips or meta["youtube_id"] in videos or meta["identity"] in identities
    }
    assert held_out and set(record["heldout_keys"]) == held_out
    trained = set(record["train_keys"])
    assert trained and not trained & held_out
    assert not {key for key in trained if metas[key]["split"] == "test"}  # exclude_splits: [test], as training
    # the validation set-aside: training clips (never images, never held out) chosen by key, scored apart
    validation = set(record["validation_keys"])
    assert validation and all(metas[key]["kind"] == "clip" for key in validation)
    assert not validation & (trained | held_out) and math.isfinite(record["psnr_validation_db"])
    assert trained | held_out | validation | set(record["excluded_keys"]) == set(metas)
    # the frame counts are those of the samples named: every clip frame, crops_per_image crops per image
    assert record["heldout_frames"] == sum(metas[key]["frames"] for key in held_out)
    per_sample = [metas[key]["frames"] if metas[key]["kind"] == "clip" else 2 for key in trained]
    assert record["train_frames"] == sum(per_sample)
    assert math.isfinite(record["psnr_heldout_db"]) and record["psnr_heldout_db"] > 0
    assert f"{record['psnr_heldout_db']} dB on {record['heldout_frames']} held-out frames" in stdout
    assert record["heldout_split"]["path"] == str(SAMPLE_SPLIT.relative_to(REPO))


def test_the_loss_fell(smoke_vae: tuple[Path, dict, str]) -> None:
    _, record, _ = smoke_vae
    assert record["loss_last"] < 0.9 * record["loss_first"], (record["loss_first"], record["loss_last"])


def test_an_existing_output_is_not_replaced_without_overwrite(tmp_path: Path, build_dir: Path) -> None:
    out = tmp_path / "vae"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    config = load_config(DEFAULT_CONFIG, [f"build_dir={build_dir}", f"out={out}"])
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        run(config)
    assert (out / "keep.txt").read_text() == "earlier work"


def test_the_shipped_config_validates_and_a_bad_one_names_the_field(tmp_path: Path) -> None:
    config = load_config(DEFAULT_CONFIG, [])
    assert config.resolution % config.factor == 0 and config.heldout_split == Path("manifests/splits/sample.json")
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_CONFIG.read_text() + "resolution: 62\n")  # the demo VAE is 4x
    with pytest.raises(ConfigError, match=r"bad.yaml.*\n.*field '<top level>'.*multiple of the VAE's factor"):
        load_config(bad, [])


def test_help_says_it_is_a_stand_in_not_the_papers_vae(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "CPU stand-in" in text and "NOT the paper's SD1.5 VAE" in text


def test_the_demo_training_config_uses_the_demo_vae_on_its_data_at_its_resolution() -> None:
    """`make demo-train` trains the VAE with demo_vae.yaml, then the model with demo.yaml: they must agree."""
    vae = load_config(DEFAULT_CONFIG, [])
    demo = load_training_config(CONFIG_DIR / "demo.yaml")
    assert demo.vae.path == vae.out and demo.data.build_dir == vae.build_dir
    assert demo.data.heldout_split == vae.heldout_split and demo.data.exclude_splits == vae.exclude_splits
    assert [stage.resolution for stage in demo.stages] == [vae.resolution] * len(demo.stages)
    assert demo.model.overrides["vae_scale_factor"] == vae.factor  # else training refuses the VAE by name
    assert [stage.mode for stage in demo.stages] == ["image", "video"] and demo.stages[1].init_from == "stage1"
