"""TalkingHead-1KH in its official layout after videos_download_and_crop.sh (train and val).

The tubes are annotated at 1280x720 while the train video was "downloaded" at 640x360, so boxes must
be rescaled; S..E are chunk frame indices with E inclusive. One tube has no cropped clip (only its
1-min chunk). The downloads are YouTube's mp4 streams (what pytube fetches): H.264, BT.709-tagged, limited
range; the crop script's ffmpeg re-encode keeps those tags. Planted: a malformed tube line.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.sample.files import face_box, square_around, write_text
from pipeline.sample.recording import Recording, write_recording
from pipeline.sample.render import Actor, Shot, render_video

FPS = 25
RECORDING = Recording(crf=23)  # BT.709, limited range
# split -> ytid -> (downloaded size, annotated (W, H), shots, tubes as (S, E, write the cropped clip?))
VIDEOS = {
    "train": {
        "-_k2Lx9Qe0A": (
            (640, 360),
            (1280, 720),
            [
                Shot((Actor("t1_c", (0.4, 0.45), 120),), 48, scene=21),
                Shot((Actor("t1_d", (0.6, 0.45), 120),), 40, scene=22),
            ],
            [(0, 39, True), (50, 85, False)],
        )
    },
    "val": {
        "Qm3_r8Tz-Lw": (
            (512, 288),
            (512, 288),
            [Shot((Actor("t1_e", (0.5, 0.5), 110),), 40, scene=23)],
            [(2, 33, True)],
        )
    },
}
MALFORMED = "-_k2Lx9Qe0A_0000, 720, 1280, 10, 20, 100, 50"


def write(root: Path) -> None:
    for split, videos in VIDEOS.items():
        tubes = []
        for ytid, (size, annotated, shots, spans) in videos.items():
            frames, geometry = render_video(shots, size, seed=sum(map(ord, ytid)))
            raw = root / split / "raw_videos" / f"{ytid}.mp4"
            write_recording(raw, frames, FPS, RECORDING)
            chunk = f"{ytid}_0000"
            (root / split / "1min_clips").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(raw, root / split / "1min_clips" / f"{chunk}.mp4")  # -c copy of a <60 s video
            scale_x, scale_y = annotated[0] / size[0], annotated[1] / size[1]
            for first, last, cropped in spans:
                x0, y0, x1, y1 = square_around(
                    face_box([g for i in range(first, last + 1) for g in geometry[i]]), 2.0, *size
                )
                box = (int(x0 * scale_x), int(y0 * scale_y), int(x1 * scale_x), int(y1 * scale_y))
                tubes.append(f"{chunk}, {annotated[1]}, {annotated[0]}, {first}, {last}, " + ", ".join(map(str, box)))
                if cropped:
                    stem = f"{chunk}_S{first}_E{last}_L{box[0]}_T{box[1]}_R{box[2]}_B{box[3]}"
                    cut = frames[first : last + 1, y0:y1, x0:x1]
                    write_recording(root / split / "cropped_clips" / f"{stem}.mp4", cut, FPS, RECORDING)
            if split == "train":
                tubes.append(MALFORMED)
        write_text(root / "data_list" / f"{split}_video_ids.txt", list(videos))
        write_text(root / "data_list" / f"{split}_video_tubes.txt", tubes)
