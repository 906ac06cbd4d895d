"""MEAD in its official per-actor layout: <actor>/video/<view>/<emotion>/level_<n>/<NNN>.mp4 + audio.

Enough takes that the README's split rule (last 10 neutral, last 6 of each other emotion are test)
leaves some training takes. W017 has only the 'down' view (as in the real release); M019 has its
video.tar but no extracted folder. Planted: a zero-byte take.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from pipeline.sample.render import Actor, Shot, render_video, write_audio, write_mp4

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


def write(root: Path) -> None:
    for actor, (portrait, takes) in ACTORS.items():
        for view, emotion, level, numbers in takes:
            for number in numbers:
                rel = f"{actor}/video/{view}/{emotion}/level_{level}/{number:03d}.mp4"
                path = root / rel
                if rel == EMPTY:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"")
                    continue
                seed = sum(map(ord, rel))
                offset = 0.06 * (view != "front")
                frames, _ = render_video(
                    [Shot((Actor(portrait, (0.5 + offset, 0.45), 80),), FRAMES, scene=41)], SIZE, seed=seed
                )
                write_mp4(path, frames, FPS)
                audio = root / f"{actor}/audio/{emotion}/level_{level}/{number:03d}.m4a"
                if not audio.exists():
                    write_audio(audio, FRAMES / FPS, seed=seed)
    archive = root / UNEXTRACTED / "video.tar"
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(_empty_tar())
