"""Weight-free metrics against scikit-image on real images, and the Fréchet distance against scipy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import skimage.metrics
from scipy import linalg

from eval.metrics import pixel
from eval.metrics.frechet import Moments, frechet, frechet_between, frechet_distance, gaussian


def degraded_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """Real photos (scikit-image's astronaut and coffee) against blurred, noisy and shifted versions."""
    rng = np.random.default_rng(0)
    pairs = []
    for image in (skimage.data.astronaut(), skimage.data.coffee()[:, :512]):
        noisy = np.clip(image.astype(int) + rng.normal(0, 15, image.shape), 0, 255).astype(np.uint8)
        pairs += [(cv2.GaussianBlur(image, (7, 7), 2.0), image), (noisy, image), (np.roll(image, 3, axis=1), image)]
    return pairs


@pytest.mark.parametrize("index", range(6))
def test_l1_psnr_ssim_agree_with_scikit_image(index: int) -> None:
    generated, truth = degraded_pairs()[index]
    a, b = generated / 255.0, truth / 255.0
    assert pixel.l1(generated[None], truth[None])[0] == pytest.approx(np.abs(a - b).mean(), abs=1e-12)
    expected_psnr = skimage.metrics.peak_signal_noise_ratio(b, a, data_range=1.0)
    assert pixel.psnr(generated[None], truth[None])[0] == pytest.approx(expected_psnr, abs=1e-4)
    expected_ssim = skimage.metrics.structural_similarity(
        a, b, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert pixel.ssim(generated[None], truth[None])[0] == pytest.approx(expected_ssim, abs=1e-4)


def test_psnr_casts_before_subtracting_and_the_legacy_variant_keeps_the_wraparound() -> None:
    truth = np.full((1, 8, 8, 3), 250, np.uint8)
    generated = np.full((1, 8, 8, 3), 3, np.uint8)  # a difference of 247 levels
    assert pixel.psnr(generated, truth)[0] == pytest.approx(20 * np.log10(255 / 247), abs=1e-6)
    # in uint8, 3 - 250 wraps to 9: the legacy code sees a 9-level error, 29 dB instead of 0.28 dB
    assert pixel.psnr_legacy_uint8(generated, truth)[0] == pytest.approx(20 * np.log10(255 / 9), abs=1e-6)
    assert pixel.psnr(truth, truth)[0] == pixel.PSNR_CAP


def test_frechet_distance_agrees_with_a_direct_scipy_computation() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16))
    b = rng.normal(0.3, 1.2, size=(250, 16)) @ rng.normal(size=(16, 16))
    mu_a, cov_a = a.mean(0), np.cov(a, rowvar=False)
    mu_b, cov_b = b.mean(0), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    direct = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))
    assert frechet_between(a, b) == pytest.approx(direct, rel=1e-6)
    assert frechet_between(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_on_rank_deficient_covariances_matches_scipy() -> None:
    """Fewer samples than dimensions, as 100 clips against 400 I3D features give."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(20, 64)), rng.normal(0.5, 1.0, size=(20, 64))
    (mu_a, cov_a), (mu_b, cov_b) = gaussian(a), gaussian(b)
    root = linalg.sqrtm(cov_a @ cov_b).real
    direct = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))
    assert frechet_distance(mu_a, cov_a, mu_b, cov_b) == pytest.approx(direct, rel=1e-4)


def test_the_low_rank_route_matches_scipy_when_a_set_is_smaller_than_its_dimension() -> None:
    """The sample's and a 100-clip split's case: fewer vectors than dimensions on one side or both, added
    in blocks as runs stream them. The small side's n x n route gives what `sqrtm` of the full product
    does, and the same as torch-fidelity's route."""
    rng = np.random.default_rng(3)
    mixing = rng.normal(size=(64, 64))
    small, other_small = rng.normal(size=(20, 64)) @ mixing, rng.normal(0.4, 1.1, size=(30, 64)) @ mixing
    large = rng.normal(0.2, 0.9, size=(200, 64)) @ mixing
    for a, b in ((small, other_small), (small, large), (large, small)):
        (mu_a, cov_a), (mu_b, cov_b) = gaussian(a), gaussian(b)
        root = linalg.sqrtm(cov_a @ cov_b).real
        direct = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))
        streamed_a, streamed_b = Moments(), Moments()
        for block in np.array_split(a, 3):
            streamed_a.add(block)
        for block in np.array_split(b, 4):
            streamed_b.add(block)
        assert streamed_a.small() == (len(a) < 64) and streamed_b.small() == (len(b) < 64)
        assert frechet(streamed_a, streamed_b) == pytest.approx(direct, rel=1e-6)
        assert frechet_distance(mu_a, cov_a, mu_b, cov_b) == pytest.approx(direct, rel=1e-4)
    assert frechet_between(small, small) == pytest.approx(0.0, abs=1e-6)
    assert frechet_between(small, small + 1.0) == pytest.approx(64.0, rel=1e-6)  # a shift of 1 in 64 dimensions
