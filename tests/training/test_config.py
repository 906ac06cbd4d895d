"""The training configs: the paper's values in the stage configs, `base` merging, overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.config import CONFIG_DIR, ConfigError, load_config
from training.engine import batch_split, deepspeed_config

STAGE1, STAGE2, TINY = (CONFIG_DIR / name for name in ("stage1.yaml", "stage2.yaml", "tiny.yaml"))
IMAGE_DATASETS = {"vggface2", "celeba", "ffhq"}
VIDEO_DATASETS = {"celebvhq", "talkinghead_1kh", "hdtf", "mead", "vfhq"}


def test_stage_configs_hold_the_papers_values() -> None:
    first, second = load_config(STAGE1), load_config(STAGE2)
    (stage1,), (stage2,) = first.stages, second.stages
    # stage 1: single-frame mode, batch 32, 20K steps, image and video data, 512x512
    assert (stage1.mode, stage1.global_batch, stage1.steps, stage1.resolution) == ("image", 32, 20_000, 512)
    assert set(first.data.weights) == IMAGE_DATASETS | VIDEO_DATASETS
    assert all(weight > 0 for weight in first.data.weights.values())
    # stage 2: multi-frame mode, L=16 consecutive frames, video data only, batch 4, 30K steps, from stage 1
    assert (stage2.mode, stage2.global_batch, stage2.steps, stage2.resolution) == ("video", 4, 30_000, 512)
    assert (stage2.num_frames, stage2.frame_stride, stage2.init_from) == (16, 1, "stage1")
    assert {name for name, weight in second.data.weights.items() if weight > 0} == VIDEO_DATASETS
    # 4 A100: a whole per-GPU batch in each stage; the paper's model; 50 denoising steps; same run folder
    assert batch_split(stage1, 4) == (8, 1) and batch_split(stage2, 4) == (1, 1)
    assert first.model.preset == second.model.preset == "paper"
    assert first.validation.num_steps == second.validation.num_steps == 50
    assert first.output_dir == second.output_dir
    assert first.deepspeed == second.deepspeed == CONFIG_DIR / "zero2.json"


def test_every_paper_value_is_commented_as_such() -> None:
    text = STAGE1.read_text() + STAGE2.read_text()
    for fact in (
        "single-frame mode",
        "batch 32",
        "20K steps",
        "multi-frame mode",
        "batch 4",
        "30K steps",
        "L = 16",
        "512x512",
        "video data only",
        "50 denoising steps",
        "the SD1.5 VAE",
    ):
        assert f"# paper: {fact}" in text, fact


def test_overrides_reach_stages_by_name_and_index(tmp_path: Path) -> None:
    config = load_config(TINY, ["stages.stage2.steps=7", "stages.0.optimizer.lr=0.5", "data.weights.mead=2"])
    assert config.stages[1].steps == 7 and config.stages[0].optimizer.lr == 0.5
    assert config.data.weights == {"mead": 2}
    assert load_config(TINY, ["deepspeed=zero3.json"]).deepspeed == CONFIG_DIR / "zero3.json"


def test_base_chain_merges_mappings_and_replaces_the_rest(tmp_path: Path) -> None:
    child = tmp_path / "child.yaml"
    child.write_text(yaml.safe_dump({"base": str(STAGE2), "data": {"weights": {"mead": 0.0}}, "seed": 3}))
    config = load_config(child)
    assert config.seed == 3 and config.data.weights["mead"] == 0 and config.data.weights["vfhq"] == 1
    assert config.data.weights["ffhq"] == 0  # from stage2.yaml over stage1.yaml
    assert [stage.name for stage in config.stages] == ["stage2"]
    assert config.deepspeed == CONFIG_DIR / "zero2.json"  # found beside stage1.yaml, not beside child.yaml


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["stages.stage1.global_batch=0"], "stages.0.global_batch"),
        (["stages.stage1.resolution=100"], "stages.0"),
        (["stages.stage1.mode=audio"], "stages.0.mode"),
        (["data.crop_scale=[1.2, 0.8]"], "data"),
        (["stages.1.name=stage1"], "<top level>"),
        (["data.shuffle_budder=3"], "data.shuffle_budder"),
    ],
)
def test_a_bad_value_names_the_file_and_the_field(overrides: list[str], field: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(TINY, overrides)
    assert str(TINY) in str(error.value) and f"field '{field}'" in str(error.value)


def test_bad_overrides_and_files_are_clear_errors(tmp_path: Path) -> None:
    for override, message in [
        ("seed", "is not key=value"),
        ("stages.stage9.steps=1", "no list element 'stage9'"),
        ("seed.x=1", "holds a value"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(TINY, [override])
    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {loop.name}\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(loop)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_the_deepspeed_json_may_not_set_what_the_stage_owns(tmp_path: Path) -> None:
    stage = load_config(TINY).stages[0]
    config = deepspeed_config(CONFIG_DIR / "zero2.json", stage, world=2, bf16=False)
    assert config["train_batch_size"] == 4 and config["train_micro_batch_size_per_gpu"] == 1
    assert config["gradient_accumulation_steps"] == 2 and config["zero_optimization"]["stage"] == 2
    assert deepspeed_config(CONFIG_DIR / "zero3.json", stage, world=2, bf16=True)["bf16"] == {"enabled": True}
    own = tmp_path / "mine.json"
    own.write_text('{"zero_optimization": {"stage": 2}, "train_batch_size": 64}')
    with pytest.raises(ConfigError, match=r"mine.json: sets \['train_batch_size'\]"):
        deepspeed_config(own, stage, world=2, bf16=False)
    with pytest.raises(ConfigError, match="micro_batch"):
        batch_split(load_config(STAGE1).stages[0], 3)


def test_a_missing_vae_is_a_clear_error_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from training.train import main

    missing = tmp_path / "weights" / "sd-vae-ft-ema"
    assert main(["--config", str(TINY), f"vae.path={missing}", f"output_dir={tmp_path / 'run'}"]) == 2
    message = capsys.readouterr().err
    assert str(missing) in message and "stabilityai/sd-vae-ft-ema" in message and "diffusers format" in message
    assert "Traceback" not in message and not (tmp_path / "run").exists()


def test_a_build_without_shards_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from training.train import main

    vae = tmp_path / "vae"
    vae.mkdir()
    empty = tmp_path / "build"
    assert main(["--config", str(TINY), f"vae.path={vae}", f"data.build_dir={empty}"]) == 2
    message = capsys.readouterr().err
    assert f"data.build_dir {empty}: no committed shards" in message and "rp-data build" in message


OPEN_SORA_FILE = ("model.safetensors", "hpcai-tech/OpenSora-STDiT-v2-stage3", "Open-Sora 1.1 STDiT2")


def test_stage1_without_stdit2_weights_is_refused_naming_the_open_sora_file(tmp_path: Path) -> None:
    """Missing or null never means "train the backbone from random weights" silently."""
    no_model = yaml.safe_load(TINY.read_text())
    del no_model["model"]
    without = tmp_path / "without.yaml"
    without.write_text(yaml.safe_dump(no_model))
    nulled = tmp_path / "nulled.yaml"
    nulled.write_text(yaml.safe_dump({"base": str(STAGE1), "model": {"stdit2_weights": None}}))
    for path, overrides in [(STAGE1, ["model.stdit2_weights=null"]), (nulled, []), (without, [])]:
        with pytest.raises(ConfigError) as error:
            load_config(path, overrides)
        message = str(error.value)
        assert str(path) in message and "field 'model'" in message and "stdit2_weights is required" in message
        assert all(part in message for part in OPEN_SORA_FILE) and "stdit2_weights: none" in message
    shipped = load_config(STAGE1).model.stdit2_path
    assert shipped is not None and shipped.name == "model.safetensors"
    assert load_config(STAGE1, ["model.stdit2_weights=none"]).model.stdit2_path is None  # asked for explicitly
    assert load_config(TINY).model.stdit2_weights == "none"


def test_a_missing_stdit2_file_is_a_clear_error_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from training.train import main

    vae = tmp_path / "vae"
    vae.mkdir()
    run = [f"vae.path={vae}", f"output_dir={tmp_path / 'run'}", f"data.build_dir={tmp_path / 'build'}"]
    assert main(["--config", str(STAGE1), *run]) == 2
    message = capsys.readouterr().err
    shipped = load_config(STAGE1).model.stdit2_weights
    assert f"model.stdit2_weights: {shipped} not found" in message and all(part in message for part in OPEN_SORA_FILE)
    assert "model.stdit2_weights=none" in message and "Traceback" not in message and not (tmp_path / "run").exists()
    assert main(["--config", str(STAGE1), *run, "model.stdit2_weights=none"]) == 2  # accepted: the next check fails
    message = capsys.readouterr().err
    assert "stdit2_weights" not in message and "no committed shards" in message
    assert main(["--config", str(STAGE2), *run]) == 2  # stage 2 continues stage 1's export: no STDiT2 file needed
    assert "no committed shards" in capsys.readouterr().err


def test_one_file_of_the_users_paths_serves_both_stages(tmp_path: Path) -> None:
    """The README's two commands: each stage's file, then the user's own paths, merged in that order."""
    mine = yaml.safe_load((CONFIG_DIR / "paths.example.yaml").read_text())
    mine["data"]["build_dir"], mine["vae"]["path"] = "/lab/shards", "/lab/weights/vae"
    mine["model"]["stdit2_weights"], mine["output_dir"] = "/lab/weights/stdit2.safetensors", "/lab/runs/rp"
    paths = tmp_path / "my_paths.yaml"
    paths.write_text(yaml.safe_dump(mine))
    first, second = load_config([STAGE1, paths]), load_config([STAGE2, paths])
    for config in (first, second):
        assert str(config.data.build_dir) == "/lab/shards" and str(config.vae.path) == "/lab/weights/vae"
        assert str(config.model.stdit2_weights) == "/lab/weights/stdit2.safetensors"
        assert str(config.output_dir) == "/lab/runs/rp"
        assert config.deepspeed == CONFIG_DIR / "zero2.json"  # still found beside the stage's file
    # the stages keep their own settings: only the paths came from the user's file
    assert [s.name for s in first.stages] == ["stage1"] and [s.name for s in second.stages] == ["stage2"]
    assert second.data.weights["ffhq"] == 0.0 and first.data.weights["ffhq"] == 1.0
    paths.write_text("vae: {chunk_size: -1}\n")
    with pytest.raises(ConfigError, match=r"(?s)my_paths\.yaml.*vae\.chunk_size"):
        load_config([STAGE1, paths])
