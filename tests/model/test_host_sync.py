"""No host sync in the training step or the sampling loop: the guard that counts them, and the count.

The guard (`model.host_sync.HostSyncGuard`) must see a sync when one is there, or a count of zero would
mean nothing: the first tests put each kind of request in on purpose."""

from __future__ import annotations

import pytest
import torch

from model.diffusion import NoiseSchedule, ddim_sample
from model.host_sync import HostSyncError, HostSyncGuard


@pytest.mark.parametrize(
    ("request_sync", "what"),
    [
        (lambda x: x.sum().item(), "Tensor.item"),
        (lambda x: bool(x.sum() > 0), "bool(tensor)"),
        (lambda x: x.cpu(), "Tensor.cpu"),
        (lambda x: x.tolist(), "Tensor.tolist"),
        (lambda x: float(x[0]), "float(tensor)"),
        (lambda x: x[x > 0], "boolean-mask indexing"),
        (lambda x: torch.nonzero(x), "torch.nonzero"),
        (lambda x: torch.linalg.inv(torch.eye(3) + x[:9].view(3, 3) * 0.1), "torch.linalg.inv (error check)"),
    ],
)
def test_the_guard_sees_each_kind_of_sync(request_sync, what):
    x = torch.randn(16)
    with HostSyncGuard() as guard:
        x * 2  # no sync
        request_sync(x)
    assert [sync.what for sync in guard.syncs] == [what]
    assert guard.syncs[0].where.startswith("tests/model/test_host_sync.py:")


def test_the_guard_sees_device_crossings_by_their_devices():
    """A copy to the CPU and a blocking copy to the device cross; a non-blocking upload does not wait."""
    guard = HostSyncGuard()
    guard._check_move(torch.device("cuda"), torch.device("cpu"), non_blocking=True)
    guard._check_move(torch.device("cpu"), torch.device("cuda"), non_blocking=False)
    guard._check_move(torch.device("cpu"), torch.device("cuda"), non_blocking=True)
    assert [sync.what for sync in guard.syncs] == ["copy from cuda to the CPU", "blocking copy from the CPU to cuda"]


def test_a_strict_guard_stops_at_the_first_sync():
    with (
        pytest.raises(HostSyncError, match=r"Tensor.item at tests/model/test_host_sync.py:\d+"),
        HostSyncGuard(strict=True),
    ):
        torch.ones(2).sum().item()


def test_a_training_step_has_no_host_sync(tiny_model, clip):
    """RealPortrait.training_loss and its backward, gradient checkpointing on, in image and video mode."""
    model = tiny_model(control=True).train()
    model.enable_gradient_checkpointing()
    for frames in (1, 3):
        data = clip(batch=2, frames=frames, size=(8, 8))
        fps = torch.tensor([float("nan"), 25.0])
        with HostSyncGuard() as guard:
            model.training_loss(data["latents"], data["reference"], data["driving"], fps=fps).backward()
        assert guard.syncs == [], [str(sync) for sync in guard.syncs]


def test_a_reintroduced_sync_in_the_step_is_caught(tiny_model, clip, monkeypatch):
    """The check above fails when the training step reads a value: the old timestep lookup, put back."""
    model = tiny_model().train()
    data = clip(batch=2, frames=2, size=(8, 8))
    table = model.schedule.signal_table
    monkeypatch.setattr(model.schedule, "snr", lambda t: table[t.cpu()])
    with HostSyncGuard() as guard:
        model.training_loss(data["latents"], data["reference"], data["driving"]).backward()
    assert [sync.what for sync in guard.syncs] == ["Tensor.cpu"]


def test_guided_sampling_has_no_host_sync(tiny_model, clip):
    """A whole guided sampling call (motion, caches, DDIM table and 3 steps of 3 passes), eta > 0 too."""
    model = tiny_model(control=True)
    data = clip(batch=1, frames=2, size=(8, 8))
    for eta in (0.0, 1.0):
        with HostSyncGuard() as guard:
            model.sample(
                data["reference"], data["driving"], num_steps=3, reference_guidance=2.0, motion_guidance=1.5, eta=eta
            )
        assert guard.syncs == [], [str(sync) for sync in guard.syncs]


def test_the_schedule_tables_stay_exact_float32_under_casts():
    schedule = NoiseSchedule().to(torch.bfloat16)
    assert schedule.signal_table.dtype == torch.float32
    assert torch.equal(schedule.signal_table, NoiseSchedule().alphas_cumprod.sqrt().float())
    assert "signal_table" not in schedule.state_dict()  # they follow from the config, not saved


def test_ddim_factors_match_the_float64_schedule():
    """The device table holds what the host computed per step before: sqrt(ab_prev), sqrt(1 - ab_prev)."""
    schedule = NoiseSchedule()
    table = schedule.ddim_table([999, 500, 0], 0.0, torch.device("cpu"))
    ab = schedule.alphas_cumprod
    expected = [[ab[500].sqrt(), (1 - ab[500]).sqrt(), 0], [ab[0].sqrt(), (1 - ab[0]).sqrt(), 0], [1, 0, 0]]
    assert torch.allclose(table.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-7, atol=1e-8)


def test_ddim_runs_on_the_meta_device():
    """A read of a value fails on meta tensors: the loop reads none."""
    schedule = NoiseSchedule().to("meta")
    noise = torch.randn(1, 4, 2, 8, 8, device="meta")
    result = ddim_sample(lambda x, t: x * 0.5, noise, schedule, prediction_type="epsilon", num_steps=3, eta=1.0)
    assert result.device.type == "meta" and result.shape == noise.shape


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs CUDA: torch's sync debug mode counts what the driver sees (the guard tests above count the "
    "same step's syncs on the CPU)",
)
def test_no_sync_reaches_the_cuda_driver(tiny_model, clip):
    device = torch.device("cuda")
    model = tiny_model(control=True).to(device).train()
    data = {name: value.to(device) for name, value in clip(batch=2, frames=2, size=(8, 8)).items()}
    model.training_loss(data["latents"], data["reference"], data["driving"]).backward()  # warm-up: lazy inits
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        model.training_loss(data["latents"], data["reference"], data["driving"]).backward()
        model.eval().sample(data["reference"][:1], data["driving"][:1], num_steps=2)
    finally:
        torch.cuda.set_sync_debug_mode("default")
