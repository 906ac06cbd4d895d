"""What a stage trains (parameter patterns), the LR schedule, the EMA, the loss module and the export."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model.realportrait import RealPortrait
from training.checkpoints import WEIGHTS, export_model, is_exported
from training.config import CONFIG_DIR, ConfigError, OptimizerConfig, StageConfig, load_config
from training.ema import EMA
from training.engine import Objective, build_model, lr_factor, select_trainable

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
    ema = EMA(model, names, decay=0.9, device=torch.device("cpu"))
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    ema.update(model)  # decay min(0.9, 1/10): moves 90% of the way
    ema.update(model)  # min(0.9, 2/11): the remaining 10% shrinks by 2/11
    averaged = dict(ema.model.named_parameters())
    for name in names:
        assert torch.allclose(averaged[name], start[name] + 1 - 0.1 * 2 / 11, atol=1e-6)
    assert torch.equal(averaged["backbone.blocks.0.attn.qkv.weight"], start["backbone.blocks.0.attn.qkv.weight"])
    assert ema.updates == 2 and not any(p.requires_grad for p in ema.model.parameters())


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
    config = load_config(CONFIG_DIR / "tiny.yaml", [f"output_dir={tmp_path}", "stages.stage2.motion_dropout=0.3"])
    first, origin = build_model(config, config.stages[0])
    assert origin == "a new tiny model" and first.config.reference_dropout == first.config.motion_dropout == 0.1
    with pytest.raises(ConfigError, match="init_from 'stage1': no exported model"):
        build_model(config, config.stages[1])
    export_model(first, tmp_path / "stage1" / "export")
    second, origin = build_model(config, config.stages[1])
    assert origin == f"weights of {tmp_path / 'stage1' / 'export'}" and second.config.motion_dropout == 0.3
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters(), strict=True))


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
    assert (latents == 1).all() and (reference_latents == 0).all() and fps is None
