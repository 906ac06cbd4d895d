"""Opening media just far enough to know they are usable: the `--probe` check of a scan.

A truncated download is the common failure: an mp4 cut before its index (moov) does not open, one cut
after it (a 'faststart' file) opens but its last packets are gone. So a video is opened, its first
frame decoded, and a packet read near its end; an image is fully decoded (PIL flags truncated
JPEG/PNG data only then). Nothing reads a whole video.
"""

from __future__ import annotations

from pathlib import Path

import av
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def probe_image(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


def probe_video(path: Path) -> None:
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        first = next(container.decode(stream), None)
        if first is None:
            raise ValueError("no decodable frame")
        if stream.duration:
            # any_frame: land on the packet the index lists near the end, not on the last keyframe,
            # which in a short clip is the first frame and always readable
            start = stream.start_time or 0
            container.seek(start + int(stream.duration * 0.95), stream=stream, any_frame=True, backward=True)
            tail = [packet for packet, _ in zip(container.demux(stream), range(2), strict=False) if packet.size]
            if not tail:
                raise ValueError("the index lists packets past the end of the file: it is truncated")


def probe_frames(path: Path) -> int:
    frames = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not frames:
        raise ValueError("no frame images in the folder")
    probe_image(frames[0])
    probe_image(frames[-1])
    return len(frames)


def probe(path: Path, modality: str) -> str | None:
    """None when usable, else a one-line reason."""
    try:
        if modality == "image":
            probe_image(path)
        elif modality == "video":
            probe_video(path)
        else:
            probe_frames(path)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()
    return None
