"""The ground truth's features are computed once and reused, and never read for other frames or networks.

With the test-made Inception and I3D (real architectures, `conftest.metric_weights`) and dlib's real
identity network on small synthetic clips: a second reading of the same clip is served from the cache
with the same values; a clip whose frames differ by one pixel, or features taken on another device, are
other entries; I3D windows and identity frames asked for later are added to the clip's entry.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.clips import EvalClip
from eval.config import EvalConfig
from eval.ground_truth import GroundTruthCache, Truth, Versions
from eval.metrics.fid import InceptionFeatures
from eval.metrics.fvd import I3DFeatures
from eval.metrics.identity import DlibIdentity
from eval.scorers import Scorers
from model.precision import Precision

SPLIT_SHA = "ab" * 32


@pytest.fixture(scope="module")
def scorers(metric_weights: Path) -> Scorers:
    return Scorers(
        EvalConfig(size=64),
        inception=InceptionFeatures.load(metric_weights, allow_unpinned=True),
        i3d=I3DFeatures.load(metric_weights, allow_unpinned=True),
        identity=DlibIdentity.load(Path("/nonexistent")),  # dlib's files come with its package
    )


def clip(seed: int = 0, frames: int = 20) -> EvalClip:
    video = np.random.default_rng(seed).integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8)
    return EvalClip.of_frames("vfhq/clip", video)


def test_a_clip_is_computed_once_and_read_back_the_same(scorers: Scorers, tmp_path: Path) -> None:
    cache = GroundTruthCache(tmp_path, SPLIT_SHA, Versions.of(scorers))
    first = Truth(clip(), scorers, cache).inception()
    again = Truth(clip(), scorers, cache).inception()
    assert cache.computed["inception"] == 1 and cache.reused["inception"] == 1
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, Truth(clip(), scorers, GroundTruthCache.disabled()).inception())

    touched = clip()
    touched.frames[3, 10, 10, 0] ^= 1
    Truth(EvalClip.of_frames("vfhq/clip", touched.frames), scorers, cache).inception()
    assert cache.computed["inception"] == 2  # other frames, another entry

    in_bf16 = replace(scorers, precision=Precision(torch.device("cpu"), torch.bfloat16))
    elsewhere = GroundTruthCache(tmp_path, SPLIT_SHA, Versions.of(in_bf16))
    Truth(clip(), scorers, elsewhere).inception()
    assert elsewhere.computed["inception"] == 1 and not elsewhere.reused  # another dtype, another entry
    folders = sorted(p.name for p in (tmp_path / SPLIT_SHA[:16]).iterdir())
    assert len(folders) == 2 and all(name.startswith("inception-") for name in folders)
    assert (
        "weights " + scorers.inception.weights.sha256
        in (tmp_path / SPLIT_SHA[:16] / folders[0] / "version.txt").read_text()
    )


def test_windows_and_frames_asked_for_later_join_the_entry(scorers: Scorers, tmp_path: Path) -> None:
    cache = GroundTruthCache(tmp_path, SPLIT_SHA, Versions.of(scorers))
    truth = Truth(clip(), scorers, cache)
    first = truth.i3d([0])
    both = Truth(clip(), scorers, cache).i3d([4, 0])
    np.testing.assert_array_equal(both[1], first[0])
    direct = scorers.i3d.windows(clip().frames, [4], 16).astype(np.float32)
    np.testing.assert_allclose(both[0], direct[0], rtol=1e-5, atol=1e-5)
    assert Truth(clip(), scorers, cache).i3d([0, 4]).shape == (2, 400) and cache.computed["i3d"] == 2

    network = scorers.identity
    embedded = truth.embeddings(network, [0, 2])
    assert embedded == [None, None]  # noise shows no face: remembered as such, not asked again
    assert Truth(clip(), scorers, cache).embeddings(network, [2, 0, 5]) == [None, None, None]
    assert cache.computed["CSIM-dlib"] == 2 and cache.reused["CSIM-dlib"] == 1
