"""The sampling caches (the reference frame's keys and values, the null condition's) change no prediction.

One `SamplingCache` serves every step, guidance pass and window of a sampling call; the uncached path
is `forward`, which training uses and which recomputes the reference frame and the null condition's
keys and values in every pass. Both run here on the `tiny` preset, fp32, CPU.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from model.diffusion import ddim_sample

GUIDANCE = {"reference_guidance": 2.5, "motion_guidance": 1.5}  # all three passes, each with its own weight


@pytest.mark.parametrize("frames", [1, 3], ids=["image", "video"])
def test_cached_sampling_equals_uncached(tiny_model, clip, frames):
    """Every step's guided prediction, and so the sample, is the uncached one within 1e-5."""
    model = tiny_model(control=True)
    data = clip(batch=2, frames=frames)
    motion = model.encode_motion(data["driving"])
    predictions: dict[str, list[torch.Tensor]] = {"cached": [], "uncached": []}

    def sample(name: str, cache) -> torch.Tensor:
        def guided(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
            prediction = model.guided_prediction(x, timesteps, data["reference"], motion, cache=cache, **GUIDANCE)
            predictions[name].append(prediction)
            return prediction

        return ddim_sample(guided, data["latents"], model.schedule, prediction_type="epsilon", num_steps=4)

    with torch.no_grad():
        uncached = sample("uncached", None)
        cached = sample("cached", model.sampling_cache(data["reference"]))
        without_reference = model(data["latents"], data["timesteps"], None, motion)
        with_reference = model(data["latents"], data["timesteps"], data["reference"], motion)

    assert (with_reference - without_reference).abs().max() > 1e-3  # the reference does move the prediction
    assert len(predictions["cached"]) == 4
    for step, (fresh, reused) in enumerate(zip(predictions["uncached"], predictions["cached"], strict=True)):
        assert (reused - fresh).abs().max() < 1e-5, f"step {step}"
    assert (cached - uncached).abs().max() < 1e-5


def test_one_cache_serves_every_window(tiny_model, clip):
    """Windows differ in their target frames and motion, never in the reference: one cache fits all."""
    model = tiny_model(control=True)
    data = clip(batch=1, frames=5)
    motion = model.encode_motion(data["driving"])
    with torch.no_grad():
        cache = model.sampling_cache(data["reference"])
        for part, step in ((slice(0, 3), 999), (slice(2, 5), 999), (slice(1, 4), 17)):
            timesteps = torch.tensor([step])
            args = (data["latents"][:, :, part], timesteps, data["reference"], motion[:, :, part])
            fresh = model.guided_prediction(*args, **GUIDANCE)
            reused = model.guided_prediction(*args, cache=cache, **GUIDANCE)
            assert (reused - fresh).abs().max() < 1e-5, part


def test_backbone_forward_accepts_a_reference_cache(tiny_model, clip):
    """The backbone alone: a `ReferenceCache` in place of the reference latent, with reference dropout."""
    backbone = tiny_model().backbone
    data = clip(batch=2, frames=2)
    fps = torch.full((2,), 25.0)
    keep = torch.tensor([True, False])
    with torch.no_grad():
        cache = backbone.reference_cache(data["reference"])
        for reference_keep in (None, keep):
            fresh = backbone(
                data["latents"], data["timesteps"], data["reference"], fps=fps, reference_keep=reference_keep
            )
            reused = backbone(data["latents"], data["timesteps"], cache, fps=fps, reference_keep=reference_keep)
            assert (reused - fresh).abs().max() < 1e-5


def test_caches_remove_the_reference_frame_from_the_step(tiny_model, clip):
    """The saving is real arithmetic, counted, not timed. In image mode a pass with the reference runs
    two frames through the 4 backbone blocks; with the cache it runs one. Per step (ControlNet: 2 blocks
    of one frame) that is 8 + 2 + 8 + 4 = 22 block-frames without the cache and 4 + 2 + 4 + 4 = 14 with
    it, about 0.64 of the work; attention to the reference keys stays, so the bound allows 0.75."""
    model = tiny_model(control=True)
    data = clip(batch=1, frames=1)
    motion = model.encode_motion(data["driving"])
    args = (data["latents"], data["timesteps"], data["reference"], motion)

    def flops(**extra: object) -> int:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.guided_prediction(*args, **GUIDANCE, **extra)
        return counter.get_total_flops()

    cache = model.sampling_cache(data["reference"])
    assert flops(cache=cache) < 0.75 * flops()


def test_a_cache_for_another_reference_shape_is_refused(tiny_model, clip):
    model = tiny_model()
    data = clip(batch=2, frames=1)
    cache = model.sampling_cache(data["reference"])
    with torch.no_grad(), pytest.raises(ValueError, match="ReferenceCache holds 2 reference"):
        model.guided_prediction(
            data["latents"][:1],
            data["timesteps"][:1],
            data["reference"][:1],
            None,
            cache=cache,
            reference_guidance=2.0,
            motion_guidance=1.0,
        )
    smaller = clip(batch=2, frames=1, size=(8, 8))
    with torch.no_grad(), pytest.raises(ValueError, match="of 64 tokens"):
        model.cached_prediction(smaller["latents"], smaller["timesteps"], cache, with_reference=True)


def test_bf16_autocast_cache_tracks_the_uncached_path(tiny_model, clip):
    """On GPUs sampling runs under bf16 autocast; the cache is built and used in it on the CPU here."""
    model = tiny_model(control=True)
    data = clip(batch=1, frames=2)
    motion = model.encode_motion(data["driving"])
    args = (data["latents"], data["timesteps"], data["reference"], motion)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        cache = model.sampling_cache(data["reference"])
        reused = model.guided_prediction(*args, cache=cache, **GUIDANCE)
        fresh = model.guided_prediction(*args, **GUIDANCE)
    assert reused.dtype == torch.float32
    assert (reused - fresh).norm() / fresh.norm() < 1e-2
