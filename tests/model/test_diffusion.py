"""Schedule, loss weighting and the DDIM sampler, plus sampling through the composed model."""

from __future__ import annotations

import pytest
import torch

from model.diffusion import NoiseSchedule, ddim_sample, diffusion_loss, sampling_timesteps


def test_schedule_is_opensoras_linear_ddpm():
    schedule = NoiseSchedule(1000)
    betas = 1 - schedule.alphas_cumprod / torch.cat([torch.ones(1, dtype=torch.float64), schedule.alphas_cumprod[:-1]])
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    assert torch.allclose(betas.diff(), torch.full((999,), (0.02 - 1e-4) / 999, dtype=torch.float64))
    assert schedule.alphas_cumprod[-1].item() == pytest.approx(4.0358e-5, rel=1e-3)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_targets_and_predictions_are_consistent(prediction_type):
    schedule = NoiseSchedule()
    x0, noise = torch.randn(3, 4, 2, 8, 8), torch.randn(3, 4, 2, 8, 8)
    timesteps = torch.tensor([0, 500, 999])
    noisy = schedule.add_noise(x0, noise, timesteps)
    target = schedule.training_target(x0, noise, timesteps, prediction_type)
    recovered_x0, recovered_eps = schedule.split_prediction(target, noisy, timesteps, prediction_type)
    assert torch.allclose(recovered_eps, noise, atol=1e-4)
    assert torch.allclose(recovered_x0[:2], x0[:2], atol=1e-3)  # x0 from eps is ill-posed at t = 999


def test_min_snr_weighting():
    schedule = NoiseSchedule()
    timesteps = torch.tensor([10, 900])
    snr = schedule.snr(timesteps)
    assert snr[0] > 5 > snr[1]
    prediction, target = torch.zeros(2, 4), torch.ones(2, 4)
    assert diffusion_loss(prediction, target, snr, prediction_type="epsilon").item() == pytest.approx(1.0)
    weighted = diffusion_loss(prediction, target, snr, prediction_type="epsilon", min_snr_gamma=5.0)
    assert weighted.item() == pytest.approx((5 / snr[0].item() + 1) / 2)
    v_weighted = diffusion_loss(prediction, target, snr, prediction_type="v_prediction", min_snr_gamma=5.0)
    assert v_weighted.item() == pytest.approx((5 / (snr[0].item() + 1) + snr[1].item() / (snr[1].item() + 1)) / 2)


def test_sampling_timesteps_span_the_schedule():
    steps = sampling_timesteps(1000, 50)
    assert len(steps) == len(set(steps)) == 50
    assert steps[0] == 999 and steps[-1] == 0 and steps == sorted(steps, reverse=True)
    with pytest.raises(ValueError):
        sampling_timesteps(1000, 0)


@pytest.mark.parametrize(("prediction_type", "eta"), [("epsilon", 0.0), ("v_prediction", 0.0), ("epsilon", 1.0)])
def test_ddim_with_an_exact_denoiser_recovers_the_data(prediction_type, eta):
    """A denoiser that knows x0 predicts exactly; DDIM must then land on x0 from any noise."""
    schedule = NoiseSchedule()
    x0 = torch.randn(2, 4, 3, 8, 8)
    calls = []

    def oracle(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        calls.append(int(timesteps[0]))
        signal, sigma = schedule._coefficients(timesteps, x.ndim)
        eps = (x - signal * x0) / sigma
        return eps if prediction_type == "epsilon" else signal * eps - sigma * x0

    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    result = ddim_sample(
        oracle, noise, schedule, prediction_type=prediction_type, eta=eta, generator=torch.Generator().manual_seed(1)
    )
    assert len(calls) == 50 and calls[0] == 999
    assert torch.allclose(result, x0, atol=1e-3)


def test_model_sampling_shapes_guidance_and_determinism(tiny_model, clip):
    model = tiny_model(control=True)
    data = clip(batch=1, frames=2, size=(8, 8))

    def sample(**kwargs) -> torch.Tensor:
        return model.sample(
            data["reference"], data["driving"], num_steps=3, generator=torch.Generator().manual_seed(0), **kwargs
        )

    plain = sample(reference_guidance=1.0, motion_guidance=1.0)
    assert plain.shape == data["latents"].shape and torch.isfinite(plain).all()
    assert torch.equal(plain, sample(reference_guidance=1.0, motion_guidance=1.0))
    guided = sample(reference_guidance=2.0, motion_guidance=1.5)
    assert not torch.allclose(guided, plain, atol=1e-4)


def test_guidance_composes_reference_then_motion(tiny_model, clip):
    """One DDIM step (t = 999 -> clean) equals x0 from eps(none) + r (eps(ref) - eps(none)) +
    m (eps(ref, motion) - eps(ref)), computed here from three explicit forward passes."""
    model = tiny_model(control=True)
    data = clip(batch=2, frames=2, size=(8, 8))
    reference, driving, r, m = data["reference"], data["driving"], 2.5, 1.5
    result = model.sample(
        reference,
        driving,
        num_steps=1,
        reference_guidance=r,
        motion_guidance=m,
        generator=torch.Generator().manual_seed(0),
    )
    noise = torch.randn(data["latents"].shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 999)
    with torch.no_grad():
        motion = model.encode_motion(driving)
        full, ref_only, none = model(noise, t, reference, motion), model(noise, t, reference), model(noise, t)
    eps = none + r * (ref_only - none) + m * (full - ref_only)
    expected, _ = model.schedule.split_prediction(eps, noise, t, "epsilon")
    assert torch.allclose(result, expected, atol=1e-3, rtol=1e-4)
