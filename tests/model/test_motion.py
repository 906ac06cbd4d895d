"""Motion encoder, its training augmentation, and the rendered-landmark input of the ablation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from model.motion import MotionAugmentation, MotionEncoder, augment_motion_input, render_landmarks
from model.realportrait import RealPortrait


def test_encoder_maps_frames_to_latent_resolution():
    encoder = MotionEncoder(channels=(8, 16, 16, 16), out_channels=12)
    features = encoder(torch.rand(2, 3, 5, 64, 96) * 2 - 1)
    assert features.shape == (2, 12, 5, 8, 12)
    with pytest.raises(ValueError, match="motion input"):
        MotionEncoder(input_kind="3dmm")  # type: ignore[arg-type]


def smooth_clip(batch: int = 2, frames: int = 3, size: int = 64) -> torch.Tensor:
    """A colourful, smooth test clip whose frames differ (a moving blob on a gradient)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    clip = torch.zeros(batch, 3, frames, size, size)
    for f in range(frames):
        blob = torch.exp(-((xs - 0.2 * f) ** 2 + ys**2) / 0.1)
        clip[:, 0, f], clip[:, 1, f], clip[:, 2, f] = xs * 0.8, ys * 0.8, blob * 1.6 - 0.8
    return clip


def test_augmentation_is_per_clip_and_keeps_the_motion_between_frames():
    clip = smooth_clip()
    static = clip[:, :, :1].expand(-1, -1, 3, -1, -1).clone()  # no motion: three identical frames
    generator = torch.Generator().manual_seed(0)
    augmented_static = augment_motion_input(static, MotionAugmentation(), generator=generator)
    assert torch.allclose(augmented_static[:, :, 0], augmented_static[:, :, 2], atol=1e-6)

    augmented = augment_motion_input(clip, MotionAugmentation(), generator=torch.Generator().manual_seed(0))
    assert augmented.shape == clip.shape and augmented.abs().max() <= 1
    assert (augmented - clip).abs().mean() > 0.02  # appearance/geometry changed
    assert not torch.allclose(augmented[0], augmented[1], atol=1e-3)  # each clip draws its own
    again = augment_motion_input(clip, MotionAugmentation(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(augmented, again)


def test_geometric_warp_alone_moves_pixels_but_not_colours():
    clip = smooth_clip(batch=1)
    geometry_only = MotionAugmentation(elastic_magnitude=0.05, aspect_jitter=0.1)
    warped = augment_motion_input(clip, geometry_only, photometric=False, generator=torch.Generator().manual_seed(2))
    assert (warped - clip).abs().max() > 0.05
    assert warped.amin() >= clip.amin() - 1e-4 and warped.amax() <= clip.amax() + 1e-4  # interpolation only


def test_grayscale_draw_removes_colour():
    clip = smooth_clip(batch=4)
    always_gray = MotionAugmentation(grayscale_probability=1.0, blur_probability=0.0)
    augmented = augment_motion_input(clip, always_gray, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(augmented[:, 0], augmented[:, 1], atol=1e-5)
    assert torch.allclose(augmented[:, 1], augmented[:, 2], atol=1e-5)


def test_channel_shuffle_reorders_a_clips_colours_and_nothing_else():
    clip = smooth_clip(batch=16)
    still = MotionAugmentation(
        brightness=0, contrast=0, saturation=0, hue=0, grayscale_probability=0, blur_probability=0,
        aspect_jitter=0, elastic_magnitude=0, channel_shuffle_probability=1.0,
    )  # fmt: skip
    shuffled = augment_motion_input(clip, still, generator=torch.Generator().manual_seed(0))
    orders = set()
    for original, augmented in zip(clip, shuffled, strict=True):
        # every output channel is one input channel, over all frames: one order per clip
        order = tuple(int((original - channel).abs().flatten(1).amax(1).argmin()) for channel in augmented)
        assert torch.allclose(augmented, original[list(order)], atol=1e-5), order
        orders.add(order)
    assert (0, 1, 2) not in orders and len(orders) > 1  # always another order, not always the same one
    kept = augment_motion_input(clip, replace(still, channel_shuffle_probability=0.0), generator=None)
    assert torch.allclose(kept, clip, atol=1e-5)


def test_a_config_sets_the_motion_augmentation_and_an_unknown_range_is_named():
    model = RealPortrait.from_preset("tiny", motion_augmentation={"channel_shuffle_probability": 0.5})
    assert model.motion_encoder.augmentation.channel_shuffle_probability == 0.5
    assert model.motion_encoder.augmentation.grayscale_probability == MotionAugmentation().grayscale_probability
    with pytest.raises(ValueError, match=r"unknown range\(s\) \['hue_shift'\]"):
        RealPortrait.from_preset("tiny", motion_augmentation={"hue_shift": 0.1})


def test_rendered_landmarks_feed_the_landmark_encoder():
    points = torch.tensor([[[[10.0, 20.0], [40.0, 5.0], [-3.0, 8.0]]]]).expand(2, 3, -1, -1)
    heat = render_landmarks(points, (32, 48), sigma=1.5)
    assert heat.shape == (2, 1, 3, 32, 48)
    assert heat[0, 0, 0, 20, 10] == pytest.approx(1.0) and heat[0, 0, 0, 5, 40] == pytest.approx(1.0)
    assert heat[0, 0, 0, 8, 0] == pytest.approx(-1.0, abs=1e-3)  # off-frame point is dropped
    assert heat.amin() == pytest.approx(-1.0)
    encoder = MotionEncoder(input_kind="landmarks", channels=(4, 8, 8, 8), out_channels=6)
    assert encoder(heat).shape == (2, 6, 3, 4, 6)
    augmented = encoder.augment(heat, torch.Generator().manual_seed(0))
    assert augmented.shape == heat.shape and not torch.equal(augmented, heat)
