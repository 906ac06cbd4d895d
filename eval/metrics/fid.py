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

from eval.weights import LoadedWeights, validated_state_dict_bytes

BACKEND = "torch-fidelity InceptionV3 'inception-v3-compat' (as torchmetrics FID), pool3 2048-d, TF1 bilinear 299"


class InceptionFeatures:
    def __init__(self, network: FeatureExtractorInceptionV3, weights: LoadedWeights, batch: int = 16):
        self.network = network
        self.weights = weights
        self.batch = batch

    @classmethod
    def load(cls, folder: str | Path | None = None, *, allow_unpinned: bool = False) -> InceptionFeatures:
        data, record = validated_state_dict_bytes("inception", folder, allow_unpinned=allow_unpinned)
        network = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=data)
        return cls(network, record)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """(N, 2048) float64 features of (N, H, W, 3) uint8 frames."""
        out = []
        for start in range(0, len(frames), self.batch):
            batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + self.batch])).permute(0, 3, 1, 2)
            out.append(self.network(batch)[0].double())
        return torch.cat(out).numpy() if out else np.zeros((0, 2048))
