"""What a stage trains (parameter patterns), the LR schedule, the EMA, the loss module and the export."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.realportrait import RealPortrait
from model.stdit2 import STDiT2
from training.checkpoints import WEIGHTS, export_model, is_exported
from training.config import CONFIG_DIR, ConfigError, OptimizerConfig, StageConfig, load_config
from training.ema import EMA, warmed_up_decay
from training.engine import Objective, build_model, ema_for_stage, lr_factor, select_trainable

NEW_MODULES = ("controlnet.motion_embedder.", "controlnet.projections.", "motion_encoder.")
TEMPORAL = ("attn_temp.", "scale_shift_table_temporal", "t_block_temp.", "fl_embedder.", "fps_embedder.")


def test_stage1_trains_everything_but_the_temporal_layers() -> None:
    model = RealPortrait.from_preset("tiny")
    names = select_trainable(model, load_config(CONFIG_DIR / "tiny.yaml").stages[0])
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert set(names) == trainable
    for name, _ in model.named_parameters():
        temporal = any(part in name for part in TEMPORAL)
        assert (name in trainable) == (not temporal and name != "backbone.rope.freqs"), name
    assert any(name.startswith("controlnet.projections.") for name in trainable)
    assert any(name.startswith("motion_encoder.") for name in trainable)


def test_trainable_patterns_that_match_nothing_are_errors() -> None:
    stage = StageConfig(name="s", mode="image", steps=1, global_batch=1, trainable=["backbone.blocks.*.atn.*"])
    with pytest.raises(ConfigError, match=r"stages.s.trainable: pattern 'backbone.blocks.\*.atn.\*' matches no"):
        select_trainable(RealPortrait.from_preset("tiny"), stage)
    everything = StageConfig(name="s", mode="image", steps=1, global_batch=1, frozen=["*"])
    with pytest.raises(ConfigError, match="no parameter to train"):
        select_trainable(RealPortrait.from_preset("tiny"), everything)


def test_the_learning_rate_warms_up_then_holds_or_decays() -> None:
    constant = lr_factor(OptimizerConfig(warmup_steps=4), 100)
    assert [constant(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = lr_factor(OptimizerConfig(warmup_steps=10, schedule="cosine", min_lr_ratio=0.1), 110)
    assert cosine(10) == 1.0 and math.isclose(cosine(60), 0.55) and math.isclose(cosine(110), 0.1)
    assert cosine(200) == pytest.approx(0.1)


def test_ema_averages_the_trained_parameters_only() -> None:
    torch.manual_seed(0)
    model = RealPortrait.from_preset("tiny")
    names = ["motion_encoder.net.0.weight", "backbone.final_layer.linear.weight"]
    ema = EMA(model, names, decay=0.9, device=torch.device("cpu"))  # no warm-up: 0.9 from the first update
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    ema.update(model)  # moves 10% of the way
    ema.update(model)  # the remaining 90% shrinks to 81%
    averaged = dict(ema.gathered().named_parameters())  # no ZeRO partition: nothing to gather
    for name in names:
        assert torch.allclose(averaged[name], start[name] + 1 - 0.81, atol=1e-6)
    assert torch.equal(averaged["backbone.blocks.0.attn.qkv.weight"], start["backbone.blocks.0.attn.qkv.weight"])
    assert ema.updates == 2 and not any(p.requires_grad for p in ema.gathered().parameters())


def test_ema_refuses_bf16_weights_without_an_fp32_master_copy() -> None:
    model = RealPortrait.from_preset("tiny")
    ema = EMA(model, ["backbone.final_layer.linear.weight"], decay=0.0, device=torch.device("cpu"))
    with torch.no_grad():
        model.backbone.final_layer.linear.weight.fill_(0.25)
    ema.update(model)  # fp32 and no DeepSpeed optimizer: the weights are their own master copy
    assert (ema.gathered().backbone.final_layer.linear.weight == 0.25).all()
    rounded = EMA(model, ["backbone.final_layer.linear.weight"], decay=0.0, device=torch.device("cpu"))
    with pytest.raises(RuntimeError, match=r"backbone.final_layer.linear.weight \(torch.bfloat16\) has none"):
        rounded.update(model.bfloat16())  # rounded weights would silently pass their rounding on to the average


def test_the_ema_decay_reaches_its_target_after_the_warm_up_fraction() -> None:
    (stage,) = load_config(CONFIG_DIR / "stage1.yaml").stages
    assert (stage.ema_decay, stage.ema_warmup, stage.steps) == (0.9999, 0.1, 20_000)
    ema = ema_for_stage(
        RealPortrait.from_preset("tiny"), ["backbone.final_layer.linear.weight"], stage, torch.device("cpu")
    )
    decays = []
    for updates in range(stage.steps + 1):
        ema.updates = updates
        decays.append(ema.current_decay())
    assert decays[0] == 0.0  # the first update copies the weights
    assert all(a < b for a, b in itertools.pairwise(decays[:2001]))  # rises over the warm-up
    assert decays[1999] < 0.9999 and decays[2000:] == [0.9999] * (stage.steps - 1999)  # held from 10% of the run
    horizon = [1 / (1 - d) for d in decays[:2001]]  # the number of updates averaged grows linearly
    assert horizon[1000] == pytest.approx((1 + 10_000) / 2, rel=1e-6)
    assert warmed_up_decay(0.99, 5, 0) == 0.99  # no warm-up: the target from the start


def test_the_loss_module_is_the_models_training_loss() -> None:
    torch.manual_seed(0)
    model = RealPortrait.from_preset("tiny")
    latents, reference = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 4, 8, 8)
    driving, fps = torch.rand(2, 3, 3, 64, 64) * 2 - 1, torch.tensor([25.0, 12.5])
    torch.manual_seed(1)
    wrapped = Objective(model)(latents, reference, driving, fps)
    torch.manual_seed(1)
    assert torch.equal(wrapped, model.training_loss(latents, reference, driving, fps=fps))


def test_an_export_is_complete_or_absent(tmp_path: Path) -> None:
    model = RealPortrait.from_preset("tiny")
    out = tmp_path / "export"
    export_model(model, out)
    assert is_exported(out) and not list(tmp_path.glob(".export*"))
    with torch.no_grad():
        model.backbone.final_layer.linear.weight.fill_(0.5)
    export_model(model, out)  # replaces the earlier one
    assert (load_file(out / WEIGHTS)["backbone.final_layer.linear.weight"] == 0.5).all()
    loaded = RealPortrait.from_pretrained(out, low_cpu_mem_usage=False)
    assert torch.equal(loaded.backbone.final_layer.linear.weight, model.backbone.final_layer.linear.weight)
    assert not is_exported(tmp_path / "nothing")


def test_a_stage_sets_its_guidance_dropout_and_starting_weights(tmp_path: Path) -> None:
    config = load_config(
        CONFIG_DIR / "tiny.yaml", [f"output_dir={tmp_path}", "stages.stage2.condition_dropout.both=0.3"]
    )
    first = build_model(config, config.stages[0])
    assert first.origin == "a new tiny model (stdit2_weights: none, the backbone from random weights)"
    assert first.model.config.drop_motion_rate == first.model.config.drop_both_rate == 0.1
    assert first.import_record is not None and first.import_record["stdit2_weights"] == "none"
    assert first.import_record["loaded"] == [] and set(first.import_record["initialised"]) == set(
        first.model.state_dict()
    )
    with pytest.raises(ConfigError, match="init_from 'stage1': no exported model"):
        build_model(config, config.stages[1])
    export_model(first.model, tmp_path / "stage1" / "export")
    second = build_model(config, config.stages[1])
    assert second.origin == f"weights of {tmp_path / 'stage1' / 'export'}" and second.model.config.drop_both_rate == 0.3
    assert second.import_record is None  # a continued stage imports nothing
    assert all(torch.equal(p, q) for p, q in zip(first.model.parameters(), second.model.parameters(), strict=True))


def test_stage1_starts_from_a_stdit2_file_and_reports_the_import(tmp_path: Path) -> None:
    """A checkpoint in the released format (Open-Sora key names, learned-sigma output) at the tiny size."""
    torch.manual_seed(0)
    released = STDiT2(
        hidden_size=96, depth=4, num_heads=4, caption_channels=32, caption_tokens=8, input_sq_size=128, pred_sigma=True
    )
    path = tmp_path / "model.safetensors"
    save_file({key: tensor.contiguous() for key, tensor in released.state_dict().items()}, path)
    config = load_config(CONFIG_DIR / "tiny.yaml", [f"output_dir={tmp_path}", f"model.stdit2_weights={path}"])
    start = build_model(config, config.stages[0])
    record = start.import_record
    assert record is not None and record["stdit2_weights"] == str(path)
    final = {"backbone.final_layer.linear.weight", "backbone.final_layer.linear.bias"}
    assert set(record["adapted"]) == final and record["unused"] == []
    assert set(record["loaded"]) >= {f"backbone.{key}" for key in released.state_dict()}
    assert "controlnet.blocks.0.attn.qkv.weight" in record["loaded"]  # the ControlNet's copied blocks
    assert record["initialised"] and all(key.startswith(NEW_MODULES) for key in record["initialised"])
    assert f"with the STDiT2 weights of {path} ({len(record['loaded'])} loaded, 2 adapted" in start.origin
    assert torch.equal(start.model.backbone.blocks[3].attn.qkv.weight, released.blocks[3].attn.qkv.weight)
    assert json.loads(json.dumps(record)) == record  # what train.py writes to <stage>/stdit2_import.json


def test_model_inputs_encode_frames_or_take_the_shards_latents(tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    from model.vae import SD15_VAE_CONFIG, FrameVAE
    from training.train import Context, model_inputs

    torch.manual_seed(0)
    vae = FrameVAE(AutoencoderKL(**{**SD15_VAE_CONFIG, "block_out_channels": [8, 8, 8, 8], "norm_num_groups": 4}))
    context = Context(rank=0, world=1, device=torch.device("cpu"), bf16=False, vae=vae)
    frames = torch.randint(0, 256, (2, 3, 3, 64, 64), dtype=torch.uint8)
    batch = {"frames": frames, "reference": frames[:, :, 0], "fps": torch.tensor([25.0, 25.0])}
    latents, reference_latents, driving, fps = model_inputs(batch, context, sample_posterior=False)
    assert latents.shape == (2, 4, 3, 8, 8) and reference_latents.shape == (2, 4, 8, 8)
    assert torch.allclose(reference_latents, latents[:, :, 0], atol=1e-5)  # the reference is frame 0 here
    assert torch.equal(driving, frames.float() / 127.5 - 1) and torch.equal(fps, batch["fps"])
    given = {**batch, "latents": torch.ones(2, 4, 3, 8, 8), "reference_latents": torch.zeros(2, 4, 8, 8)}
    given["fps"] = torch.full((2,), float("nan"))  # still images: the model's own image fps
    latents, reference_latents, _, fps = model_inputs(given, context, sample_posterior=True)
    assert (latents == 1).all() and (reference_latents == 0).all() and fps.isnan().all()  # the model's default
