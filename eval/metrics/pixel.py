"""Pixel metrics against the ground truth, per frame: L1, PSNR, SSIM, and the legacy uint8 PSNR by name only.

Frames are uint8 (T, H, W, 3) at the evaluation crop; they are compared as floats in [0, 1]. PSNR and
SSIM are torchmetrics' functions with the range pinned to 1 (torchmetrics would infer it from the data
otherwise, eval.md §6.2); SSIM is Wang et al.'s (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03), the
mean over the three channels of each channel's SSIM map, valid region only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

MSE_FLOOR = 1e-10  # identical frames score 100 dB instead of infinity, so a clip mean stays finite
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
PSNR_CAP = 10 * float(np.log10(1 / MSE_FLOOR))
BATCH = 16  # frames per float64 copy


def as_float(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> [T, 3, H, W] float64 in [0, 1] (float64: PSNR of near-identical frames)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).double() / 255.0


def in_batches(
    per_frame: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], generated: np.ndarray, truth: np.ndarray
) -> np.ndarray:
    """`per_frame` over `BATCH` frames at a time: float copies of a whole 300-frame clip at 512 px would
    take several GB, and the values are per frame anyway."""
    return np.concatenate(
        [
            per_frame(as_float(generated[start : start + BATCH]), as_float(truth[start : start + BATCH])).numpy()
            for start in range(0, len(generated), BATCH)
        ]
    )


def l1(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(T,) mean absolute error per frame, [0, 1] scale."""
    return in_batches(lambda a, b: (a - b).abs().mean(dim=(1, 2, 3)), generated, truth)


def psnr(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(T,) PSNR per frame in dB, 10 log10(1 / MSE) on [0, 1] floats (cast before subtracting, §6.1)."""
    values = in_batches(
        lambda a, b: peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3)), generated, truth
    )
    return np.minimum(values, PSNR_CAP)


def psnr_legacy_uint8(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(T,) the DisCo-lineage PSNR, reproduced on purpose: uint8 arrays subtracted and squared in uint8,
    so differences wrap modulo 256 (eval.md §6.1). Only for comparing with tables that used that code;
    never the PSNR column."""
    wrapped = (generated.astype(np.uint8) - truth.astype(np.uint8)) ** 2  # uint8 arithmetic wraps: the bug kept
    mse = wrapped.reshape(len(wrapped), -1).mean(axis=1)
    return np.minimum(20 * np.log10(255.0 / np.sqrt(np.maximum(mse, 255.0**2 * MSE_FLOOR))), PSNR_CAP)


def ssim(generated: np.ndarray, truth: np.ndarray, batch: int = 16) -> np.ndarray:
    """(T,) SSIM per frame (see the module docstring).

    torchmetrics pads by reflection and averages the map over the whole frame; Wang et al.'s reference
    (and scikit-image) average only where the window fits inside the frame. The full map is taken and
    its border of half a window cut, so the value is the reference one.
    """
    values = []
    for start in range(0, len(generated), batch):
        _, full = structural_similarity_index_measure(
            as_float(generated[start : start + batch]).float(),
            as_float(truth[start : start + batch]).float(),
            gaussian_kernel=True,
            sigma=SSIM_SIGMA,
            kernel_size=SSIM_WINDOW,
            data_range=1.0,
            k1=0.01,
            k2=0.03,
            reduction="none",
            return_full_image=True,
        )
        half = SSIM_WINDOW // 2
        values.append(full[:, :, half:-half, half:-half].mean(dim=(1, 2, 3)))
    return torch.cat(values).double().numpy()
