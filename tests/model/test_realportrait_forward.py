"""Forward behaviour of the composed model: shapes, reference attention, ControlNet, precision."""

from __future__ import annotations

import pytest
import torch

from model.controlnet import MotionControlNet
from model.realportrait import RealPortrait


@pytest.mark.parametrize(("frames", "size"), [(1, (16, 16)), (16, (8, 8)), (3, (8, 12))])
def test_image_and_video_mode_shapes(tiny_model, clip, frames, size):
    model = tiny_model(control=True)
    data = clip(batch=2, frames=frames, size=size)
    motion = model.encode_motion(data["driving"])
    assert motion.shape == (2, model.config.motion_channels, frames, *size)
    out = model(data["latents"], data["timesteps"], data["reference"], motion)
    assert out.shape == data["latents"].shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_reference_reaches_targets_only_through_spatial_attention(tiny_model, clip):
    """Perturbing the reference moves every target frame, unless its keys are masked in spatial
    attention, in which case nothing moves at all: no other path exists. Temporal attention sees
    the L target frames only."""
    model = tiny_model(control=True)
    data = clip(batch=2, frames=4, size=(8, 8))
    motion = model.encode_motion(data["driving"])
    temporal_lengths = []
    model.backbone.blocks[0].attn_temp.register_forward_hook(
        lambda module, args, out: temporal_lengths.append(tuple(args[0].shape))
    )

    def run(reference: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        return model(data["latents"], data["timesteps"], reference, motion, reference_keep=keep)

    with torch.no_grad():
        base = run(data["reference"])
        moved = run(data["reference"] + torch.randn_like(data["reference"]))
        keep = torch.tensor([True, False])
        masked = run(data["reference"], keep)
        masked_moved = run(data["reference"] + torch.randn_like(data["reference"]), keep)
        without = model(data["latents"], data["timesteps"], None, motion)

    per_frame_change = (moved - base).abs().amax(dim=(1, 3, 4))  # [B, L]
    assert (per_frame_change > 1e-4).all()
    assert torch.equal(masked[1], masked_moved[1])  # masked sample: the reference has no other path
    assert (masked_moved[0] - masked[0]).abs().max() > 1e-4  # the kept sample still follows it
    assert torch.allclose(masked[1], without[1], atol=1e-6)  # masked == no reference at all
    batch_times_tokens = 2 * (8 // 2) * (8 // 2)
    assert set(temporal_lengths) == {(batch_times_tokens, 4, model.config.hidden_size)}


def test_temporal_attention_mixes_target_frames(tiny_model, clip):
    """The counterpart of the test above: a target frame does influence the others in video mode."""
    model = tiny_model()
    data = clip(batch=1, frames=3, size=(8, 8))
    with torch.no_grad():
        base = model(data["latents"], data["timesteps"], data["reference"])
        changed = data["latents"].clone()
        changed[:, :, 0] += 1.0
        moved = model(changed, data["timesteps"], data["reference"])
    assert (moved[:, :, 1:] - base[:, :, 1:]).abs().max() > 1e-4


def test_zero_initialised_controlnet_leaves_the_backbone_unchanged(tiny_model, clip):
    model = tiny_model(control=False)
    data = clip(batch=2, frames=3, size=(8, 8))
    motion = model.encode_motion(data["driving"])
    for copied, original in zip(model.controlnet.blocks, model.backbone.blocks, strict=False):
        for (name, a), (_, b) in zip(copied.state_dict().items(), original.state_dict().items(), strict=True):
            assert torch.equal(a, b), name
    with torch.no_grad():
        backbone_only = model(data["latents"], data["timesteps"], data["reference"], None)
        with_control = model(data["latents"], data["timesteps"], data["reference"], motion)
        assert torch.equal(with_control, backbone_only)
        torch.nn.init.normal_(model.controlnet.projections[0].weight, std=0.05)
        assert (model(data["latents"], data["timesteps"], data["reference"], motion) - backbone_only).abs().max() > 0


def test_motion_keep_and_conditioning_scale(tiny_model, clip):
    model = tiny_model(control=True)
    data = clip(batch=2, frames=2, size=(8, 8))
    motion = model.encode_motion(data["driving"])
    args = (data["latents"], data["timesteps"], data["reference"])
    with torch.no_grad():
        no_motion = model(*args, None)
        full = model(*args, motion)
        dropped = model(*args, motion, motion_keep=torch.tensor([False, True]))
        unscaled = model(*args, motion, controlnet_scale=0.0)
    assert (full - no_motion).abs().max() > 1e-4
    assert torch.equal(dropped[0], no_motion[0]) and torch.allclose(dropped[1], full[1], atol=1e-6)
    assert torch.equal(unscaled, no_motion)


def test_controlnet_rejects_more_blocks_than_the_backbone(tiny_model):
    model = tiny_model()
    control = MotionControlNet(
        depth=5,
        hidden_size=96,
        num_heads=4,
        mlp_ratio=4.0,
        qk_norm=True,
        qk_norm_legacy=True,
        patch_size=(1, 2, 2),
        latent_channels=4,
        motion_channels=16,
    )
    with pytest.raises(ValueError, match="exceeds"):
        control.copy_from_backbone(model.backbone)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model, clip):
    data = clip(batch=2, frames=2, size=(8, 8))
    gradients = []
    for checkpointing in (False, True):
        model = tiny_model(control=True, drop_motion_rate=0.0, drop_both_rate=0.0).train()
        if checkpointing:
            model.enable_gradient_checkpointing()
            assert model.backbone.gradient_checkpointing and model.controlnet.gradient_checkpointing
        generator = torch.Generator().manual_seed(3)
        loss = model.training_loss(data["latents"], data["reference"], data["driving"], generator=generator)
        loss.backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys()
    for name, grad in gradients[0].items():
        assert torch.allclose(grad, gradients[1][name], atol=1e-5, rtol=1e-4), name


def test_bf16_forward_tracks_fp32(tiny_model, clip):
    model = tiny_model(control=True)
    data = clip(batch=2, frames=2, size=(8, 8))
    with torch.no_grad():
        reference_out = model(
            data["latents"], data["timesteps"], data["reference"], model.encode_motion(data["driving"])
        )
        model.to(torch.bfloat16)
        motion = model.encode_motion(data["driving"].bfloat16())
        low = model(data["latents"].bfloat16(), data["timesteps"], data["reference"].bfloat16(), motion)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    relative = (low - reference_out).norm() / reference_out.norm()
    assert relative < 0.05


def test_cross_attention_takes_explicit_condition_tokens(tiny_model, clip):
    """The null-caption default equals passing it explicitly; other tokens (e.g. an identity
    embedding later) change the output through the same path."""
    model = tiny_model()
    data = clip(batch=2, frames=2, size=(8, 8))
    args = (data["latents"], data["timesteps"], data["reference"])
    null = model.backbone.y_embedder.y_embedding[None].expand(2, -1, -1)
    with torch.no_grad():
        default = model(*args)
        explicit = model(*args, context=null)
        other = model(*args, context=torch.randn(2, 3, model.config.caption_channels))
    assert torch.allclose(default, explicit, atol=1e-6)
    assert (other - default).abs().max() > 1e-4


def test_configuration_is_validated(tiny_model):
    with pytest.raises(ValueError, match="prediction_type"):
        RealPortrait.from_preset("tiny", prediction_type="sample")
    with pytest.raises(ValueError, match="unknown preset"):
        RealPortrait.from_preset("huge")
    with pytest.raises(ValueError, match="VAE factor"):
        RealPortrait.from_preset("tiny", motion_encoder_channels=(8, 16))
    model = tiny_model(prediction_type="v_prediction", motion_input="landmarks")
    assert model.motion_encoder.input_kind == "landmarks"
