"""VFHQ: meta_info/{train,test}/Clip+....txt, the processed frame release, and a downloaded source.

Two people in one source video (P0 and P1), one test clip that only exists as a downloaded source
video, a YouTube HD download (H.264, BT.709-tagged, limited range). Planted: a malformed frame line in one
meta file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.sample.files import face_box, square_around, write_text
from pipeline.sample.recording import Recording, write_recording
from pipeline.sample.render import Actor, FaceGeometry, Shot, render_video, write_jpeg

FPS = 25.0
RECORDING = Recording(crf=23)  # BT.709, limited range
# ytid -> (split, source size, first source frame rendered, shot, clips as (pid, clip index, F start, F end),
#          write the processed frames (else the source video))
VIDEOS = {
    "Ab3_dE-7fGh": (
        "train",
        (640, 360),
        100,
        Shot((Actor("t1_b", (0.3, 0.45), 110), Actor("t1_c", (0.72, 0.5), 110)), 31, scene=51),
        [(0, 0, 100, 130), (1, 1, 100, 130)],
        True,
    ),
    "Zz9-yX_8wVu": (
        "test",
        (512, 288),
        0,
        Shot((Actor("t1_a", (0.5, 0.45), 120),), 60, scene=52),
        [(0, 2, 10, 50)],
        False,
    ),
}
MALFORMED = "Clip+Ab3_dE-7fGh+P1+C1+F100-130"


def footage(ytid: str) -> tuple[np.ndarray, list[list[FaceGeometry]]]:
    """The frames of a source video from its first rendered frame on, and their face geometry."""
    _, size, _, shot, _, _ = VIDEOS[ytid]
    return render_video([shot], size, seed=sum(map(ord, ytid)))


def write(root: Path) -> None:
    for ytid, (split, size, offset, _, clips, frames_release) in VIDEOS.items():
        frames, geometry = footage(ytid)
        if not frames_release:
            write_recording(root / "raw" / f"{ytid}.mp4", frames, FPS, RECORDING)
        for pid, index, first, last in clips:
            name = f"Clip+{ytid}+P{pid}+C{index}+F{first}-{last}"
            faces = [next(g for g in geometry[f - offset] if g.actor == pid) for f in range(first, last + 1)]
            x0, y0, x1, y1 = square_around(face_box(faces), 2.0, *size)
            lines = [
                f"Video ID: {ytid}",
                f"H: {size[1]}",
                f"W: {size[0]}",
                f"FPS: {FPS}",
                "",
                "FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]",
                "",
            ]
            for frame, face in zip(range(first, last + 1), faces, strict=True):
                bx0, by0, bx1, by1 = face.box
                points = " ".join(f"{v:.3f}" for v in face.points.reshape(-1))
                lines.append(f"{frame} {pid:08d} {bx0:.3f} {by0:.3f} {bx1 - bx0:.3f} {by1 - by0:.3f} {points}")
            if name == MALFORMED:
                lines[len(lines) // 2] = f"{first + 5} {pid:08d} 12.0 14.0 60.0"
            lines.append(f"CROP: {x0} {y0} {x1} {y1}")
            write_text(root / "meta_info" / split / f"{name}.txt", lines)
            if frames_release:
                for number, frame in enumerate(range(first + 1, last), start=1):
                    write_jpeg(
                        root / "frames" / name / f"{number:08d}.jpg", frames[frame - offset, y0:y1, x0:x1], quality=90
                    )
