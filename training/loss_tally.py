"""The training loss of one rank, kept on the device between the steps that read it.

Why: reading the loss at every micro-step (`loss.item()`, `if not torch.isfinite(loss)`) makes the host
wait for the device at every step, so the GPU idles while Python queues the next one. Here the loss is
summed on the device, and the first non-finite loss is remembered there (its micro-step's index and
value, with `torch.where`), while the host keeps what it already knows: each micro-step's optimizer step
and batch keys. Both are read only at the steps that log, validate or checkpoint (`check_finite`).

Why every rank checks together: a NaN raised on one rank alone leaves the others waiting in the next
gradient reduction until the collective timeout (30 minutes by default). `check_finite` is a collective:
a minimum over the ranks of the first bad micro-step, then, only when there is one, a gather of what
each rank saw; every rank raises the same `NonFiniteLoss`, naming where it first happened.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

NONE_BAD = 2**62  # the first bad micro-step's position when there is none (a minimum over ranks ignores it)


class NonFiniteLoss(FloatingPointError):
    """A loss was NaN or infinite on some rank: every rank stops with this same message."""


@dataclass(frozen=True)
class MicroStep:
    """What the host knows of one micro-step: the optimizer step it belongs to, its index in the
    accumulation, and its batch's clip keys."""

    step: int
    micro: int
    keys: list[str]


class LossTally:
    """Sums this rank's micro-step losses and watches them for non-finite values, on `device`."""

    def __init__(self, device: torch.device, accumulation: int) -> None:
        self.device = device
        self.accumulation = accumulation
        self.micro_steps: list[MicroStep] = []  # since the last finite check
        self._first_bad = torch.full((), -1, dtype=torch.long, device=device)  # index into micro_steps
        self._bad_value = torch.zeros((), device=device)
        self.reset_sum()

    def reset_sum(self) -> None:
        """Start a new logging window's loss sum."""
        self._sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.summed = 0

    def add(self, loss: torch.Tensor, micro_step: MicroStep) -> None:
        """Record one micro-step's loss without reading it."""
        loss = loss.detach().float()
        index = len(self.micro_steps)
        self.micro_steps.append(micro_step)
        first = (~torch.isfinite(loss)) & (self._first_bad < 0)
        self._first_bad = torch.where(first, index, self._first_bad)
        self._bad_value = torch.where(first, loss, self._bad_value)
        self._sum = self._sum + loss.double()
        self.summed += 1

    def sum_and_count(self) -> torch.Tensor:
        """[loss sum, micro-steps] of the current window, float64 on the device (for an all-reduce)."""
        return torch.stack([self._sum, torch.full((), float(self.summed), dtype=torch.float64, device=self.device)])

    def check_finite(self, stage: str, rank: int, advice: str) -> None:
        """Collective (every rank calls it at the same steps): raise `NonFiniteLoss` on every rank if any
        rank has seen a non-finite loss since the last check; otherwise forget the checked micro-steps."""
        index = int(self._first_bad)  # the host waits here, at a logging or checkpoint step only
        position = NONE_BAD if index < 0 else self._position(self.micro_steps[index])
        earliest = torch.full((), position, dtype=torch.long, device=self.device)
        dist.all_reduce(earliest, op=dist.ReduceOp.MIN)
        if int(earliest) == NONE_BAD:
            self.micro_steps.clear()
            self._first_bad.fill_(-1)
            return
        seen = None if index < 0 else (position, rank, self.micro_steps[index], float(self._bad_value))
        reports: list[tuple[int, int, MicroStep, float] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(reports, seen)
        _, where, first, value = min(report for report in reports if report is not None)
        raise NonFiniteLoss(
            f"[{stage}] non-finite loss ({value}) at step {first.step} (micro-step {first.micro + 1} of "
            f"{self.accumulation}) on rank {where}, batch {first.keys}; every rank stopped. {advice}"
        )

    def _position(self, micro_step: MicroStep) -> int:
        """The micro-step's place in the run's order, comparable across ranks."""
        return micro_step.step * self.accumulation + micro_step.micro
