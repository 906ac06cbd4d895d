"""Everything besides the build config that shapes a build's output bytes, gathered for its fingerprint.

A resumed build must make its remaining shards under the rules of its first ones. The config alone does
not pin those rules: the registry's per-dataset defaults (`manifests/datasets/*.yaml`) can be edited,
an upgraded decoder or encoder changes pixels and bitstreams, and the face models decide every crop.
So the fingerprint also covers the defaults in effect for each dataset, the versions of the libraries
on the output path and the sha256 of the model files the workers load. Versions come from package
metadata (no import: mediapipe alone takes a second to import) and model files are hashed once per
build (a few MB).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from manifests.schema import PipelineDefaults
from pipeline.config import BuildConfig

# import name -> what it does to the output bytes
OUTPUT_LIBRARIES = {
    "av": "decoding, resampling and H.264 encoding (FFmpeg and x264 inside the wheel)",
    "cv2": "resizing, crops and colour conversion",
    "mediapipe": "face detection and the 478 landmarks",
    "numpy": "every array in a sample",
    "PIL": "image decoding and JPEG encoding",
    "scenedetect": "scene cuts",
    "webdataset": "the tar layout",
}
# the insightface backend runs SCRFD with onnxruntime directly (pipeline/faces/scrfd_backend.py): the
# insightface package itself is never imported on the output path, so only its model file counts
INSIGHTFACE_LIBRARIES = {"onnxruntime": "face detection (SCRFD)"}
# inside the mediapipe package: the graphs and models that pipeline/faces/ runs. The detector is the
# full-range BlazeFace (model_selection=1); FaceMesh runs the short-range detector and, with
# refine_landmarks=True, the landmark model with attention (irises).
MEDIAPIPE_DETECTOR_FILES = (
    "modules/face_detection/face_detection_full_range_cpu.binarypb",
    "modules/face_detection/face_detection_full_range_sparse.tflite",
)
MEDIAPIPE_LANDMARK_FILES = (
    "modules/face_landmark/face_landmark_front_cpu.binarypb",
    "modules/face_detection/face_detection_short_range.tflite",
    "modules/face_landmark/face_landmark_with_attention.tflite",
)


class FingerprintError(RuntimeError):
    """A file the fingerprint needs is missing (the build could not load it either)."""


def distributions_of(module: str) -> list[str]:
    """The installed distributions that provide the top-level import `module` (several may, e.g. the
    opencv-python variants), or none.

    Distributions declare their modules in top_level.txt, which is not always complete (dlib-bin declares
    only `_dlib_pybind11` but installs `dlib/`), so an undeclared module is looked up in the files each
    distribution installed.
    """
    names = _declared_modules().get(module) or _installed_modules().get(module, [])
    return sorted(set(names), key=str.lower)


@functools.cache
def _declared_modules() -> Mapping[str, list[str]]:
    """Read once per process: scanning every installed distribution takes about a second."""
    return importlib.metadata.packages_distributions()


@functools.cache
def _installed_modules() -> Mapping[str, list[str]]:
    """import name -> the distributions whose files occupy it: `dlib` for dlib/, `_x` for _x.cpython-311-....so."""
    found: dict[str, list[str]] = {}
    for dist in importlib.metadata.distributions():
        for name in {file.parts[0].split(".", 1)[0] for file in dist.files or ()}:
            found.setdefault(name, []).append(dist.metadata["Name"])
    return found


def library_versions(modules: Mapping[str, str]) -> dict[str, str]:
    """`import name -> "distribution version"` (all the distributions providing it), or "absent"."""
    versions = {}
    for module in sorted(modules):
        names = distributions_of(module)
        found = [f"{name} {importlib.metadata.version(name)}" for name in names]
        versions[module] = ", ".join(found) or "absent"
    return versions


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mediapipe_dir() -> Path:
    spec = importlib.util.find_spec("mediapipe")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FingerprintError("mediapipe is not installed: the build's face landmarks need it")
    return Path(next(iter(spec.submodule_search_locations)))


def model_files(cfg: BuildConfig) -> dict[str, Path]:
    """The face-model files a worker loads under `cfg`, by a name stable across machines."""
    root = _mediapipe_dir()
    names = list(MEDIAPIPE_LANDMARK_FILES)
    files = {}
    if cfg.face_backend == "mediapipe":
        names += MEDIAPIPE_DETECTOR_FILES
    else:
        from pipeline.faces.scrfd_backend import find_model

        try:
            detector = find_model(cfg.face_model_dir)
        except FileNotFoundError as exc:
            raise FingerprintError(str(exc)) from exc
        files[f"insightface/{detector.name}"] = detector
    for name in names:
        path = root / name
        if not path.is_file():
            raise FingerprintError(f"{path}: a face-model file of the mediapipe package is missing")
        files[f"mediapipe/{name}"] = path
    return files


def build_inputs(cfg: BuildConfig, defaults: Mapping[str, PipelineDefaults]) -> dict[str, object]:
    """What `BuildConfig.fingerprint` hashes besides the config: recorded in build.json too, so a refused
    resume can say what changed."""
    return {
        "defaults": {name: defaults[name].model_dump(mode="json") for name in sorted(defaults)},
        **node_inputs(cfg),
    }


def node_inputs(cfg: BuildConfig) -> dict[str, object]:
    """The part of the build's inputs that lies on each machine (library versions, model files): every
    worker computes its own at start, and a node that differs from the driver stops the build, since its
    shards would differ in bytes under the same fingerprint."""
    libraries = dict(OUTPUT_LIBRARIES, **(INSIGHTFACE_LIBRARIES if cfg.face_backend == "insightface" else {}))
    return {
        "libraries": library_versions(libraries),
        "models": {name: sha256_file(path) for name, path in sorted(model_files(cfg).items())},
    }


_GROUPS = {"config": "setting", "defaults": "dataset default", "libraries": "library", "models": "model file"}


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(value, Mapping):
        return {prefix: value}
    flat: dict[str, object] = {}
    for key, inner in value.items():
        flat.update(_flat(inner, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _differences(
    first: Mapping[str, object], second: Mapping[str, object], groups: Iterable[str]
) -> Iterator[tuple[str, str, str, str]]:
    """(group, key, first's value, second's value) for every flattened entry of `groups` that differs."""
    for group in groups:
        one, two = _flat(first.get(group) or {}), _flat(second.get(group) or {})
        for key in sorted(set(one) | set(two)):
            if one.get(key) != two.get(key):
                yield group, key, _short(one.get(key, "absent")), _short(two.get(key, "absent"))


def changed_inputs(recorded: Mapping[str, object], current: Mapping[str, object]) -> list[str]:
    """One line per entry that differs between two records of what shapes the output, e.g.
    `dataset default vfhq.min_face_px: 128 -> 96` (groups: config, defaults, libraries, models)."""
    groups = sorted(set(recorded) | set(current))
    return [
        f"{_GROUPS.get(group, group)} {key}: {was} -> {now}"
        for group, key, was, now in _differences(recorded, current, groups)
    ]


def disagreements(driver: Mapping[str, object], node: Mapping[str, object], where: str) -> list[str]:
    """One line per library or model file that differs between the driver's `node_inputs` and a node's,
    e.g. `library av: av 14.2.0 on the driver, av 13.1.0 on node 10.0.0.5`."""
    return [
        f"{_GROUPS[group]} {key}: {was} on the driver, {now} on {where}"
        for group, key, was, now in _differences(driver, node, ("libraries", "models"))
    ]


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 100 else text[:97] + "..."
