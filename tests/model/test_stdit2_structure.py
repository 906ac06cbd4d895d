"""The backbone's structure against the released Open-Sora 1.1 STDiT2-XL/2, and the paper's sizes.

Everything is built on the meta device: shapes and counts only, no memory.
"""

from __future__ import annotations

import ast
import math

import numpy as np
import pytest
import torch

from model.attention import TemporalAttention
from model.embeddings import RotaryEmbedding, apply_rotary, spatial_position_embedding
from model.realportrait import RealPortrait
from model.stdit2 import STDiT2

# Counted once from the meta-device build (and stated in the README). The backbone is the released
# STDiT2-XL/2 (767,452,100) minus the learned-sigma half of the output layer (16 x 1152 + 16).
PAPER_BACKBONE_PARAMETERS = 767_433_652
PAPER_CONTROLNET_PARAMETERS = 363_023_136  # 13 blocks 345,440,160 + projections + embeddings
PAPER_MOTION_ENCODER_PARAMETERS = 1_310_528
PAPER_TOTAL_PARAMETERS = 1_131_767_316


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def read_keys(shared_dir) -> dict[str, list[int]]:
    lines = (shared_dir / "stdit2_keys.tsv").read_text().splitlines()
    rows = [line.split("\t") for line in lines if line and not line.startswith("#")]
    return {key: ast.literal_eval(shape) for key, shape in rows}


def test_opensora_options_reproduce_the_released_checkpoint(shared_dir):
    released = read_keys(shared_dir)
    with torch.device("meta"):
        backbone = STDiT2(pred_sigma=True, caption_channels=4096, caption_tokens=200)
    ours = {key: list(tensor.shape) for key, tensor in backbone.state_dict().items()}
    assert ours == released
    assert list(ours) == list(released)  # same order too
    assert len(ours) == 707
    assert count(backbone) == 767_452_100  # parameters incl. rope.freqs; y_embedding is a buffer
    assert count(backbone.blocks[0]) == 26_572_320
    assert sum(count(block) for block in backbone.blocks[:13]) == 345_440_160
    assert count(backbone) + backbone.y_embedder.y_embedding.numel() == sum(map(math.prod, released.values()))


def test_paper_config_parameter_counts():
    with torch.device("meta"):
        model = RealPortrait.from_preset("paper")
    assert count(model.backbone) == PAPER_BACKBONE_PARAMETERS == 767_452_100 - (16 * 1152 + 16)
    assert count(model.controlnet) == PAPER_CONTROLNET_PARAMETERS
    assert sum(count(block) for block in model.controlnet.blocks) == 345_440_160
    assert count(model.motion_encoder) == PAPER_MOTION_ENCODER_PARAMETERS
    assert count(model) == PAPER_TOTAL_PARAMETERS
    config = model.config
    assert (config.depth, config.hidden_size, config.num_heads, config.controlnet_depth) == (28, 1152, 16, 13)
    assert tuple(config.patch_size) == (1, 2, 2) and config.latent_channels == 4


def test_position_embedding_follows_the_mae_convention_on_a_non_square_grid():
    """Channels [0, C/2) encode the column, [C/2, C) the row, each as sines then cosines."""
    dim, rows, cols = 16, 3, 5
    embedding = spatial_position_embedding(rows, cols, dim, scale=1.0, base_size=rows, device=torch.device("cpu"))

    def sincos(position: float, width: int) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(width // 2) / (width / 2))
        return np.concatenate([np.sin(position * omega), np.cos(position * omega)])

    for row in range(rows):
        for col in range(cols):
            expected = np.concatenate(
                [sincos(col * rows / cols, dim // 2), sincos(row * rows / rows, dim // 2)]
            )  # positions stretched to base_size tokens per side
            np.testing.assert_allclose(embedding[row * cols + col].numpy(), expected, atol=1e-6)


def test_size_conditioning_uses_height_then_width_in_pixels():
    torch.manual_seed(0)
    backbone = STDiT2(hidden_size=48, depth=1, num_heads=4, caption_channels=8, caption_tokens=2)
    seen: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(module: torch.nn.Module, args: tuple[torch.Tensor], output: torch.Tensor) -> None:
            seen[name] = args[0]

        return hook

    backbone.csize_embedder.register_forward_hook(record("csize"))
    backbone.ar_embedder.register_forward_hook(record("ar"))
    backbone.condition(torch.tensor([5]), latent_size=(16, 24), num_frames=1, fps=torch.tensor([120.0]))
    assert seen["csize"].tolist() == [[128.0, 192.0]]
    assert seen["ar"].tolist() == pytest.approx([128 / 192])


def test_rotary_embedding_encodes_relative_frame_positions():
    rope = RotaryEmbedding(8)
    assert torch.allclose(rope.freqs, 1.0 / 10000 ** (torch.arange(0, 8, 2) / 8))
    cos, sin = rope.cos_sin(6)
    q, k = torch.randn(8), torch.randn(8)
    rotated_q = apply_rotary(q.expand(6, 8), cos, sin)
    rotated_k = apply_rotary(k.expand(6, 8), cos, sin)
    assert torch.allclose(rotated_q[0], q)  # position 0 is not rotated
    assert torch.allclose(rotated_q[3] @ rotated_k[1], rotated_q[4] @ rotated_k[2], atol=1e-5)
    assert not torch.allclose(rotated_q[3] @ rotated_k[1], rotated_q[3] @ rotated_k[2], atol=1e-3)


@pytest.mark.parametrize("legacy", [True, False])
def test_temporal_qk_norm_order(legacy):
    """Legacy (released weights): RMSNorm(rotate(q)); otherwise rotate(RMSNorm(q))."""
    torch.manual_seed(0)
    attention = TemporalAttention(16, 2, qk_norm=True, rotary_before_norm=legacy)
    with torch.no_grad():
        attention.q_norm.weight.copy_(torch.rand(8) + 0.5)
    rotary = RotaryEmbedding(8).cos_sin(4)
    x = torch.randn(3, 4, 16)
    q, _, _ = attention.project(x, rotary)
    raw_q = attention.qkv(x)[..., :16].unflatten(-1, (2, 8)).transpose(1, 2)

    def rms(t: torch.Tensor) -> torch.Tensor:
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6)

    weight = attention.q_norm.weight
    expected = weight * rms(apply_rotary(raw_q, *rotary)) if legacy else apply_rotary(weight * rms(raw_q), *rotary)
    assert torch.allclose(q, expected, atol=1e-5)
