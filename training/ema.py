"""Exponential moving average of the trained weights: the model a stage exports and validates.

The average lives in a whole fp32 copy of the model made before DeepSpeed wraps it (so bf16 casting and
ZeRO-3 partitioning never touch it). Only the trainable parameters move; frozen ones keep their starting
values, so the copy is a complete model for `save_pretrained`.

It is fed from the optimizer's fp32 master weights, not from the bf16 working weights: an update of
lr x gradient is usually far below a bf16 weight's rounding step (2^-8 relative), so the working
weights move in coarse jumps while the master weights carry every step; an average of the rounded
copy would inherit that rounding.

Under ZeRO (and DeepSpeed's bf16 optimizer) each rank holds the master weights of its own partition
only. Reading them whole every step would be a collective per parameter (a zero-padded all-reduce under
ZeRO-1/2, an all-gather under ZeRO-3: gigabytes per step at the paper's size), so each rank averages
only the elements it owns, in place in its copy, and the rest of its copy goes stale. `gathered()`
assembles the whole average (one all-reduce per bucket of parameters) when a checkpoint, an export or
a validation needs it; every rank calls it at the same steps.

The decay warms up so that the average of the first steps is not stuck at the starting weights, and
it reaches the configured decay within the run: the averaging horizon 1 / (1 - decay) grows linearly
from 1 update (decay 0: the average is the latest weights) to the target's horizon over the first
`warmup_updates` updates, then holds the target.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from model.realportrait import RealPortrait

# Elements (fp32) per all-reduce when the average is gathered: 200 MB, DeepSpeed's default bucket size.
GATHER_BUCKET_ELEMENTS = 50_000_000


@dataclass(frozen=True)
class Slice:
    """The elements [start, start + numel) of a flattened parameter whose fp32 master copy this rank holds."""

    name: str
    start: int
    numel: int
    master: torch.Tensor  # 1-D view into the optimizer's fp32 partition (or the parameter itself)


@dataclass(frozen=True)
class Ownership:
    """Which elements of each trained parameter this rank averages, and how the rest reaches it."""

    slices: list[Slice]
    partitioned: list[str]  # parameters spread over `group`'s ranks: gathered by an all-reduce
    group: Any  # the data-parallel process group those partitions are spread over (None: the world)


def _zero3_slice(name: str, parameter: nn.Parameter) -> Slice | None:
    """A ZeRO-3 parameter is cut into equal partitions in rank order (the last one padded); the optimizer's flat
    fp32 group holds this rank's partition at the parameter's recorded offset. Read directly rather than through
    `get_local_fp32_param`, which synchronises a CUDA stream with the host on every call."""
    optimizer = parameter._z3_optimizer
    group_index, offset, partition_numel = optimizer.grad_position[optimizer.get_param_id(parameter)]
    if optimizer._swappable_optimizer_subgroup(group_index):
        raise RuntimeError(f"the EMA cannot read {name}: its fp32 master weights are swapped out to NVMe")
    start = optimizer._get_param_partition_rank(parameter) * partition_numel
    numel = min(partition_numel, parameter.ds_numel - start)
    if numel <= 0:
        return None
    return Slice(name, start, numel, optimizer.fp32_partitioned_groups_flat[group_index].narrow(0, offset, numel))


def own_slices(names: Sequence[str], live: nn.Module) -> Ownership:
    """Where the fp32 master copy of each trained parameter of `live` lives on this rank. ZeRO-1/2 and DeepSpeed's
    bf16 optimizer map each parameter to a fragment of their flat fp32 partition (`_hp_mapping`, None when another
    rank holds all of it); ZeRO-3 partitions every parameter; an fp32 parameter that no such optimizer holds
    (ZeRO stage 0 in fp32) is its own master copy, on every rank."""
    parameters = dict(live.named_parameters())
    slices: list[Slice] = []
    partitioned: list[str] = []
    groups: list[Any] = []
    for name in names:
        parameter = parameters[name]
        if hasattr(parameter, "ds_id"):
            owned = _zero3_slice(name, parameter)
            group = parameter._z3_optimizer._get_param_partition_group(parameter)
        elif hasattr(parameter, "_hp_mapping"):
            mapping = parameter._hp_mapping
            owned = None
            if mapping is not None:
                address = mapping.lp_fragment_address
                owned = Slice(name, address.start, address.numel, mapping.hp_fragment)
            group = parameter._dp_group
        elif parameter.dtype == torch.float32:
            slices.append(Slice(name, 0, parameter.numel(), parameter.detach().view(-1)))
            continue
        else:
            raise RuntimeError(
                f"the EMA reads the fp32 master weights, but {name} ({parameter.dtype}) has none: "
                "it is not trained by a DeepSpeed ZeRO or bf16 optimizer"
            )
        partitioned.append(name)
        groups.append(group)
        if owned is not None:
            slices.append(owned)
    if any(group is not groups[0] for group in groups):
        raise RuntimeError("the EMA expects every trained parameter partitioned over one data-parallel group")
    return Ownership(slices, partitioned, groups[0] if groups else None)


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
        self._model: RealPortrait = copy.deepcopy(model).float().eval().requires_grad_(False).to(device)
        self.names = list(names)
        self.decay = decay
        self.warmup_updates = warmup_updates
        self.updates = 0
        self._ownership: Ownership | None = None
        self._averages: list[torch.Tensor] = []  # views of the owned elements in `_model`, one per slice
        self._stale = False  # elements other ranks own have moved since the last gather

    def current_decay(self) -> float:
        return warmed_up_decay(self.decay, self.updates, self.warmup_updates)

    def _bind(self, live: nn.Module) -> Ownership:
        """Found at the first update, after DeepSpeed has built (and, on resume, loaded) its fp32 partitions."""
        ownership = own_slices(self.names, live)
        targets = dict(self._model.named_parameters())
        for piece in ownership.slices:
            if targets[piece.name].numel() < piece.start + piece.numel:
                raise RuntimeError(f"the EMA's {piece.name} has fewer elements than the trained parameter")
        self._averages = [targets[s.name].view(-1).narrow(0, s.start, s.numel) for s in ownership.slices]
        self._ownership = ownership
        return ownership

    @torch.no_grad()
    def update(self, live: nn.Module) -> None:
        """Moves the owned elements of the average towards `live`'s fp32 master weights (same parameter names).
        No collective: the elements other ranks own are assembled by `gathered()`."""
        ownership = self._ownership or self._bind(live)
        if self._averages:
            masters = [s.master.to(self._averages[0].device, torch.float32) for s in ownership.slices]
            torch._foreach_lerp_(self._averages, masters, 1 - self.current_decay())
        self.updates += 1
        self._stale = bool(ownership.partitioned)

    @torch.no_grad()
    def gathered(self) -> RealPortrait:
        """The whole average. A collective when it has moved since the last gather (every rank calls it at the same
        steps): each bucket of partitioned parameters is zero-filled but for this rank's elements and all-reduced,
        which sums the disjoint partitions into the whole."""
        if not self._stale:
            return self._model
        assert self._ownership is not None  # stale only after an update
        targets = dict(self._model.named_parameters())
        owned: dict[str, list[Slice]] = {}
        for piece in self._ownership.slices:
            owned.setdefault(piece.name, []).append(piece)
        for bucket in _buckets(self._ownership.partitioned, targets):
            flat = torch.zeros(sum(targets[n].numel() for n in bucket), dtype=torch.float32, device=self.device)
            offset = 0
            for name in bucket:
                whole = targets[name].view(-1)
                for piece in owned.get(name, []):
                    flat.narrow(0, offset + piece.start, piece.numel).copy_(whole.narrow(0, piece.start, piece.numel))
                offset += whole.numel()
            dist.all_reduce(flat, group=self._ownership.group)
            offset = 0
            for name in bucket:
                whole = targets[name].view(-1)
                whole.copy_(flat.narrow(0, offset, whole.numel()))
                offset += whole.numel()
        self._stale = False
        return self._model

    @property
    def device(self) -> torch.device:
        return next(self._model.parameters()).device

    def load(self, weights: dict[str, torch.Tensor], updates: int) -> None:
        """Restores a saved whole average (every rank loads it; each then averages its own elements in place)."""
        self._model.load_state_dict(weights)
        self.updates = updates
        self._stale = False


def _buckets(names: list[str], targets: dict[str, nn.Parameter]) -> list[list[str]]:
    """Consecutive parameters in groups of at most GATHER_BUCKET_ELEMENTS elements (a larger one alone)."""
    buckets: list[list[str]] = []
    size = GATHER_BUCKET_ELEMENTS
    for name in names:
        numel = targets[name].numel()
        if not buckets or size + numel > GATHER_BUCKET_ELEMENTS:
            buckets.append([])
            size = 0
        buckets[-1].append(name)
        size += numel
    return buckets
