"""Scene cuts from the frames the build already decoded (PySceneDetect's detector, fed directly).

Feeding the detector the decoded frames, shrunk to a small width, avoids the second decode that
running PySceneDetect on the file would cost; at 160 px wide the HSV difference still separates cuts
(score 36-68) from motion within a shot (2-4) on the sample, as at PySceneDetect's own downscale.
"""

from __future__ import annotations

import cv2
import numpy as np
from scenedetect import FrameTimecode
from scenedetect.detectors import ContentDetector


class SceneCuts:
    """Feed frames in order; `cuts` holds the indices of frames that start a new shot."""

    def __init__(self, fps: float, threshold: float, width: int, min_scene_frames: int):
        self._detector = ContentDetector(threshold=threshold, min_scene_len=min_scene_frames)
        self._fps = float(fps)
        self._width = width
        self._index = 0
        self.cuts: list[int] = []

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """The (even) size frames of width x height are analysed at: decode straight to it."""
        return self._width, max(2, round(height * self._width / width / 2) * 2)

    def feed(self, frames: np.ndarray) -> list[int]:
        """Cuts found while feeding this batch (a cut index is the first frame of the new shot)."""
        found = []
        for frame in frames:
            if frame.shape[1] != self._width:  # callers that decode to this width already save the resize
                height = max(2, round(frame.shape[0] * self._width / frame.shape[1]))
                frame = cv2.resize(frame, (self._width, height), interpolation=cv2.INTER_AREA)
            small = frame[..., ::-1]
            for cut in self._detector.process_frame(FrameTimecode(self._index, self._fps), np.ascontiguousarray(small)):
                found.append(cut.frame_num)
            self._index += 1
        self.cuts.extend(found)
        return found
