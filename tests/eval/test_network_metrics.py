"""Metrics with networks: the real architectures with test-made weights (conftest), dlib's real network.

These prove that the files load into the libraries' networks and that each metric moves the right way;
the numbers are not the published networks' (see `metric_weights`).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from eval.made_weights import arcface_stand_in, face_frames
from eval.metrics.face_motion import FaceMotion, expression
from eval.metrics.fid import InceptionFeatures
from eval.metrics.frechet import frechet_between
from eval.metrics.fvd import I3DFeatures, window_starts
from eval.metrics.identity import ArcfaceIdentity, DlibIdentity, cosine
from eval.metrics.perceptual import Lpips, tlp
from eval.weights import WeightsMissing, find, load_state_dict, locate, status
from pipeline.faces import open_landmarker

INSIGHTFACE_IMAGES = Path(__import__("insightface").__file__).parent / "data" / "images"


@pytest.fixture(scope="module")
def frames(sample_root: Path) -> np.ndarray:
    return face_frames(sample_root)


def blurred(frames: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


def test_lpips_loads_the_alexnet_trunk_and_grows_with_degradation(metric_weights: Path, frames: np.ndarray) -> None:
    metric = Lpips.load(metric_weights, allow_unpinned=True)
    trunk = torch.load(metric_weights / "alexnet-owt-7be5be79.pth", weights_only=True)
    assert torch.equal(metric.network.net.slice1[0].weight, trunk["features.0.weight"])
    clip = frames[:6]
    assert np.allclose(metric.distances(clip, clip), 0, atol=1e-6)
    mild, strong = metric.distances(blurred(clip, 1.0), clip).mean(), metric.distances(blurred(clip, 3.0), clip).mean()
    assert 0 < mild < strong
    still = np.repeat(clip[:1], 6, axis=0)
    assert tlp(metric.steps(clip), metric.steps(clip)).max() < 1e-6  # the same motion as the reference
    assert tlp(metric.steps(still), metric.steps(clip)).mean() > 0  # no motion where the reference moves
    assert metric.weights.problem is not None  # a test-made trunk is flagged as not the official file


def test_one_pass_per_frame_gives_the_packages_lpips_across_batch_boundaries(
    metric_weights: Path, frames: np.ndarray
) -> None:
    """`measure` reuses each frame's features for its pairs; its values are what `lpips.LPIPS` gives
    pair by pair, also for the steps that straddle two batches (batch 5 over 12 frames)."""
    metric = Lpips.load(metric_weights, allow_unpinned=True)
    metric.batch = 5
    clip, other = frames[:12], frames[20:32]
    with torch.no_grad():
        pairs = metric.network(metric.scaled(clip), metric.scaled(other)).flatten().numpy()
        steps = metric.network(metric.scaled(clip[1:]), metric.scaled(clip[:-1])).flatten().numpy()
    measured = metric.measure(clip, other)
    assert measured.distances is not None and len(measured.steps) == 11
    assert np.allclose(measured.distances, pairs, atol=1e-6) and pairs.min() > 0.001
    assert np.allclose(measured.steps, steps, atol=1e-6) and steps.min() > 0
    assert metric.measure(clip[:1]).steps.shape == (0,) and metric.measure(clip).distances is None


def test_fid_features_separate_real_from_degraded_frames(metric_weights: Path, frames: np.ndarray) -> None:
    features = InceptionFeatures.load(metric_weights, allow_unpinned=True)
    real, other = frames[0:36:2], frames[1:36:2]  # 18 frames each, from the same clips
    real_features = features(real)
    assert real_features.shape == (18, 2048)
    noisy = np.clip(other.astype(int) + np.random.default_rng(0).normal(0, 40, other.shape), 0, 255).astype(np.uint8)
    same_kind = frechet_between(real_features, features(other))
    degraded = frechet_between(real_features, features(noisy))
    assert 0 <= same_kind < degraded


def test_fvd_windows_are_seeded_and_i3d_features_move_with_content(metric_weights: Path, frames: np.ndarray) -> None:
    assert window_starts("a", 40, 16, 4, seed=0) == window_starts("a", 40, 16, 4, seed=0)
    assert window_starts("a", 40, 16, 4, seed=0) != window_starts("a", 40, 16, 4, seed=1)
    assert window_starts("a", 15, 16, 4, seed=0) == []
    assert window_starts("a", 17, 16, 4, seed=0) == [0, 1]
    i3d = I3DFeatures.load(metric_weights, allow_unpinned=True)
    window = frames[:16]
    still = np.repeat(frames[:1], 16, axis=0)
    features = i3d(np.stack([window, window, still]))
    assert features.shape == (3, 400)
    assert np.allclose(features[0], features[1])
    assert not np.allclose(features[0], features[2], atol=1e-4)


def test_csim_dlib_is_a_real_identity_network() -> None:
    """dlib's pretrained descriptor, shipped by face_recognition_models: the same face (flipped, darker)
    is closer than the other people of insightface's group photo."""
    identity = DlibIdentity.load(Path("/nonexistent"))  # package files are found without a weights folder
    astronaut = skimage.data.astronaut()
    reference = identity.embed(astronaut)
    same = identity.embed(np.ascontiguousarray((astronaut[:, ::-1] * 0.8).astype(np.uint8)))
    group = np.asarray(Image.open(INSIGHTFACE_IMAGES / "t1.jpg").convert("RGB"))
    others = []
    for face in identity.detector(group, 0):
        top, left = max(face.top() - 60, 0), max(face.left() - 60, 0)
        crop = cv2.resize(group[top : face.bottom() + 60, left : face.right() + 60], (256, 256))
        embedding = identity.embed(crop)
        if embedding is not None:
            others.append(cosine(reference, embedding))
    assert reference is not None and same is not None and len(others) >= 3
    assert cosine(reference, same) > max(others)
    assert identity.embed(np.zeros((128, 128, 3), np.uint8)) is None  # no face: counted by the run


