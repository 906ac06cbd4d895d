"""The frozen SD1.5 VAE wrapper.

The real SD1.5 weights cannot be downloaded here, so each test builds a real diffusers
`AutoencoderKL` with the SD1.5 VAE configuration except for small block widths (for speed), and
writes it in a real on-disk format: a diffusers folder via `save_pretrained`, or a single
safetensors file in diffusers or original-LDM key names.
"""

from __future__ import annotations

import re

import pytest
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from model.vae import SCALING_FACTOR, SD15_VAE_CONFIG, FrameVAE, load_vae

SMALL_WIDTHS = {"block_out_channels": [16, 16, 32, 32], "norm_num_groups": 8}


@pytest.fixture
def small_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(**{**SD15_VAE_CONFIG, **SMALL_WIDTHS})


def test_loads_a_diffusers_folder_and_round_trips_a_clip(small_vae, tmp_path):
    small_vae.save_pretrained(tmp_path / "vae")
    vae = FrameVAE.from_path(tmp_path / "vae", chunk_size=3)
    assert vae.scaling_factor == SCALING_FACTOR == 0.18215
    assert not any(p.requires_grad for p in vae.parameters())
    vae.train()
    assert not vae.vae.training  # stays frozen in eval mode

    frames = torch.rand(2, 3, 5, 64, 64) * 2 - 1
    latents = vae.encode(frames, sample=False)
    assert latents.shape == (2, 4, 5, 8, 8)
    decoded = vae.decode(latents)
    assert decoded.shape == frames.shape and decoded.abs().max() <= 1

    expected = small_vae.encode(frames[:, :, 3]).latent_dist.mode() * SCALING_FACTOR
    assert torch.allclose(latents[:, :, 3], expected, atol=1e-5)
    whole = FrameVAE(vae.vae, chunk_size=100)
    assert torch.allclose(whole.encode(frames, sample=False), latents, atol=1e-5)
    assert torch.allclose(whole.decode(latents), decoded, atol=1e-4)

    sampled = [vae.encode(frames, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(sampled[0], sampled[1]) and not torch.equal(sampled[0], latents)


def ldm_key(key: str, num_up_blocks: int) -> str:
    """diffusers AutoencoderKL key -> the original LDM (CompVis) name, for writing test files."""
    key = re.sub(r"down_blocks\.(\d+)\.resnets\.", r"down.\1.block.", key)
    key = re.sub(r"down_blocks\.(\d+)\.downsamplers\.0\.", r"down.\1.downsample.", key)
    key = re.sub(r"up_blocks\.(\d+)\.resnets\.", lambda m: f"up.{num_up_blocks - 1 - int(m[1])}.block.", key)
    key = re.sub(r"up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"up.{num_up_blocks - 1 - int(m[1])}.upsample.", key)
    key = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", key)
    key = key.replace("mid_block.attentions.0.", "mid.attn_1.").replace("group_norm", "norm")
    key = re.sub(r"to_([qkv])\.", r"\1.", key).replace("to_out.0.", "proj_out.")
    return key.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")


def to_ldm_checkpoint(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers VAE state dict as the VAE part of an original SD1.5 checkpoint."""
    converted = {}
    for key, value in state.items():
        name = ldm_key(key, num_up_blocks=4)
        if ".attn_1." in name and value.ndim == 2:  # LDM keeps attention projections as 1x1 convs
            value = value[..., None, None]
        converted["first_stage_model." + name] = value
    return converted


@pytest.mark.parametrize("layout", ["diffusers", "ldm"])
def test_loads_a_single_safetensors_file(small_vae, tmp_path, layout):
    state = small_vae.state_dict()
    if layout == "ldm":
        state = to_ldm_checkpoint(state)
    save_file(state, tmp_path / "vae.safetensors")
    loaded = load_vae(tmp_path / "vae.safetensors", config=SMALL_WIDTHS)
    for key, value in small_vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_missing_vae_names_the_path_and_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*sd-vae-ft-ema"):
        load_vae(tmp_path / "nowhere")


def test_a_three_block_vae_is_4x_and_a_model_of_another_factor_is_refused_by_name(tmp_path):
    """The demo's 4x stand-in: three SD1.5 blocks halve the side twice, and a model built for 8x is
    stopped before its first step with what to change, not by a shape error inside its forward."""
    torch.manual_seed(0)
    blocks = {"down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3}
    AutoencoderKL(
        **{**SD15_VAE_CONFIG, **blocks, "block_out_channels": [16, 16, 32], "norm_num_groups": 8}
    ).save_pretrained(tmp_path / "vae4x")
    vae = FrameVAE.from_path(tmp_path / "vae4x")
    assert vae.factor == 4
    assert vae.encode(torch.rand(1, 3, 2, 64, 64) * 2 - 1, sample=False).shape == (1, 4, 2, 16, 16)
    vae.check_matches(4, tmp_path / "vae4x")
    with pytest.raises(
        ValueError, match=re.escape(f"the VAE at {tmp_path / 'vae4x'} downsamples 4x, but the model expects 8x")
    ):
        vae.check_matches(8, tmp_path / "vae4x")
