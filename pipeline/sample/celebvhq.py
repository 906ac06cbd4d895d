"""CelebV-HQ in its official layout: celebvhq_info.json, downloaded_celebvhq/raw and /processed.

Clip keys of both forms (<ytid>_<k> and <ytid>_<k>_<j>), a YouTube id that begins with '-' and
contains '_', sparse clip indices, one clip that spans a scene cut, clips left unprocessed (the official
script ships its processing step commented out), so the build cuts them from the raw downloads. Those
downloads are what yt-dlp fetches: one is a phone recording (full-range BT.601 as Android cameras tag it,
stored on its side with a display matrix, at a variable frame rate), the other came as VP9 (yt-dlp's
fallback when YouTube offers no mp4 video stream) at its rendition's odd size. The annotation boxes and
times are of the video as displayed, upright, as the annotators saw it. Planted: a truncated processed clip.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.sample.files import even, face_box, truncate, write_json
from pipeline.sample.recording import Recording, write_recording
from pipeline.sample.render import Actor, FaceGeometry, Shot, render_video
from pipeline.sample.timeline import constant_rate_picks, constant_times, on_screen, shot_times
from pipeline.sources.celebvhq import official_crop

FPS = 25
APPEARANCE = (
    "blurry",
    "male",
    "young",
    "chubby",
    "pale_skin",
    "rosy_cheeks",
    "oval_face",
    "receding_hairline",
    "bald",
    "bangs",
    "black_hair",
    "blonde_hair",
    "gray_hair",
    "brown_hair",
    "straight_hair",
    "wavy_hair",
    "long_hair",
    "arched_eyebrows",
    "bushy_eyebrows",
    "bags_under_eyes",
    "eyeglasses",
    "sunglasses",
    "narrow_eyes",
    "big_nose",
    "pointy_nose",
    "high_cheekbones",
    "big_lips",
    "double_chin",
    "no_beard",
    "5_o_clock_shadow",
    "goatee",
    "mustache",
    "sideburns",
    "heavy_makeup",
    "wearing_earrings",
    "wearing_hat",
    "wearing_lipstick",
    "wearing_necklace",
    "wearing_necktie",
    "wearing_mask",
)
ACTION = (
    "blow",
    "chew",
    "close_eyes",
    "cough",
    "cry",
    "drink",
    "eat",
    "frown",
    "gaze",
    "glare",
    "head_wagging",
    "kiss",
    "laugh",
    "listen_to_music",
    "look_around",
    "make_a_face",
    "nod",
    "play_instrument",
    "read",
    "shake_head",
    "shout",
    "sigh",
    "sing",
    "sleep",
    "smile",
    "smoke",
    "sneer",
    "sneeze",
    "sniff",
    "talk",
    "turn",
    "weep",
    "whisper",
    "wink",
    "yawn",
)


@dataclass(frozen=True)
class Download:
    """One raw download: its displayed (upright) size, what it shows, and how its file was recorded."""

    size: tuple[int, int]
    shots: tuple[Shot, ...]
    recording: Recording
    variable_rate: bool = False


VIDEOS = {
    "-xU_9kQ2mZ0": Download(
        (384, 288),
        (
            Shot((Actor("t1_a", (0.45, 0.45), 110),), 40, scene=11),
            Shot((Actor("t1_b", (0.55, 0.5), 110),), 30, scene=12),
            Shot((Actor("astronaut", (0.5, 0.45), 120),), 30, scene=13),
        ),
        Recording(matrix="bt601", full_range=True, rotation=90, crf=23),
        variable_rate=True,
    ),
    "Yk7_pQ3vW1s": Download(
        (321, 241),
        (
            Shot((Actor("hanks", (0.5, 0.5), 100),), 50, scene=14),
            Shot((Actor("t1_f", (0.45, 0.45), 100),), 40, scene=15),
        ),
        Recording(codec="libvpx-vp9", crf=30),  # VP9 counts crf its own way: 30 sizes it like its H.264 siblings
    ),
}
# key -> (start_sec, end_sec, processed?)
CLIPS = {
    "-xU_9kQ2mZ0_1": (0.0, 1.56, True),
    "-xU_9kQ2mZ0_2_0": (1.2, 2.8, True),  # crosses the cut at 1.6 s
    "-xU_9kQ2mZ0_3": (2.8, 4.0, False),
    "Yk7_pQ3vW1s_0": (0.0, 2.0, True),
    "Yk7_pQ3vW1s_4": (2.0, 3.6, False),
}
TRUNCATED = "Yk7_pQ3vW1s_0"
EMOTION_SEGMENTS = {
    "-xU_9kQ2mZ0_2_0": [
        {"emotion": "neutral", "start_sec": 0.0, "end_sec": 0.4},
        {"emotion": "happy", "start_sec": 0.4, "end_sec": 1.6},
    ]
}


def footage(ytid: str) -> tuple[np.ndarray, list[list[FaceGeometry]], Recording]:
    """The upright frames of a download, their face geometry, and its recording with the frames' times."""
    download = VIDEOS[ytid]
    frames, geometry = render_video(download.shots, download.size, seed=sum(map(ord, ytid)))
    lengths = [shot.frames for shot in download.shots]
    times = shot_times(lengths, FPS, seed=sum(lengths)) if download.variable_rate else None
    return frames, geometry, replace(download.recording, times=times)


