"""FID features: torch-fidelity's InceptionV3 ('inception-v3-compat'), the one backend named in every table.

It is the network torchmetrics' FID uses: the TF 2015-12-05 Inception graph ported to PyTorch, uint8
frames resized to 299 with TF1-style bilinear interpolation inside the network, 2048-d pool3 features.
pytorch-fid and clean-fid resize differently and their numbers are not interchangeable (eval.md §6.3).
torch-fidelity loads the weight file with `torch.load(..., weights_only=False)`; it receives the bytes
already proven to be a plain state dict (`eval.weights.validated_state_dict_bytes`), from memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

from eval.compute import CPU, batches, measuring
from eval.weights import LoadedWeights, validated_state_dict_bytes
from model.precision import Precision

BACKEND = "torch-fidelity InceptionV3 'inception-v3-compat' (as torchmetrics FID), pool3 2048-d, TF1 bilinear 299"


class InceptionFeatures:
    """Features of `batch` frames at a time (the network resizes them to 299 px, so 16 cost the same at any
    evaluation size)."""

    def __init__(
        self, network: FeatureExtractorInceptionV3, weights: LoadedWeights, precision: Precision = CPU, batch: int = 16
    ):
        self.network = network.to(precision.device)
        self.weights = weights
        self.precision = precision
        self.batch = batch

    @classmethod
    def load(
        cls, folder: str | Path | None = None, precision: Precision = CPU, *, allow_unpinned: bool = False
    ) -> InceptionFeatures:
        data, record = validated_state_dict_bytes("inception", folder, allow_unpinned=allow_unpinned)
        network = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=data)
        return cls(network, record, precision)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, 2048) float64 features of (N, H, W, 3) uint8 frames."""
        out = []
        with measuring(self.precision):
            for part in batches(len(frames), self.batch):
                pixels = torch.from_numpy(np.ascontiguousarray(frames[part])).to(self.precision.device)
                out.append(self.network(pixels.permute(0, 3, 1, 2))[0].double().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, 2048))
