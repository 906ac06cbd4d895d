"""FVD features: I3D (Kinetics-400) over 16-frame windows, the VideoGPT/TATS variant cd-fvd ships.

Pinned (eval.md §6.4): the network is `cdfvd.third_party.i3d.pytorch_i3d.InceptionI3d(400)` with
`i3d_pretrained_400.pt`; each window of `clip_length` consecutive frames is resized to 224x224
(bilinear, cd-fvd's `preprocess_i3d`) and scaled to [-1, 1]; the feature is the 400-d logit vector
averaged over time. With ~100 test clips the covariance of 400-d features is rank-deficient, so each
video contributes `windows_per_video` windows drawn with a seed, the FVD is computed for several seeds,
and the table reports mean ± std over them (eval.md §3). Real and generated videos use the same windows.
The StyleGAN-V TorchScript I3D is not supported: a TorchScript file is code, not weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from cdfvd.third_party.i3d.pytorch_i3d import InceptionI3d
from cdfvd.third_party.i3d.utils import preprocess_i3d

from eval.compute import CPU, batches, measuring
from eval.weights import LoadedWeights, load_state_dict
from model.precision import Precision

BACKEND = "cd-fvd InceptionI3d-400 (VideoGPT/TATS i3d_pretrained_400.pt), 224x224 bilinear, [-1,1], logits"


def window_starts(item: str, length: int, clip_length: int, count: int, seed: int) -> list[int]:
    """`count` distinct window starts in a video of `length` frames, drawn from (seed, item), sorted.

    Fewer when the video has fewer positions; none when it is shorter than one window.
    """
    positions = length - clip_length + 1
    if positions <= 0:
        return []
    key = int.from_bytes(hashlib.sha256(f"fvd:{seed}:{item}".encode()).digest()[:8], "little")
    chosen = np.random.default_rng(key).choice(positions, size=min(count, positions), replace=False)
    return sorted(int(start) for start in chosen)


class I3DFeatures:
    """Features of `batch` windows at a time. cd-fvd's preprocessing (kept as the pinned one) holds a batch
    in float32 at the evaluation size before resizing it to 224 px: 4 windows of 16 frames at 512 px are
    ~0.4 GB, so the default stays small."""

    def __init__(self, network: InceptionI3d, weights: LoadedWeights, precision: Precision = CPU, batch: int = 4):
        self.network = network.eval().to(precision.device)
        self.weights = weights
        self.precision = precision
        self.batch = batch

    @classmethod
    def load(
        cls, folder: str | Path | None = None, precision: Precision = CPU, *, allow_unpinned: bool = False
    ) -> I3DFeatures:
        state, record = load_state_dict("i3d", folder, allow_unpinned=allow_unpinned)
        network = InceptionI3d(400, in_channels=3)
        network.load_state_dict(state)
        return cls(network, record, precision)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """(N, 400) float64 features of (N, T, H, W, 3) uint8 windows."""
        return self.features(len(windows), lambda part: windows[part])

    def windows(self, frames: np.ndarray, starts: list[int], length: int) -> np.ndarray:
        """(len(starts), 400) float64 features of the windows `frames[s : s + length]`, stacked one batch at
        a time so that a video's windows are never all copied at once."""
        return self.features(len(starts), lambda part: np.stack([frames[s : s + length] for s in starts[part]]))

    def features(self, count: int, batch_of: Callable[[slice], np.ndarray]) -> np.ndarray:
        """(count, 400) features of the windows `batch_of(part)` gives for each batch's slice."""
        out = []
        with measuring(self.precision):
            for part in batches(count, self.batch):
                clips = preprocess_i3d(batch_of(part)).to(self.precision.device)
                out.append(self.network(clips).double().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 400))
