"""Metric weight files made here, for the tests and the benchmarks: the real architectures, not the real weights.

AlexNet and Inception v3 (torchvision's, which load into lpips' trunk and torch-fidelity's extractor key for
key) and cd-fvd's InceptionI3d, with seeded random convolutions whose batch-norm statistics are calibrated
on real face frames, so that features vary with the input as a trained network's do. They cost what the
published networks cost and prove the loading and the metric code, never the published numbers (each
file's sha256 differs from the official one, which the run records). ArcFace's file is a stand-in with
its interface only (`arcface_stand_in`); dlib's identity network is the real one its package ships.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def calibrate_batch_norm(network: nn.Module, batches: list[torch.Tensor]) -> None:
    """Set every batch norm's running statistics to those of `batches` (cumulative average)."""
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    network.train()
    with torch.no_grad():
        for batch in batches:
            network(batch)
    network.eval()


def face_frames(sample_root: Path, size: int = 128) -> np.ndarray:
    """(N, size, size, 3) uint8 frames of the sample split's clips (18 each) at the evaluation crop, from
    the embedded sample written to `sample_root` (`pipeline.sample.write_sample`)."""
    from eval.clips import load_clip
    from pipeline.faces import open_detector
    from pipeline.split import load_split

    split = Path(__file__).resolve().parents[1] / "manifests" / "splits" / "sample.json"
    detector = open_detector()
    clips = [load_clip(c, sample_root / c.dataset, size, detector, 18) for c in load_split(split).clips]
    return np.concatenate([clip.frames for clip in clips])


def arcface_stand_in(path: Path) -> None:
    """An ONNX model with w600k_r50.onnx's interface (Nx3x112x112 -> Nx512, the batch free), NOT its
    architecture: average pooling and a seeded random projection. It tests the alignment, the session and
    the CSIM plumbing; it costs far less than the real ResNet-50."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).normal(size=(3 * 14 * 14, 512)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "weight"], ["683"]),
        ],
        "arcface_stand_in",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["None", 512])],
        [numpy_helper.from_array(weight, "weight")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def write_made_weights(folder: Path, frames: np.ndarray) -> Path:
    """AlexNet, Inception v3 and I3D files (calibrated on `frames`, (N >= 48, H, W, 3) uint8 faces) and the
    ArcFace stand-in, under their official file names in `folder`; returns `folder`."""
    import torchvision
    from cdfvd.third_party.i3d.pytorch_i3d import InceptionI3d
    from cdfvd.third_party.i3d.utils import preprocess_i3d

    folder.mkdir(parents=True, exist_ok=True)
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), folder / "alexnet-owt-7be5be79.pth")

    inception = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True, num_classes=1008)
    resized = F.interpolate(pixels, size=(299, 299), mode="bilinear", align_corners=False)
    calibrate_batch_norm(inception, [(resized[i : i + 16] - 128) / 128 for i in range(0, len(resized), 16)])
    torch.save(inception.state_dict(), folder / "weights-inception-2015-12-05-6726825d.pth")

    i3d = InceptionI3d(400, in_channels=3)
    calibrate_batch_norm(i3d, [preprocess_i3d(frames[:48].reshape(3, 16, *frames.shape[1:]))])
    torch.save(i3d.state_dict(), folder / "i3d_pretrained_400.pt")
    arcface_stand_in(folder / "w600k_r50.onnx")
    return folder
