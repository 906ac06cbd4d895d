"""Dense face landmarks: mediapipe FaceMesh with irises (478 points) over clips and still images.

Clips are tracked (`static_image_mode=False`): FaceMesh detects once, then places each frame's region
from the previous frame's landmarks, which is faster than detecting every frame and keeps the points
temporally coherent. That state must not leak from one clip into the next (the first frame of a clip
would be meshed in a region fitted to another video; measured, it then loses the face on that frame),
so every `track` call starts a new run of the tracking graph. Restarting the run (`reset`) costs about
1 ms and keeps the graph's loaded models; building a fresh graph costs about 6 ms. Either way the first
frame of a clip pays for a detection: measured on one idle core, a clip's start costs ~16 ms with a
reset against ~24 ms with a fresh graph, and each tracked 512x512 frame after it ~4.5 ms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from mediapipe.python.solutions.face_mesh import FaceMesh

POINTS = 478  # mediapipe's canonical mesh (468) plus 5 points per iris, centres at 468 and 473


class LandmarkTracker(Protocol):
    def track(self, frames: Iterable[np.ndarray]) -> np.ndarray:
        """(T, POINTS, 2) float32 pixels over one clip's consecutive RGB uint8 frames; NaN where no face."""
        ...

    def single(self, image: np.ndarray) -> np.ndarray | None:
        """(POINTS, 2) float32 pixels of the most confident face in a still RGB uint8 image, or None."""
        ...

    def close(self) -> None: ...


class MediapipeLandmarker:
    """Both graphs load with the object (about 12 ms): create one per worker and reuse it for every item.

    FaceMesh's own detector is the short-range one, made for faces that fill much of the image: give it
    face-centred crops (the build's 512x512 crops are), not whole frames with small faces.
    """

    def __init__(self, min_score: float = 0.5):
        # imported here: mediapipe takes ~1 s to import, and `pipeline.faces` (which re-exports this
        # module's protocol) is imported by processes that never mesh a face
        from mediapipe.python.solutions import face_mesh

        options = {"max_num_faces": 1, "refine_landmarks": True, "min_detection_confidence": min_score}
        self._tracking = face_mesh.FaceMesh(static_image_mode=False, min_tracking_confidence=min_score, **options)
        self._static = face_mesh.FaceMesh(static_image_mode=True, **options)
        self._tracked = False  # whether the tracking run holds state from an earlier clip

    def track(self, frames: Iterable[np.ndarray]) -> np.ndarray:
        if self._tracked:
            self._tracking.reset()
        self._tracked = True
        rows = [_points(self._tracking, frame) for frame in frames]
        landmarks = np.full((len(rows), POINTS, 2), np.nan, np.float32)
        for t, row in enumerate(rows):
            if row is not None:
                landmarks[t] = row
        return landmarks

    def single(self, image: np.ndarray) -> np.ndarray | None:
        return _points(self._static, image)

    def close(self) -> None:
        self._tracking.close()
        self._static.close()


def _points(graph: FaceMesh, image: np.ndarray) -> np.ndarray | None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    faces = graph.process(np.ascontiguousarray(image)).multi_face_landmarks
    if not faces:
        return None
    height, width = image.shape[:2]
    normalized = np.array([(point.x, point.y) for point in faces[0].landmark], np.float32)
    return normalized * np.array([width, height], np.float32)
