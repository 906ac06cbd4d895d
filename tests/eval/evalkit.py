"""Helpers of the evaluation tests (imported as `evalkit`: tests/eval is on pytest's path)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE_SPLIT = REPO / "manifests" / "splits" / "sample.json"
# A quick protocol for the sample on 2 cores: the tiny model's native 128 px, 18 frames per clip (17
# scored: one FVD window), one window per video and two seeds, CSIM on every 3rd frame.
FAST = ["size=128", "max_frames=18", "identity_every=3", "fvd.windows_per_video=1", "fvd.seeds=[0,1]"]
