"""The installed version of every library a metric's number depends on, read from the installed distributions.

Why: a version written as fixed text goes stale as soon as the pin allows another release, and two rows of
a table can come from environments with different libraries. So each run records what was installed when
it ran (`run.json` "versions") and the table footer prints it, flagging rows that differ.

What is recorded follows the code's imports, not the project's dependency list: per metric the modules
its scoring path imports, each named by the distribution that installed it here
(`importlib.metadata.packages_distributions`). So `cv2` is reported as whichever of opencv-python,
opencv-contrib-python or opencv-python-headless provides it (all of them when several do: which one's
files won is not recorded anywhere), and `onnxruntime` as onnxruntime or onnxruntime-gpu. PyAV's entry
adds the FFmpeg libraries it links, which decode every frame scored.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import Distribution, distributions, packages_distributions, version

NOT_INSTALLED = "not installed"
FFMPEG = "FFmpeg"

# Every metric scores frames read and cropped by the same code: PyAV decodes video (eval.clips,
# pipeline.video_file, eval.frame_files), OpenCV converts colour and resizes (pipeline.video_file,
# pipeline.decode, pipeline.crops), Pillow reads and writes PNG frames and portraits (pipeline.decode,
# eval.frame_files, eval.inputs), and mediapipe's detector places the crop (pipeline.faces, eval.run).
FRAMES = ("numpy", "av", "cv2", "PIL", "mediapipe")
PIXELS = ("torch", "torchmetrics")  # eval.metrics.pixel
LPIPS = ("torch", "torchvision", "lpips")  # eval.metrics.perceptual: lpips' AlexNet is torchvision's
DLIB = ("dlib", "face_recognition_models")  # eval.metrics.identity, DlibIdentity: the network and its files
# ArcfaceIdentity: onnxruntime runs the network; insightface's norm_crop aligns, with scikit-image's
# similarity transform and OpenCV's warp; the five points come from mediapipe's FaceMesh (in FRAMES)
ARCFACE = ("onnxruntime", "insightface", "skimage")
FACE_MOTION = ()  # eval.metrics.face_motion: mediapipe's FaceMesh and OpenCV's solvePnP, both in FRAMES
MODULES: dict[str, tuple[str, ...]] = {
    "L1": PIXELS,
    "PSNR": PIXELS,
    "SSIM": PIXELS,
    "LPIPS": LPIPS,
    "tLP": LPIPS,
    "FID": ("torch", "torch_fidelity"),  # eval.metrics.fid and .frechet
    "FVD": ("torch", "cdfvd", "torch_fidelity"),  # cd-fvd's I3D, torch-fidelity's Fréchet distance
    "CSIM-dlib": DLIB,
    "CSIM-dlib-driver": DLIB,
    "CSIM-dlib-leak": DLIB,
    "CSIM-arcface": ARCFACE,
    "CSIM-arcface-driver": ARCFACE,
    "CSIM-arcface-leak": ARCFACE,
    "AED": FACE_MOTION,
    "AED-legacy-abs": FACE_MOTION,
    "APD": FACE_MOTION,
}


@cache
def _declared() -> dict[str, list[str]]:
    return packages_distributions()


def providers(module: str) -> list[str]:
    """The installed distributions that provide the top-level import `module` (empty when none does).

    Distributions declare their modules in top_level.txt, which is not always complete (dlib-bin declares
    only `_dlib_pybind11` but installs `dlib/`), so an undeclared module is looked up in the files each
    distribution installed.
    """
    declared = _declared().get(module)
    if declared:
        return sorted(set(declared))
    return sorted({dist.metadata["Name"] for dist in distributions() if module in _top_modules(dist)})


def _top_modules(dist: Distribution) -> set[str]:
    """The top-level names a distribution's files occupy: `dlib` for dlib/, `_x` for _x.cpython-311-....so."""
    return {file.parts[0].split(".", 1)[0] for file in dist.files or ()}


def ffmpeg() -> str:
    """The version of each FFmpeg library PyAV links (a wheel bundles its own build, so PyAV's version
    alone does not say which decoder ran)."""
    import av

    return ", ".join(f"{name} {'.'.join(map(str, v))}" for name, v in sorted(av.library_versions.items()))


def module_versions(modules: tuple[str, ...]) -> dict[str, str]:
    """{distribution: installed version} for the distributions providing `modules`; a module that no
    installed distribution provides is recorded under its own name as not installed."""
    found: dict[str, str] = {}
    for module in modules:
        names = providers(module)
        found.update({name: version(name) for name in names} if names else {module: NOT_INSTALLED})
        if module == "av" and names:
            found[FFMPEG] = ffmpeg()
    return found


def metric_versions(metrics: tuple[str, ...] | list[str]) -> dict[str, dict[str, str]]:
    """metric -> {distribution: installed version} for every metric of a run; a metric not listed in
    MODULES (a new column) records the frame-reading libraries every metric shares."""
    return {metric: module_versions((*FRAMES, *MODULES.get(metric, ()))) for metric in metrics}
