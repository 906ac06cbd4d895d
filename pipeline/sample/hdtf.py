"""HDTF: the repository's annotation files (HDTF_dataset/) and the community downloader's output.

Reproduced traps: the byte-order mark of WDA_video_url.txt, a URL with '&t=', unordered intervals,
an interval without a crop window (the downloader then numbers clips over the cropped intervals only),
two names sharing one YouTube id (an alias), a video without intervals, a clip present only as the raw
download. Every file is a YouTube HD download: H.264, BT.709-tagged, limited range (the downloader's
ffmpeg cut keeps those tags). Planted: a clip whose crop window holds no face.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.sample.files import face_box, square_around, write_text
from pipeline.sample.recording import Recording, write_recording
from pipeline.sample.render import Actor, Shot, render_video

FPS = 25
SIZE = (640, 360)
RECORDING = Recording(crf=23)  # BT.709, limited range
# subset -> name -> (ytid, url suffix, intervals in seconds, which have crop windows, write clips?, shots)
VIDEOS = {
    "RD": {
        "Radio3": ("Rr4_Tt5-Yy6", "", [(0, 2)], [0], True, [Shot((), 50, scene=35)]),  # the faceless clip
        "Radio9": ("Uu7-Ii8_Oo9", "", [], [], False, []),
    },
    "WDA": {
        "JaneDoe0": (
            "aB3-dE_fG4h",
            "",
            [(0, 2), (2, 4)],
            [0, 1],
            True,
            [Shot((Actor("t1_e", (0.5, 0.45), 110),), 100, scene=31)],
        ),
        "JaneDoe1": (
            "Zx8_yW7-vU6",
            "&t=6s",
            [(1, 3)],
            [0],
            False,
            [Shot((Actor("t1_e", (0.45, 0.5), 100),), 80, scene=32)],
        ),
    },
    "WRA": {
        "JohnRoe": (
            "Qq1-Ww2_Ee3",
            "",
            [(2, 4), (0, 2)],
            [1],
            True,
            [Shot((Actor("hanks", (0.5, 0.45), 110),), 100, scene=33)],
        ),
        "WhipJohnRoe": (
            "Qq1-Ww2_Ee3",
            "",
            [(0, 2)],
            [0],
            True,
            [Shot((Actor("hanks", (0.5, 0.45), 110),), 100, scene=33)],
        ),
        # two more speakers whose faces the sample's evaluation split also shows (in its VFHQ and CelebV-HQ
        # clips, under other identity labels), each in the scenery (studio) of those clips: `make demo-train`
        # trains on them, so its held-out clips show people and places it has learnt, in motion it has not seen
        "AnnaRoe": (
            "Hh4-Jj5_Kk6",
            "",
            [(0, 2), (2, 4)],
            [0, 1],
            True,
            [
                Shot((Actor("t1_a", (0.5, 0.45), 110),), 50, scene=52),
                Shot((Actor("t1_a", (0.5, 0.45), 110),), 50, scene=11),
            ],
        ),
        "FayRoe": (
            "Ll7_Mm8-Nn7",
            "",
            [(0, 2), (2, 4)],
            [0, 1],
            True,
            [Shot((Actor("t1_f", (0.5, 0.45), 110),), 100, scene=15)],
        ),
    },
}
NO_FACE_WINDOW = (400, 40, 560, 200)  # x0, y0, x1, y1 of Radio3's crop: scenery only


def _clock(seconds: int) -> str:
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def write(root: Path) -> None:
    annotations = root / "HDTF_dataset"
    for sub, videos in VIDEOS.items():
        urls, resolutions, times, crops, ratios = [], [], [], [], []
        for name, (ytid, suffix, spans, cropped, clips, shots) in videos.items():
            urls.append(f"{name} https://www.youtube.com/watch?v={ytid}{suffix}")
            resolutions.append(f"{name}.mp4 {SIZE[1]}")
            if spans:
                times.append(f"{name}.mp4 " + " ".join(f"{_clock(a)}-{_clock(b)}" for a, b in spans))
            if not shots:
                continue
            frames, geometry = render_video(shots, SIZE, seed=sum(map(ord, ytid)))
            if not clips:
                write_recording(root / "_videos_raw" / f"{sub}_{name}.mp4", frames, FPS, RECORDING)
            for index, k in enumerate(cropped):
                first, last = spans[k][0] * FPS, spans[k][1] * FPS
                window = (
                    NO_FACE_WINDOW
                    if not geometry[first]
                    else square_around(face_box([g for i in range(first, last) for g in geometry[i]]), 2.0, *SIZE)
                )
                x0, y0, x1, y1 = window
                crops.append(f"{name}_{k}.mp4 {x0} {x1 - x0} {y0} {y1 - y0}")
                ratios.append(f"{name}_{k}.mp4 1.0")
                if clips:
                    write_recording(
                        root / f"{sub}_{name}_{index:03d}.mp4", frames[first:last, y0:y1, x0:x1], FPS, RECORDING
                    )
        write_text(annotations / f"{sub}_video_url.txt", urls, bom=sub == "WDA")
        write_text(annotations / f"{sub}_resolution.txt", resolutions)
        write_text(annotations / f"{sub}_annotion_time.txt", times)
        write_text(annotations / f"{sub}_crop_wh.txt", crops)
        write_text(annotations / f"{sub}_crop_ratio.txt", ratios)
