"""Exponential moving average of the trained weights: the model a stage exports and validates.

The average is a whole fp32 copy of the model made before DeepSpeed wraps it (so bf16 casting and
ZeRO-3 partitioning never touch it), on every rank: any rank can validate or export it without a
collective. Only the trainable parameters move; frozen ones keep their starting values, so the copy
is a complete model for `save_pretrained`. Under ZeRO-3 the live parameters are gathered for the
update (a no-op for ZeRO-2, whose parameters are whole on every rank).

The decay warms up as min(decay, (1 + t) / (10 + t)) after t updates, so the average of a short run
(or the first thousand steps of a long one) is not stuck at the initial weights.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import deepspeed
import torch
from torch import nn

from model.realportrait import RealPortrait


class EMA:
    def __init__(self, model: RealPortrait, names: Sequence[str], decay: float, device: torch.device) -> None:
        self.model: RealPortrait = copy.deepcopy(model).float().eval().requires_grad_(False).to(device)
        self.names = list(names)
        self.decay = decay
        self.updates = 0
        parameters = dict(self.model.named_parameters())
        self._targets = [parameters[name] for name in self.names]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, live: nn.Module) -> None:
        """Moves the average towards `live` (the trained model, same parameter names)."""
        parameters = dict(live.named_parameters())
        sources = [parameters[name] for name in self.names]
        with deepspeed.zero.GatheredParameters(sources):
            weight = 1 - self.current_decay()
            for target, source in zip(self._targets, sources, strict=True):
                target.lerp_(source.detach().float(), weight)
        self.updates += 1
