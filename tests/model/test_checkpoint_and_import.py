"""save_pretrained / from_pretrained, and the Open-Sora 1.1 STDiT2 import.

Open-Sora weights cannot be downloaded here, so the tests write checkpoints in the real format:
key names and shapes of the released STDiT2-XL/2 (the reference folder's key list), random values.
"""

from __future__ import annotations

import ast
import json

import pytest
import torch
from safetensors.torch import save_file

from model.opensora_import import epsilon_rows, read_checkpoint
from model.realportrait import RealPortrait
from model.stdit2 import STDiT2

NEW_MODULES = ("controlnet.motion_embedder.", "controlnet.projections.", "motion_encoder.")


def test_save_and_load_round_trip_is_exact(tiny_model, clip, tmp_path):
    model = tiny_model(control=True, motion_input="frames", min_snr_gamma=5.0)
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", "diffusion_pytorch_model.safetensors"}
    assert json.loads((tmp_path / "config.json").read_text())["min_snr_gamma"] == 5.0

    loaded = RealPortrait.from_pretrained(tmp_path, low_cpu_mem_usage=False).eval()
    assert public_config(loaded) == public_config(model)
    original_state, loaded_state = model.state_dict(), loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    for key, tensor in original_state.items():
        assert torch.equal(tensor, loaded_state[key]), key
    data = clip(batch=1, frames=2, size=(8, 8))
    with torch.no_grad():
        outputs = [
            m(data["latents"], data["timesteps"], data["reference"], m.encode_motion(data["driving"]))
            for m in (model, loaded)
        ]
    assert torch.equal(outputs[0], outputs[1])


def public_config(model: RealPortrait) -> dict:
    """The constructor arguments as JSON would store them (tuples become lists)."""
    return json.loads(json.dumps({key: value for key, value in model.config.items() if not key.startswith("_")}))


def opensora_tiny_state(seed: int = 0) -> tuple[STDiT2, dict[str, torch.Tensor]]:
    """A tiny backbone built with the Open-Sora options (learned sigma), non-trivial weights."""
    torch.manual_seed(seed)
    reference = STDiT2(
        hidden_size=96, depth=4, num_heads=4, caption_channels=32, caption_tokens=8, input_sq_size=128, pred_sigma=True
    ).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            if parameter.requires_grad and parameter.abs().sum() == 0:
                parameter.normal_(std=0.05)
    return reference, reference.state_dict()


def test_import_reproduces_the_opensora_backbone_epsilon_output(clip):
    opensora, state = opensora_tiny_state()
    model = RealPortrait.from_preset("tiny").eval()
    report = model.import_opensora_stdit2(state)

    assert report.unused == []
    assert set(report.adapted) == {"backbone.final_layer.linear.weight", "backbone.final_layer.linear.bias"}
    assert report.initialised and all(key.startswith(NEW_MODULES) for key in report.initialised)
    assert torch.equal(model.controlnet.blocks[1].mlp.fc1.weight, state["blocks.1.mlp.fc1.weight"])
    assert torch.equal(model.controlnet.x_embedder.proj.weight, state["x_embedder.proj.weight"])
    assert "initialised" in str(report) and "controlnet.projections.0" in str(report)

    data = clip(batch=2, frames=3, size=(8, 12))
    fps = torch.tensor([25.0, 30.0])
    with torch.no_grad():
        expected = opensora(data["latents"], data["timesteps"], data["reference"], fps=fps)[:, :4]
        ours = model(data["latents"], data["timesteps"], data["reference"], None, fps=fps)
    assert torch.allclose(ours, expected, atol=1e-6)


def test_epsilon_rows_keep_the_first_channels_of_each_patch_position():
    rows = torch.arange(4 * 8).float()[:, None]  # 4 patch positions x 8 channels, channel fastest
    kept = epsilon_rows(rows, out_channels=4)[:, 0].tolist()
    assert kept == [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27]


def test_checkpoint_files_safetensors_and_weights_only_torch(tmp_path):
    _, state = opensora_tiny_state()
    save_file(state, tmp_path / "model.safetensors")
    torch.save({f"module.{key}": value for key, value in state.items()}, tmp_path / "ema.pt")
    for name in ("model.safetensors", "ema.pt"):
        loaded = read_checkpoint(tmp_path / name)
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[key], state[key]) for key in state)
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors.*OpenSora-STDiT-v2-stage3"):
        read_checkpoint(tmp_path / "missing.safetensors")


def test_import_refuses_a_checkpoint_of_another_size():
    _, state = opensora_tiny_state()
    model = RealPortrait.from_preset("tiny", hidden_size=48)
    with pytest.raises(ValueError, match="does not fit"):
        model.import_opensora_stdit2(state)


@pytest.mark.slow
def test_import_of_a_released_size_checkpoint(shared_dir, tmp_path):
    """The paper model takes a checkpoint with every released key and shape, with nothing unexpected."""
    lines = (shared_dir / "stdit2_keys.tsv").read_text().splitlines()
    shapes = {key: ast.literal_eval(shape) for key, shape in (ln.split("\t") for ln in lines if ln[:1] != "#")}
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    path = tmp_path / "model.safetensors"
    save_file(state, path)
    del state

    model = RealPortrait.from_preset("paper")
    try:
        report = model.import_opensora_stdit2(path)
        checkpoint = read_checkpoint(path)
    finally:
        path.unlink()  # 3 GB: do not leave it in pytest's kept temporary directories
    assert report.unused == []
    assert set(report.adapted) == {"backbone.final_layer.linear.weight", "backbone.final_layer.linear.bias"}
    assert len(report.loaded) == 707 + 2 + 13 * 24  # backbone, ControlNet embedding, 13 blocks of 24 tensors
    assert report.initialised and all(key.startswith(NEW_MODULES) for key in report.initialised)
    assert torch.equal(model.backbone.blocks[27].attn_temp.qkv.weight, checkpoint["blocks.27.attn_temp.qkv.weight"])
    assert torch.equal(
        model.controlnet.blocks[12].cross_attn.kv_linear.bias, checkpoint["blocks.12.cross_attn.kv_linear.bias"]
    )
    assert torch.equal(model.backbone.y_embedder.y_embedding, checkpoint["y_embedder.y_embedding"])
    assert torch.equal(model.backbone.rope.freqs, checkpoint["rope.freqs"])
    assert torch.equal(
        model.backbone.final_layer.linear.weight, epsilon_rows(checkpoint["final_layer.linear.weight"], 4)
    )
