"""LPIPS (Zhang et al. 2018, AlexNet, v0.1) and tLP, its temporal form (TecoGAN).

The `lpips` package is the reference implementation and ships the v0.1 linear heads; the AlexNet trunk
(torchvision's ImageNet weights) is read from the weights folder with `weights_only=True`, since the
package would otherwise download it through torchvision. Frames go in at the evaluation crop, scaled
to [-1, 1] as the package expects.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import lpips
import numpy as np
import torch

from eval.compute import CPU, batches, measuring
from eval.weights import LoadedWeights, load_state_dict
from model.precision import Precision

BACKEND = "lpips, net=alex, v0.1 linear heads (shipped), trunk alexnet-owt-7be5be79.pth"


def trunk_state(torchvision_alexnet: dict[str, torch.Tensor], network: lpips.LPIPS) -> dict[str, torch.Tensor]:
    """torchvision AlexNet keys (`features.<i>.weight`) -> the lpips trunk's (`slice<k>.<i>.weight`).

    lpips keeps torchvision's layer indices inside its slices, so each layer is found by its index.
    """
    state = {}
    for name in network.net.state_dict():
        _, index, kind = name.split(".")
        source = f"features.{index}.{kind}"
        if source not in torchvision_alexnet:
            raise ValueError(f"the AlexNet state dict lacks {source} (is it torchvision's alexnet-owt file?)")
        state[name] = torchvision_alexnet[source]
    return state


@dataclass(frozen=True)
class Measured:
    """What one pass over a video gives: LPIPS to a reference frame by frame (None without one) and
    the steps between its consecutive frames."""

    distances: np.ndarray | None
    steps: np.ndarray


class Lpips:
    """LPIPS per frame pair; `load` reads the trunk from the weights folder. `batch` pairs go through the
    network at once: AlexNet keeps the full evaluation size, so the batch bounds the activations' memory."""

    def __init__(self, network: lpips.LPIPS, weights: LoadedWeights, precision: Precision = CPU, batch: int = 16):
        self.network = network.eval().to(precision.device)
        self.weights = weights
        self.precision = precision
        self.batch = batch

    @classmethod
    def load(
        cls, folder: str | Path | None = None, precision: Precision = CPU, *, allow_unpinned: bool = False
    ) -> Lpips:
        state, record = load_state_dict("alexnet", folder, allow_unpinned=allow_unpinned)
        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
            warnings.simplefilter("ignore", UserWarning)
            network = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
        network.net.load_state_dict(trunk_state(state, network))
        return cls(network, record, precision)

    def features(self, frames: np.ndarray) -> list[torch.Tensor]:
        """Each layer's unit-normalised activations of uint8 frames (N, H, W, 3), the package's own steps.
        Kept apart from the distance so that a frame's features serve every pair it is in: tLP's
        consecutive pairs and LPIPS against the ground truth share the generated frames' pass."""
        outputs = self.network.net(self.network.scaling_layer(self.scaled(frames)))
        return [lpips.normalize_tensor(output) for output in outputs]

    def between(self, a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
        """(N,) LPIPS between two sets of `features`: each layer's linear head on the squared difference,
        averaged over space, summed over layers (as `lpips.LPIPS.forward`)."""
        layers = [head((fa - fb) ** 2).mean(dim=(2, 3)) for head, fa, fb in zip(self.network.lins, a, b, strict=True)]
        return torch.stack(layers).sum(dim=0).flatten()

    def measure(self, frames: np.ndarray, reference: np.ndarray | None = None) -> Measured:
        """LPIPS(frames[t], reference[t]) (when a reference is given) and the steps LPIPS(frames[t],
        frames[t - 1]), with one network pass per frame: batches overlap by the previous batch's last
        frame's features, so a whole clip never sits in memory."""
        distances, steps = [], []
        previous: list[torch.Tensor] | None = None
        with measuring(self.precision):
            for part in batches(len(frames), self.batch):
                current = self.features(frames[part])
                if reference is not None:
                    distances.append(self.between(current, self.features(reference[part])).float().cpu())
                joined = current if previous is None else [torch.cat(p) for p in zip(previous, current, strict=True)]
                if len(joined[0]) > 1:
                    steps.append(self.between([f[1:] for f in joined], [f[:-1] for f in joined]).float().cpu())
                previous = [f[-1:] for f in current]
        return Measured(concatenated(distances) if reference is not None else None, concatenated(steps))

    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(T,) LPIPS between uint8 frames a[t] and b[t], (T, H, W, 3) each."""
        measured = self.measure(a, b)
        assert measured.distances is not None
        return measured.distances

    def scaled(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> (N, 3, H, W) in [-1, 1] on the device (uint8 crosses to it: 4x less to copy)."""
        pixels = torch.from_numpy(np.ascontiguousarray(frames)).to(self.precision.device)
        return pixels.permute(0, 3, 1, 2).float() / 127.5 - 1

    def steps(self, frames: np.ndarray) -> np.ndarray:
        """(T - 1,) LPIPS(f_t, f_t-1): how much a video changes from frame to frame (tLP's terms)."""
        return self.measure(frames).steps


def concatenated(values: list[torch.Tensor]) -> np.ndarray:
    return torch.cat(values).numpy() if values else np.zeros(0, np.float32)


def tlp(steps: np.ndarray, reference_steps: np.ndarray) -> np.ndarray:
    """(T - 1,) |LPIPS(g_t, g_t-1) - LPIPS(r_t, r_t-1)|: temporal change unlike the reference's, given both
    videos' `Lpips.steps` (the reference's computed once per clip for every method: `eval.ground_truth`)."""
    return np.abs(steps - reference_steps)
