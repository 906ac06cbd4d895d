"""insightface's SCRFD face detector, run directly with onnxruntime from a model file on local disk.

insightface's own wrapper downloads model packs on first use, which must never happen in the pipeline
(offline by default), so this module reads the ONNX file itself and decodes SCRFD's outputs here:
for each stride (8, 16, 32) the network scores 2 anchors per feature-map cell and regresses, from the
cell's top-left corner, the distances to the box's four sides and the offsets of five keypoints, in
units of the stride. Inputs are letterboxed (aspect kept, padded at the right and bottom) to the
network's size, RGB, normalised as (x - 127.5) / 128.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from pipeline.faces.base import Face

# SCRFD files in insightface's model packs, most accurate first, with the packs that ship them.
DETECTOR_FILES = {
    "det_10g.onnx": "buffalo_l",
    "scrfd_10g_bnkps.onnx": "antelopev2",
    "det_2.5g.onnx": "buffalo_m",
    "det_500m.onnx": "buffalo_s or buffalo_sc",
}
MODEL_ZOO = "https://github.com/deepinsight/insightface/tree/master/python-package#model-zoo"
DEFAULT_MODEL_DIR = Path("~/.insightface/models/buffalo_l")  # where insightface itself unpacks buffalo_l
STRIDES = (8, 16, 32)
ANCHORS = 2  # per feature-map cell
KEYPOINTS = 5  # eye L, eye R, nose tip, mouth L, mouth R (image sides)
INPUT_SIZE = 640  # used when the model's input size is dynamic, as in insightface's packs
NMS_IOU = 0.4


def find_model(model_dir: str | os.PathLike | None = None, model_file: str | None = None) -> Path:
    """The SCRFD file to load: `model_file` in `model_dir`, else the first of DETECTOR_FILES present."""
    folder = Path(model_dir or DEFAULT_MODEL_DIR).expanduser()
    names = [model_file] if model_file else list(DETECTOR_FILES)
    for name in names:
        if (folder / name).is_file():
            return folder / name
    wanted = ", ".join(f"{name} (model pack {DETECTOR_FILES.get(name, 'unknown')})" for name in names)
    raise FileNotFoundError(
        f"no SCRFD face detector model in {folder}: looked for {wanted}. These files come from insightface's "
        f"model zoo ({MODEL_ZOO}); nothing is downloaded at run time, so fetch a pack (e.g. buffalo_l.zip) "
        f"on a machine with internet, unzip it, and put its detector file at {folder / names[0]} "
        f"(or pass model_dir=<the unzipped pack folder>)"
    )


class ScrfdDetector:
    """One onnxruntime session per worker (load once, reuse); `threads` is its intra-op thread count."""

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        min_score: float = 0.5,
        *,
        model_file: str | None = None,
        threads: int = 1,
        nms_iou: float = NMS_IOU,
    ):
        self.path = find_model(model_dir, model_file)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 3 * len(STRIDES):
            raise ValueError(
                f"{self.path} is not an SCRFD detector with keypoints: expected 1 input and {3 * len(STRIDES)} "
                f"outputs (scores, boxes, keypoints per stride), found {len(inputs)} and {len(outputs)}"
            )
        self._input = inputs[0].name
        height, width = inputs[0].shape[2:]
        fixed = isinstance(height, int) and isinstance(width, int)
        self.input_size = (width, height) if fixed else (INPUT_SIZE, INPUT_SIZE)
        self._centres = [_anchor_centres(self.input_size, stride) for stride in STRIDES]
        self.min_score, self.nms_iou = min_score, nms_iou

    def detect(self, image: np.ndarray) -> list[Face]:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
        blob, factors = _letterbox(image, self.input_size)
        outputs = self._session.run(None, {self._input: blob})
        boxes, points, scores = [], [], []
        for level, (stride, centres) in enumerate(zip(STRIDES, self._centres, strict=True)):
            score = outputs[level].reshape(-1)
            if score.size != len(centres):
                raise ValueError(
                    f"{self.path}: stride {stride} gives {score.size} scores for a {self.input_size} input, "
                    f"expected {len(centres)} ({ANCHORS} anchors per cell)"
                )
            keep = score >= self.min_score
            distances = outputs[level + len(STRIDES)].reshape(-1, 4)[keep] * stride
            offsets = outputs[level + 2 * len(STRIDES)].reshape(-1, KEYPOINTS, 2)[keep] * stride
            centre = centres[keep]
            boxes.append(np.concatenate([centre - distances[:, :2], centre + distances[:, 2:]], axis=1))
            points.append(centre[:, None] + offsets)
            scores.append(score[keep])
        box, point, score = (np.concatenate(parts) for parts in (boxes, points, scores))
        chosen = _nms(box, score, self.nms_iou)
        box, point = box[chosen] / np.tile(factors, 2), point[chosen] / factors
        return [
            Face(tuple(float(v) for v in b), float(s), p.astype(np.float32))
            for b, s, p in zip(box, score[chosen], point, strict=True)
        ]

    def close(self) -> None:
        del self._session


def _anchor_centres(size: tuple[int, int], stride: int) -> np.ndarray:
    """(cells * ANCHORS, 2) x, y of each anchor in input pixels: cells row by row, anchors within a cell."""
    width, height = size
    ys, xs = np.mgrid[: -(-height // stride), : -(-width // stride)]
    corners = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(corners, ANCHORS, axis=0)


def _letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The network input (1, 3, H, W) float32 and the (x, y) factors from image to input pixels."""
    height, width = image.shape[:2]
    scale = min(size[0] / width, size[1] / height)
    resized_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = np.zeros((size[1], size[0], 3), np.uint8)
    canvas[: resized_size[1], : resized_size[0]] = cv2.resize(image, resized_size, interpolation=cv2.INTER_LINEAR)
    blob = (canvas.astype(np.float32) - 127.5) / 128.0
    factors = np.array([resized_size[0] / width, resized_size[1] / height], np.float32)
    return np.ascontiguousarray(blob.transpose(2, 0, 1)[None]), factors


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        low = np.maximum(boxes[best, :2], boxes[rest, :2])
        high = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        overlap = np.prod(np.clip(high - low, 0, None), axis=1)
        iou = overlap / np.maximum(area[best] + area[rest] - overlap, 1e-9)
        order = rest[iou <= threshold]
    return np.array(keep, np.int64)
