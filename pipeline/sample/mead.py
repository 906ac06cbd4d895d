"""MEAD in its official per-actor layout: <actor>/video/<view>/<emotion>/level_<n>/<NNN>.mp4 + audio.

Enough takes that the README's split rule (last 10 neutral, last 6 of each other emotion are test)
leaves some training takes. W017 has only the 'down' view (as in the real release); M019 has its
video.tar but no extracted folder. The studio's cameras are not all alike, so neither are the files: the
front camera's are untagged 8-bit H.264 (read as BT.601), the 30-degree side camera records 4:2:2 BT.709,
and W017's session was filmed by a 10-bit HEVC camera (BT.2020). Planted: a zero-byte take.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from pipeline.sample.recording import Recording, write_recording
from pipeline.sample.render import Actor, Shot, render_video, write_audio

FPS = 30
SIZE = (320, 180)
FRAMES = 20
# actor -> portrait, and its takes as (view, emotion, level, take numbers)
ACTORS = {
    "M003": (
        "t1_b",
        [
            ("front", "neutral", 1, range(1, 13)),
            ("front", "angry", 1, range(1, 8)),
            ("left_30", "angry", 1, range(1, 3)),
        ],
    ),
    "W017": ("t1_f", [("down", "neutral", 1, range(1, 3))]),
}
UNTAGGED = Recording(matrix=None, crf=23)  # 8-bit H.264 naming neither matrix nor range
CAMERAS = {  # (actor, view) -> how that camera writes its files; UNTAGGED for the others
    ("M003", "left_30"): Recording(pix_fmt="yuv422p", crf=23),
    ("W017", "down"): Recording(codec="libx265", pix_fmt="yuv420p10le", matrix="bt2020", crf=23),
}
EMPTY = "M003/video/front/angry/level_1/003.mp4"
UNEXTRACTED = "M019"


def _empty_tar() -> bytes:
    """A small, byte-stable tar standing in for an actor's video.tar (contents are never read)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo("video/README")
        payload = b"not extracted\n"
        info.size, info.mtime = len(payload), 0
        archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def footage(rel: str) -> np.ndarray:
    """The frames of the take at `rel` (<actor>/video/<view>/...): its actor, seen from its camera's side."""
    actor, _, view = rel.split("/")[:3]
    offset = 0.06 * (view != "front")
    shot = Shot((Actor(ACTORS[actor][0], (0.5 + offset, 0.45), 80),), FRAMES, scene=41)
    frames, _ = render_video([shot], SIZE, seed=sum(map(ord, rel)))
    return frames


def write(root: Path) -> None:
    for actor, (_, takes) in ACTORS.items():
        for view, emotion, level, numbers in takes:
            for number in numbers:
                rel = f"{actor}/video/{view}/{emotion}/level_{level}/{number:03d}.mp4"
                path = root / rel
                if rel == EMPTY:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"")
                    continue
                write_recording(path, footage(rel), FPS, CAMERAS.get((actor, view), UNTAGGED))
                audio = root / f"{actor}/audio/{emotion}/level_{level}/{number:03d}.m4a"
                if not audio.exists():
                    write_audio(audio, FRAMES / FPS, seed=sum(map(ord, rel)))
    archive = root / UNEXTRACTED / "video.tar"
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(_empty_tar())
