"""`training/train.py` with one rank's inputs poisoned once, for `test_nonfinite_loss.py` (test-only).

Rank 1's `model_inputs` gets a NaN in the latents of its 5th micro-step (step 3, micro-step 1 of 2 at
the test's batch split); rank 0's inputs stay clean, so rank 0 alone could not know. The production
code is run unchanged: only this entry point wraps the function that moves a batch to the device."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[2])  # the repository, as train.py does for itself

import training.train as train  # noqa: E402

POISONED_CALL = 5
clean_inputs = train.model_inputs
calls = 0


def poisoned_inputs(batch, context, sample_posterior):  # type: ignore[no-untyped-def]
    global calls
    latents, reference_latents, driving, fps = clean_inputs(batch, context, sample_posterior)
    calls += 1
    if context.rank == 1 and calls == POISONED_CALL:
        latents = latents.clone()  # keeps the batch's strides, which need not be contiguous: index, not view
        latents[(0,) * latents.ndim] = float("nan")
    return latents, reference_latents, driving, fps


train.model_inputs = poisoned_inputs
sys.exit(train.main())
