"""Face detection (and, for the build, landmarks) behind one protocol, so backends can be swapped.

mediapipe is the default because its wheel ships its models; other backends read their model files from
a local folder (nothing is downloaded at run time).
"""

from __future__ import annotations

from pipeline.faces.base import Face, FaceDetector, prominent

BACKENDS = ("mediapipe",)


def open_detector(backend: str = "mediapipe", min_score: float = 0.5) -> FaceDetector:
    """A detector for whole frames; load once per worker and reuse (model loading costs ~100 ms)."""
    if backend == "mediapipe":
        from pipeline.faces.mediapipe_backend import MediapipeDetector

        return MediapipeDetector(min_score=min_score)
    raise ValueError(f"unknown face backend {backend!r}; available: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Face", "FaceDetector", "open_detector", "prominent"]