def test_aed_apd_are_zero_on_identical_frames_and_grow_with_motion(frames: np.ndarray) -> None:
    motion = FaceMotion(open_landmarker())
    clip = frames[:18]
    same = motion.distances(clip, motion.analyse(clip))
    assert np.nanmax(same.aed) == 0 and np.nanmax(same.aed_absolute) == 0 and np.nanmax(same.apd) == 0
    rotated = np.stack([cv2.warpAffine(f, cv2.getRotationMatrix2D((64, 64), 15, 1.0), (128, 128)) for f in clip])
    apd_rotated = motion.distances(rotated, motion.analyse(clip)).apd
    roll_change = motion.analyse(rotated).pose[:, 2] - motion.analyse(clip).pose[:, 2]
    assert np.nanmedian(np.abs(roll_change)) == pytest.approx(15, abs=3)  # the turn reads as roll ...
    assert np.nanmean(apd_rotated) == pytest.approx(15 / 3, abs=1.5)  # ... and APD averages yaw, pitch, roll
    measures = expression(motion.landmarker.track(clip))
    rotated_measures = expression(motion.landmarker.track(rotated))
    assert np.nanmean(np.abs(measures - rotated_measures)) < 0.02  # the face frame cancels roll


def test_missing_weights_name_the_file_and_its_source(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissing) as error:
        locate("i3d", tmp_path)
    message = str(error.value)
    assert "i3d_pretrained_400.pt" in message and "github.com/songweige/TATS" in message and str(tmp_path) in message
    with pytest.raises(WeightsMissing, match=r"alexnet-owt-7be5be79\.pth"):
        Lpips.load(tmp_path)
    rows = {row.entry.key: row for row in status(tmp_path)}
    assert rows["inception"].path is None and rows["dlib_face"].path is not None  # dlib comes with its package


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    """weights_only=True: a file that would run code when unpickled is never loaded."""

    class Payload:
        def __reduce__(self):  # what a malicious checkpoint does
            return (print, ("this must never run",))

    (tmp_path / "i3d_pretrained_400.pt").write_bytes(pickle.dumps({"weight": Payload()}))
    with pytest.raises(ValueError, match="weights_only"):
        load_state_dict("i3d", tmp_path)
    with pytest.raises(ValueError, match="weights_only"):
        I3DFeatures.load(tmp_path)
    assert find("i3d", tmp_path) == tmp_path / "i3d_pretrained_400.pt"


def test_csim_arcface_aligns_with_the_pipelines_landmarks(tmp_path: Path, frames: np.ndarray) -> None:
    arcface_stand_in(tmp_path / "w600k_r50.onnx")
    identity = ArcfaceIdentity.load(tmp_path, allow_unpinned=True)
    first = identity.embed(frames[0])
    assert first is not None and first.shape == (512,)
    assert cosine(first, identity.embed(frames[0].copy())) == pytest.approx(1.0)
    shifted = np.roll(frames[0], 6, axis=1)  # the alignment follows the face: a shift barely changes the chip
    assert cosine(first, identity.embed(shifted)) > 0.99
    assert identity.embed(np.zeros((128, 128, 3), np.uint8)) is None
    assert identity.weights[0].path.name == "w600k_r50.onnx"
