"""Exponential moving average of the trained weights: the model a stage exports and validates.

The average is a whole fp32 copy of the model made before DeepSpeed wraps it (so bf16 casting and
ZeRO-3 partitioning never touch it), on every rank: any rank can validate or export it without a
collective. Only the trainable parameters move; frozen ones keep their starting values, so the copy
is a complete model for `save_pretrained`.

It is fed from the optimizer's fp32 master weights, not from the bf16 working weights: an update of
lr x gradient is usually far below a bf16 weight's rounding step (2^-8 relative), so the working
weights move in coarse jumps while the master weights carry every step; an average of the rounded
copy would inherit that rounding. Under ZeRO-2 and ZeRO-3 the master weights are partitioned over
the ranks, so reading them whole is a collective: every rank updates at the same steps.

The decay warms up so that the average of the first steps is not stuck at the starting weights, and
it reaches the configured decay within the run: the averaging horizon 1 / (1 - decay) grows linearly
from 1 update (decay 0: the average is the latest weights) to the target's horizon over the first
`warmup_updates` updates, then holds the target.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from deepspeed.utils import safe_get_full_fp32_param
from torch import nn

from model.realportrait import RealPortrait


def master_weight(parameter: nn.Parameter) -> torch.Tensor:
    """The whole fp32 master copy of a parameter that a DeepSpeed optimizer trains (a collective under ZeRO);
    an fp32 parameter that no such optimizer holds (ZeRO stage 0 in fp32) is its own master copy."""
    weight = safe_get_full_fp32_param(parameter)
    if weight is not None:
        return weight
    if parameter.dtype != torch.float32:
        raise RuntimeError(
            f"the EMA reads the fp32 master weights, but this {parameter.dtype} parameter has none: "
            "it is not trained by a DeepSpeed ZeRO or bf16 optimizer"
        )
    return parameter.detach()


def warmed_up_decay(target: float, updates: int, warmup_updates: int) -> float:
    """Decay after `updates` updates: the horizon 1/(1-d) rises linearly from 1 to 1/(1-target) at `warmup_updates`."""
    if updates >= warmup_updates:
        return target
    horizon = 1 + (1 / (1 - target) - 1) * updates / warmup_updates
    return min(target, 1 - 1 / horizon)


class EMA:
    def __init__(
        self, model: RealPortrait, names: Sequence[str], decay: float, device: torch.device, warmup_updates: int = 0
    ) -> None:
        self.model: RealPortrait = copy.deepcopy(model).float().eval().requires_grad_(False).to(device)
        self.names = list(names)
        self.decay = decay
        self.warmup_updates = warmup_updates
        self.updates = 0
        parameters = dict(self.model.named_parameters())
        self._targets = [parameters[name] for name in self.names]

    def current_decay(self) -> float:
        return warmed_up_decay(self.decay, self.updates, self.warmup_updates)

    @torch.no_grad()
    def update(self, live: nn.Module) -> None:
        """Moves the average towards `live` (the trained model, same parameter names), each weight read from
        its fp32 master copy (under ZeRO a collective: every rank calls this at the same steps)."""
        parameters = dict(live.named_parameters())
        weight = 1 - self.current_decay()
        for target, name in zip(self._targets, self.names, strict=True):
            target.lerp_(master_weight(parameters[name]).to(target.device, torch.float32), weight)
        self.updates += 1
