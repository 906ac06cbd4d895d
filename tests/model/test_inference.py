"""Sampling as inference: no graph kept, the driving fps as condition, motion encoded in chunks, bf16 autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from model.animate import Animator, SamplingOptions, to_tensor
from model.precision import Precision
from model.realportrait import RealPortrait
from model.vae import SD15_VAE_CONFIG, FrameVAE

SIDE = 128  # tiny's input_sq_size


def conditioned_tiny() -> RealPortrait:
    """The tiny model with its zero-initialised projections made random: a fresh model predicts exactly 0
    (Open-Sora zero-inits the final layer, the ControlNet's zero convs, the cross and temporal attention
    outputs), so no condition would change anything and every comparison below would hold trivially."""
    torch.manual_seed(0)
    model = RealPortrait.from_preset("tiny")
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1 and not parameter.any():
                parameter.normal_(0, 0.05)
    return model.eval()


def small_vae() -> FrameVAE:
    torch.manual_seed(1)
    return FrameVAE(AutoencoderKL(**{**SD15_VAE_CONFIG, "block_out_channels": [16, 16, 32, 32], "norm_num_groups": 8}))


def inputs(frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    reference = torch.randn(1, 4, SIDE // 8, SIDE // 8, generator=generator)
    driving = torch.rand(1, 3, frames, SIDE, SIDE, generator=generator) * 2 - 1
    return reference, driving


def test_sample_keeps_no_graph_without_an_outer_no_grad() -> None:
    model = conditioned_tiny()
    reference, driving = inputs(4)
    assert torch.is_grad_enabled() and all(p.requires_grad for p in model.motion_encoder.parameters())
    latents = model.sample(reference, driving, num_steps=1)
    assert not latents.requires_grad and latents.grad_fn is None
    assert torch.is_grad_enabled()  # the caller's mode is restored


def test_sample_is_conditioned_on_the_driving_fps() -> None:
    model = conditioned_tiny()
    reference, driving = inputs(4)

    def sample(fps: float | torch.Tensor | None) -> torch.Tensor:
        return model.sample(reference, driving, num_steps=1, fps=fps, generator=torch.Generator().manual_seed(0))

    at_30 = sample(30.0)
    assert torch.equal(at_30, sample(torch.tensor([30.0])))
    assert torch.equal(sample(None), sample(model.config.video_fps))  # no rate: the default clip rate
    assert not torch.allclose(at_30, sample(None), atol=1e-4)  # the rate reaches the prediction
    still = model.fps_condition(30.0, 1, 1, torch.device("cpu"))  # one frame is a still, as in training
    assert still.tolist() == [model.config.image_fps]


def test_chunked_motion_encoding_equals_whole_video_encoding() -> None:
    model = conditioned_tiny()
    _, driving = inputs(11)
    with torch.no_grad():
        whole = model.encode_motion(driving)
        chunked = model.encode_motion(driving, chunk_frames=4)
        animator = Animator(model, small_vae(), precision=Precision.resolve("cpu"))
        frames = ((driving[0].permute(1, 2, 3, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
        from_frames = model.encode_motion(to_tensor(frames))
        window = animator.motion_windows(frames)
        per_window = torch.cat([window(start, min(start + 4, 11)) for start in range(0, 11, 4)], dim=2)
    assert chunked.shape == whole.shape == (1, model.config.motion_channels, 11, SIDE // 8, SIDE // 8)
    assert torch.allclose(chunked, whole, atol=1e-5)
    assert torch.allclose(per_window, from_frames, atol=1e-5)


def generate(precision: Precision, frames: int = 20) -> np.ndarray:
    animator = Animator(conditioned_tiny(), small_vae(), precision=precision)
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)  # not the model's size: resized first
    driving = rng.integers(0, 256, (frames, SIDE, SIDE, 3), dtype=np.uint8)
    options = SamplingOptions(num_steps=2, window=8, overlap=2, reference_guidance=2.0, motion_guidance=1.5)
    return animator.generate(source, driving, options, fps=25.0)


def test_generate_runs_in_bf16_autocast_on_the_cpu() -> None:
    bf16 = Precision.resolve("cpu", "bf16")
    dtypes: set[torch.dtype] = set()
    animator = Animator(conditioned_tiny(), small_vae(), precision=bf16)
    hook = animator.model.backbone.blocks[0].attn.qkv.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
    rng = np.random.default_rng(0)
    driving = rng.integers(0, 256, (20, SIDE, SIDE, 3), dtype=np.uint8)
    options = SamplingOptions(num_steps=2, window=8, overlap=2, reference_guidance=2.0, motion_guidance=1.5)
    result = animator.generate(driving[0], driving, options, fps=25.0)
    hook.remove()
    assert dtypes == {torch.bfloat16}  # the backbone's matmuls ran in bf16
    assert result.shape == (20, SIDE, SIDE, 3) and result.dtype == np.uint8 and result.std() > 1
    reference = generate(Precision.resolve("cpu", "fp32"))
    low = generate(bf16)
    assert (
        np.abs(low.astype(float) - reference.astype(float)).mean() < 2
    )  # the same video, in bf16 rounding (measured 0.3)


def test_precision_defaults_and_errors() -> None:
    default = Precision.resolve()
    if torch.cuda.is_available():
        assert (default.device.type, default.dtype) == ("cuda", torch.bfloat16)
    else:
        assert (default.device.type, default.dtype) == ("cpu", torch.float32)
    assert Precision.resolve("cpu", "fp16").dtype == torch.float16
    with pytest.raises(ValueError, match="--dtype must be one of"):
        Precision.resolve("cpu", "fp8")
    with pytest.raises(ValueError, match="not a torch device"):
        Precision.resolve("gpu0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the CPU path is tested above)")
def test_generate_on_cuda_in_bf16_matches_the_cpu() -> None:
    cuda = generate(Precision.resolve("cuda", "bf16"))
    cpu = generate(Precision.resolve("cpu", "fp32"))
    assert cuda.shape == cpu.shape and np.abs(cuda.astype(float) - cpu.astype(float)).mean() < 2
