"""The rotary frequencies keep float32 whatever the model is cast to, under their released key name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.realportrait import RealPortrait


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rope_frequencies_stay_fp32_when_the_model_is_cast(dtype: torch.dtype) -> None:
    model = RealPortrait.from_preset("tiny")
    exact = model.backbone.rope.freqs.detach().clone()
    tables = model.backbone.rope.cos_sin(16)
    assert not torch.equal(exact.to(dtype).float(), exact)  # a cast would change them
    model.to(dtype)
    assert model.backbone.blocks[0].attn.qkv.weight.dtype == dtype  # the rest of the model is cast
    freqs = model.backbone.rope.freqs
    assert freqs.dtype == torch.float32 and torch.equal(freqs, exact)
    assert isinstance(freqs, nn.Parameter) and not freqs.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(model.backbone.rope.cos_sin(16), tables, strict=True))
    state = model.state_dict()  # the released key, saved in fp32
    assert state["backbone.rope.freqs"].dtype == torch.float32 and torch.equal(state["backbone.rope.freqs"], exact)
    model.float()
    assert torch.equal(model.backbone.rope.freqs, exact)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to test a device move")
def test_rope_frequencies_follow_device_moves() -> None:
    model = RealPortrait.from_preset("tiny")
    exact = model.backbone.rope.freqs.detach().clone()
    model.to(device="cuda", dtype=torch.bfloat16)
    freqs = model.backbone.rope.freqs
    assert freqs.device.type == "cuda" and freqs.dtype == torch.float32 and torch.equal(freqs.cpu(), exact)
