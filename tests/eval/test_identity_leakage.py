"""Driver-identity leakage in cross-reenactment, with dlib's real identity network on the sample's faces.

Two real identities: the sample's VFHQ clip (portrait t1_a) is the source, its CelebV-HQ clip
Yk7_pQ3vW1s_4 (portrait t1_f) drives. The baselines bracket the measure: source-copy leaks nothing,
driving-copy (the driving clip itself, a leakage control) leaks everything, and landmark-warp (the source
moved by the driver's head motion) stays with the source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from evalkit import SAMPLE_SPLIT

from eval.baselines import DrivingCopy, LandmarkWarp, SourceCopy
from eval.clips import EvalClip
from eval.config import EvalConfig
from eval.ground_truth import GroundTruthCache, Truth
from eval.methods import Method
from eval.metrics.face_motion import FaceMotion
from eval.metrics.identity import DlibIdentity, leakage
from eval.run import frame_metrics, identity_similarity
from eval.scorers import Scorers
from eval.tasks import Task
from pipeline.faces import open_landmarker

SOURCE_ITEM, DRIVING_ITEM = "vfhq/Clip+Zz9-yX_8wVu+P0+C2+F10-50", "celebvhq/Yk7_pQ3vW1s_4"


@pytest.fixture(scope="module")
def pair(sample_root: Path) -> tuple[np.ndarray, np.ndarray]:
    """(source image, driving clip) at a 128 px evaluation crop, 18 driving frames."""
    from eval.clips import load_clip
    from pipeline.faces import open_detector
    from pipeline.split import load_split

    clips = {c.item_id: c for c in load_split(SAMPLE_SPLIT).clips}
    detector = open_detector()
    source = load_clip(clips[SOURCE_ITEM], sample_root / "vfhq", 128, detector, 18).frames[0]
    driving = load_clip(clips[DRIVING_ITEM], sample_root / "celebvhq", 128, detector, 18).frames
    return source, driving


@pytest.fixture(scope="module")
def dlib_identity() -> DlibIdentity:
    return DlibIdentity.load(Path("/nonexistent"))  # dlib's files come with its package


TASK = Task("cross", SOURCE_ITEM, DRIVING_ITEM)


def truths(pair: tuple[np.ndarray, np.ndarray], scorers: Scorers) -> tuple[Truth, Truth]:
    """The driving clip's and the source clip's ground-truth sides, computed (no cache)."""
    source, driving = pair
    cache = GroundTruthCache.disabled()
    return (
        Truth(EvalClip.of_frames(DRIVING_ITEM, driving), scorers, cache),
        Truth(EvalClip.of_frames(SOURCE_ITEM, source[None]), scorers, cache),
    )


def leakage_row(method: Method, network: DlibIdentity, pair: tuple[np.ndarray, np.ndarray]) -> dict[str, object]:
    source, driving = pair
    generated = method.generate(source, driving)
    scorers = Scorers(EvalConfig(), identity=network)
    return identity_similarity(network, 3, TASK, generated, *truths(pair, scorers), slice(0, None), leakage=True)


def test_source_copy_leaks_nothing(dlib_identity: DlibIdentity, pair: tuple[np.ndarray, np.ndarray]) -> None:
    row = leakage_row(SourceCopy(), dlib_identity, pair)
    assert row["CSIM-dlib-leak"] == 0.0
    assert row["CSIM-dlib"] == pytest.approx(1.0, abs=1e-9)  # every frame is the source image
    assert row["CSIM-dlib-driver"] < 0.95  # two people (dlib: the same person ~0.99, others up to ~0.91)
    assert row["CSIM-dlib-leak_frames"] == 6 and row["CSIM-dlib-leak_frames_without_face"] == 0


def test_driving_copy_leaks_everything(dlib_identity: DlibIdentity, pair: tuple[np.ndarray, np.ndarray]) -> None:
    row = leakage_row(DrivingCopy(), dlib_identity, pair)
    assert row["CSIM-dlib-leak"] == 1.0
    assert row["CSIM-dlib-driver"] == pytest.approx(1.0, abs=1e-9)
    assert row["CSIM-dlib"] < 0.95


def test_landmark_warp_keeps_the_source_identity(
    dlib_identity: DlibIdentity, pair: tuple[np.ndarray, np.ndarray]
) -> None:
    row = leakage_row(LandmarkWarp(open_landmarker()), dlib_identity, pair)
    assert row["CSIM-dlib-leak"] == 0.0
    assert row["CSIM-dlib"] > row["CSIM-dlib-driver"]


def test_frame_metrics_give_the_leakage_columns_in_cross_reenactment_only(
    dlib_identity: DlibIdentity, pair: tuple[np.ndarray, np.ndarray]
) -> None:
    """Asked for alone (without CSIM-dlib), the leakage columns are computed; self-reenactment has none."""
    source, driving = pair
    config = EvalConfig(metrics=("CSIM-dlib-driver", "CSIM-dlib-leak"), identity_every=3)
    scorers = Scorers(config, identity=dlib_identity)
    row = frame_metrics(scorers, TASK, DrivingCopy().generate(source, driving), *truths(pair, scorers), slice(0, None))
    assert row["CSIM-dlib-leak"] == 1.0 and row["CSIM-dlib-driver"] == pytest.approx(1.0, abs=1e-9)
    own = Task("self", DRIVING_ITEM, DRIVING_ITEM)
    driving_truth = truths(pair, scorers)[0]
    self_row = frame_metrics(scorers, own, driving, driving_truth, driving_truth, slice(1, None))
    assert not any(key.startswith(("CSIM-dlib-driver", "CSIM-dlib-leak")) for key in self_row)


def test_leakage_counts_only_frames_with_every_face() -> None:
    rng = np.random.default_rng(0)
    source, driver, other = rng.normal(size=(3, 128))
    generated = [driver + 0.1 * other, source, None, source + 0.1 * other, driver]
    driving = [driver, driver, driver, None, driver]
    result = leakage(generated, driving, source)
    assert result.frames == 3 and result.frames_skipped == 2
    assert result.share == pytest.approx(2 / 3)  # frames 0 and 4 are closer to the driver, frame 1 is not
    assert np.isnan(leakage(generated, driving, None).share)
    with pytest.raises(ValueError, match="4 driving"):
        leakage(generated, driving[:4], source)


def test_rp_eval_runs_the_leakage_control(tmp_path: Path) -> None:
    from eval.cli import make_method, parser

    args = parser().parse_args(
        ["run", "--split", str(SAMPLE_SPLIT), "--method", "driving-copy", "--out", str(tmp_path)]
    )
    method = make_method(args)
    assert isinstance(method, DrivingCopy) and "leakage control" in method.description


def test_driving_copy_scores_no_expression_distance_in_cross_reenactment(pair: tuple[np.ndarray, np.ndarray]) -> None:
    """Through the real landmarker: a method that returns the driving clip follows the driver exactly,
    whatever the source's own expression, so its AED is 0 (each video anchored on its own frame 0; the
    earlier rule anchored the generated video on the source image and charged it the gap between two
    people's expressions); its APD is 0 too. Source-copy does not follow the driver's head."""
    source, driving = pair
    scorers = Scorers(EvalConfig(metrics=("AED", "APD")), face_motion=FaceMotion(open_landmarker()))
    copied = frame_metrics(
        scorers, TASK, DrivingCopy().generate(source, driving), *truths(pair, scorers), slice(0, None)
    )
    assert copied["face_motion_frames_without_face"] <= 2
    assert copied["AED"] == pytest.approx(0.0, abs=1e-9) and copied["APD"] == pytest.approx(0.0, abs=1e-9)
    still = frame_metrics(scorers, TASK, SourceCopy().generate(source, driving), *truths(pair, scorers), slice(0, None))
    assert still["APD"] > 1.0
