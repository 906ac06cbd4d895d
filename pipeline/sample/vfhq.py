"""VFHQ: meta_info/{train,test}/Clip+....txt, the processed frame release, and a downloaded source.

Two people in one source video (P0 and P1), one test clip that only exists as a downloaded source
video. Planted: a malformed frame line in one meta file.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.sample.files import face_box, square_around, write_text
from pipeline.sample.render import Actor, Shot, render_video, write_jpeg, write_mp4

FPS = 25.0
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


def write(root: Path) -> None:
    for ytid, (split, size, offset, shot, clips, frames_release) in VIDEOS.items():
        frames, geometry = render_video([shot], size, seed=sum(map(ord, ytid)))
        if not frames_release:
            write_mp4(root / "raw" / f"{ytid}.mp4", frames, FPS)
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