def processed_recording(raw: Recording) -> Recording:
    """How the official script's ffmpeg call re-encodes a cut: H.264 at a constant rate, turned upright,
    with the colour tags and range of its source."""
    return Recording(matrix=raw.matrix, full_range=raw.full_range, crf=23)


def write(root: Path) -> None:
    clips = {}
    for ytid, download in VIDEOS.items():
        frames, geometry, recording = footage(ytid)
        write_recording(root / "downloaded_celebvhq" / "raw" / f"{ytid}.mp4", frames, FPS, recording)
        times = recording.times or constant_times(len(frames), FPS)
        width, height = download.size
        for key in sorted(k for k in CLIPS if k.startswith(ytid)):
            start, end, processed = CLIPS[key]
            # CelebV-HQ boxes hold the head, not just the face: widen the face boxes' union by half
            fx0, fy0, fx1, fy1 = face_box([g for i in on_screen(times, start, end) for g in geometry[i]])
            grow_x, grow_y = (fx1 - fx0) / 4, (fy1 - fy0) / 4
            x0, y0 = max(fx0 - grow_x, 0.0), max(fy0 - grow_y, 0.0)
            x1, y1 = min(fx1 + grow_x, float(width)), min(fy1 + grow_y, float(height))
            bbox = {
                "top": round(y0 / height, 4),
                "bottom": round(y1 / height, 4),
                "left": round(x0 / width, 4),
                "right": round(x1 / width, 4),
            }
            if processed:
                _, window = official_crop(bbox, width, height)
                cx0, cy0, cx1, cy1 = (int(v) for v in window)
                cut = frames[constant_rate_picks(times, start, end, FPS), cy0:cy1, cx0:cx1]
                out = root / "downloaded_celebvhq" / "processed" / f"{key}.mp4"
                write_recording(out, even(cut), FPS, processed_recording(recording))
                if key == TRUNCATED:
                    truncate(out, 0.5)
            appearance = np.zeros(len(APPEARANCE), dtype=int)
            appearance[[1, 2, 28]] = 1
            emotion = (
                {"sep_flag": True, "labels": EMOTION_SEGMENTS[key]}
                if key in EMOTION_SEGMENTS
                else {"sep_flag": False, "labels": "neutral"}
            )
            action = np.zeros(len(ACTION), dtype=int)
            action[ACTION.index("talk")] = 1
            clips[key] = {
                "ytb_id": ytid,
                "duration": {"start_sec": start, "end_sec": end},
                "bbox": bbox,
                "attributes": {"appearance": appearance.tolist(), "action": action.tolist(), "emotion": emotion},
                "version": "v0.1",
            }
    write_json(
        root / "celebvhq_info.json",
        {"meta_info": {"appearance_mapping": APPEARANCE, "action_mapping": ACTION}, "clips": clips},
    )
