"""Face detection and landmarks behind one protocol each, so backends can be swapped.

mediapipe is the default because its wheel ships its models; other backends read their model files from
a local folder (nothing is downloaded at run time). Call `limit_threads()` first in a worker process.
"""

from __future__ import annotations

import os

from pipeline.faces.base import Face, FaceDetector, labelled_face, prominent
from pipeline.faces.landmarks import POINTS, LandmarkTracker, MediapipeLandmarker
from pipeline.faces.threads import THREAD_ENV, limit_threads

BACKENDS = ("mediapipe", "insightface")
LANDMARK_BACKENDS = ("mediapipe",)


def open_detector(
    backend: str = "mediapipe",
    min_score: float = 0.5,
    *,
    model_dir: str | os.PathLike | None = None,
    threads: int = 1,
) -> FaceDetector:
    """A detector for whole frames; load once per worker and reuse (model loading costs ~100 ms).

    `model_dir` is the folder holding insightface's SCRFD file (an unzipped model pack such as buffalo_l;
    default ~/.insightface/models/buffalo_l) and `threads` its onnxruntime intra-op thread count;
    mediapipe's model ships in its wheel and runs on one thread, so it ignores both.
    """
    if backend == "mediapipe":
        from pipeline.faces.mediapipe_backend import MediapipeDetector

        return MediapipeDetector(min_score=min_score)
    if backend == "insightface":
        from pipeline.faces.scrfd_backend import ScrfdDetector

        return ScrfdDetector(model_dir, min_score, threads=threads)
    raise ValueError(f"unknown face backend {backend!r}; available: {', '.join(BACKENDS)}")


def open_landmarker(backend: str = "mediapipe", min_score: float = 0.5) -> LandmarkTracker:
    """A 478-point landmarker for clips (`track`) and still images (`single`); one per worker, reused."""
    if backend == "mediapipe":
        return MediapipeLandmarker(min_score=min_score)
    raise ValueError(f"unknown landmark backend {backend!r}; available: {', '.join(LANDMARK_BACKENDS)}")


__all__ = [
    "BACKENDS",
    "LANDMARK_BACKENDS",
    "POINTS",
    "THREAD_ENV",
    "Face",
    "FaceDetector",
    "LandmarkTracker",
    "labelled_face",
    "limit_threads",
    "open_detector",
    "open_landmarker",
    "prominent",
]
