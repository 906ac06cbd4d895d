"""Helpers of the evaluation tests (imported as `evalkit`: tests/eval is on pytest's path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
SAMPLE_SPLIT = REPO / "manifests" / "splits" / "sample.json"
# A quick protocol for the sample on 2 cores: the tiny model's native 128 px, 18 frames per clip (17
# scored: one FVD window), one window per video and two seeds, CSIM on every 3rd frame.
FAST = ["size=128", "max_frames=18", "identity_every=3", "fvd.windows_per_video=1", "fvd.seeds=[0,1]"]


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


def face_frames(sample_root: Path) -> np.ndarray:
    """(N, 128, 128, 3) uint8 frames of the sample's clips at the evaluation crop."""
    from eval.clips import load_clip
    from pipeline.faces import open_detector
    from pipeline.split import load_split

    detector = open_detector()
    clips = [load_clip(c, sample_root / c.dataset, 128, detector, 18) for c in load_split(SAMPLE_SPLIT).clips]
    return np.concatenate([clip.frames for clip in clips])


def arcface_stand_in(path: Path) -> None:
    """An ONNX model with w600k_r50.onnx's interface (1x3x112x112 -> 512), NOT its architecture: average
    pooling and a seeded random projection. It tests the alignment, the session and the CSIM plumbing."""
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
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])],
        [numpy_helper.from_array(weight, "weight")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
