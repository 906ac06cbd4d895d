"""Host syncs per training step and per guided sampling step, counted on the CPU (`model.host_sync`).

    .venv/bin/python bench/host_syncs.py [--preset tiny]

A training step is `RealPortrait.training_loss` + backward on a batch of 2 clips of the preset's L frames
(at most 4, at most 128 px), gradient checkpointing on (the optimizer's step is torch's or DeepSpeed's:
torch's AdamW reads its step counters, host tensors by design, with `.item()`); sampling is one guided
call of 2 DDIM steps (three passes a step: reference scale 2, motion scale 1.5). Prints the requests and
where each was made. On a GPU, CUDA's own
`torch.cuda.set_sync_debug_mode` sees the same requests as they reach the driver.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

# Run as a script from bench/: put the repository first so `model` is the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.host_sync import HostSync, HostSyncGuard
from model.realportrait import PRESETS, RealPortrait


def training_step_syncs(model: RealPortrait, frames: int, latent: int) -> list[HostSync]:
    latents = torch.randn(2, 4, frames, latent, latent)
    reference = torch.randn(2, 4, latent, latent)
    driving = torch.rand(2, 3, frames, 8 * latent, 8 * latent) * 2 - 1
    with HostSyncGuard() as guard:
        loss = model.training_loss(latents, reference, driving)
        loss.backward()
    return guard.syncs


def sampling_step_syncs(model: RealPortrait, frames: int, latent: int, steps: int = 2) -> list[HostSync]:
    """The requests of a `steps`-step guided sampling call, its set-up (motion, caches, table) included."""
    reference = torch.randn(1, 4, latent, latent)
    driving = torch.rand(1, 3, frames, 8 * latent, 8 * latent) * 2 - 1
    with HostSyncGuard() as guard:
        model.sample(reference, driving, num_steps=steps, reference_guidance=2.0, motion_guidance=1.5)
    return guard.syncs


def report(name: str, syncs: list[HostSync]) -> None:
    print(f"{name}: {len(syncs)} host sync(s)")
    for sync, count in Counter(str(sync) for sync in syncs).most_common():
        print(f"  {count} x {sync}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    args = parser.parse_args()
    torch.manual_seed(0)
    preset = PRESETS[args.preset]
    model = RealPortrait.from_preset(args.preset)
    model.enable_gradient_checkpointing()
    frames, latent = min(preset.num_frames, 4), min(preset.latent_size, 16)
    report("training step (loss and backward)", training_step_syncs(model.train(), frames, latent))
    report("guided sampling, a 2-step call", sampling_step_syncs(model.eval(), frames, latent))


if __name__ == "__main__":
    main()
