"""Reading frames from every media kind the adapters yield (video files, frame folders, images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.sources.probe import IMAGE_SUFFIXES
from pipeline.sources.records import SourceItem


def read_image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def middle_frame(item: SourceItem, root: Path) -> np.ndarray:
    """The frame in the middle of the item (of its annotated range when the media is still uncut)."""
    path = root / item.media_path
    if item.modality == "image":
        return read_image(path)
    if item.modality == "frames":
        files = frame_files(path)
        return read_image(files[len(files) // 2])
    from decord import VideoReader, cpu

    reader = VideoReader(str(path), ctx=cpu(0), num_threads=1)
    count = len(reader)
    index = count // 2
    if not item.media_cut and item.start is not None and item.end is not None:
        middle = (item.start + item.end) / 2
        index = round(middle * reader.get_avg_fps()) if item.time_unit == "sec" else round(middle)
    return reader[min(max(index, 0), count - 1)].asnumpy()
