"""The device-side loss tally of one rank: its sums, and the first non-finite micro-step it remembers.

A job of one (a gloo group of 1) is enough for what one rank keeps; the 2-rank agreement is
`test_nonfinite_loss.py`'s."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist

from training.loss_tally import LossTally, MicroStep, NonFiniteLoss


@pytest.fixture(scope="module")
def one_rank() -> Iterator[None]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def add(tally: LossTally, value: float, step: int, micro: int) -> None:
    tally.add(torch.tensor(value), MicroStep(step, micro, [f"clip{step}.{micro}"]))


def test_the_losses_are_summed_until_a_log_reads_them(one_rank: None) -> None:
    tally = LossTally(torch.device("cpu"), accumulation=2)
    for step, micro, value in [(1, 0, 0.5), (1, 1, 1.5), (2, 0, 2.0)]:
        add(tally, value, step, micro)
    assert tally.sum_and_count().tolist() == [4.0, 3.0]
    tally.check_finite("stage1", 0, "advice")  # all finite: nothing raised, the micro-steps forgotten
    assert tally.micro_steps == []
    tally.reset_sum()
    add(tally, 3.0, 2, 1)
    assert tally.sum_and_count().tolist() == [3.0, 1.0]


def test_the_first_non_finite_micro_step_is_named_not_a_later_one(one_rank: None) -> None:
    tally = LossTally(torch.device("cpu"), accumulation=2)
    add(tally, 1.0, 5, 0)
    add(tally, float("inf"), 5, 1)
    add(tally, float("nan"), 6, 0)
    message = r"\[stage2\] non-finite loss \(inf\) at step 5 \(micro-step 2 of 2\) on rank 0, batch \['clip5.1'\]"
    with pytest.raises(NonFiniteLoss, match=message + "; every rank stopped. resume"):
        tally.check_finite("stage2", 0, "resume")
