"""mediapipe's BlazeFace full-range detector (the short-range one misses faces that are not selfies)."""

from __future__ import annotations

import numpy as np
from mediapipe.python.solutions import face_detection

from pipeline.faces.base import Face


class MediapipeDetector:
    def __init__(self, min_score: float = 0.5):
        self._model = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_score)

    def detect(self, image: np.ndarray) -> list[Face]:
        height, width = image.shape[:2]
        result = self._model.process(np.ascontiguousarray(image))
        faces = []
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            x0, y0 = box.xmin * width, box.ymin * height
            points = np.array([[p.x * width, p.y * height] for p in detection.location_data.relative_keypoints])
            faces.append(
                Face((x0, y0, x0 + box.width * width, y0 + box.height * height), float(detection.score[0]), points)
            )
        return sorted(faces, key=lambda face: -face.score)

    def close(self) -> None:
        self._model.close()
