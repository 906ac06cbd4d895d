"""rp-animate follows a variable-rate driving video by time: frame j of the animation is driven by what the
video shows at j / its mean rate, and the written mp4 lasts as long as the video. rp-eval reads such a clip
the same way.

The driving video is a phone's: its frame durations wander (`variable_times`), so "frame j" is not "time
j / fps". Each of its frames carries its own number, drawn as six black or white blocks beside the face, so
the driving frames the model received can be read back from rp-animate's side-by-side output (source |
driving | result), and those of an evaluation clip from its crops, and compared with the frame shown at each
output frame's time, computed here from the times the file was written with.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from eval.clips import load_clip
from eval.frame_files import read_video
from model.animate import Animator, SamplingOptions, animate_files
from model.precision import Precision
from model.realportrait import RealPortrait
from model.views import strip_height
from pipeline.faces import open_detector
from pipeline.sample.recording import Recording, variable_times, write_recording
from pipeline.sample.render import Actor, Shot, render_video
from pipeline.split import Clip
from pipeline.video_file import VideoFile

SIZE, FPS, FRAMES = (384, 320), 25, 48
BITS = 6  # 2**6 > FRAMES


def number_blocks(face: tuple[float, float, float, float]) -> np.ndarray:
    """(BITS, 4) integer boxes of the blocks encoding a frame number: a column right of the face, inside the
    square the driving crop takes around it (2.2 face sides), clear of the face itself."""
    x0, y0, x1, y1 = face
    side, cx, cy = max(x1 - x0, y1 - y0), (x0 + x1) / 2, (y0 + y1) / 2
    tops = cy - 0.6 * side + 0.2 * side * np.arange(BITS)
    return np.round([[cx + 0.6 * side, top, cx + 0.85 * side, top + 0.2 * side] for top in tops]).astype(int)


@pytest.fixture(scope="module")
def phone_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A variable-rate talking head whose frame k shows k in its blocks: (file, write times, blocks)."""
    frames, geometry = render_video([Shot((Actor("t1_a", (0.5, 0.55), 84),), FRAMES, scene=4)], SIZE, seed=9)
    blocks = number_blocks(tuple(np.median([faces[0].box for faces in geometry], axis=0)))
    for number, frame in enumerate(frames):
        for bit, (x0, y0, x1, y1) in enumerate(blocks):
            frame[y0:y1, x0:x1] = 255 if number >> bit & 1 else 0
    times = variable_times(FRAMES, FPS, seed=5)
    path = write_recording(tmp_path_factory.mktemp("driving") / "phone.mp4", frames, FPS, Recording(times=times))
    return path, np.asarray(times), blocks


def shown_at_mean_rate(times: np.ndarray) -> tuple[float, list[int]]:
    """(the file's mean rate, the frame on screen at each time j / that rate), from the written times."""
    mean_fps = (FRAMES - 1) / times[-1]  # the last frame counted as long as the others
    shown = [int(np.argmin(np.abs(times - j / mean_fps))) for j in range(FRAMES)]
    assert shown != list(range(FRAMES))  # the video's rate varies enough for index and time to part
    return mean_fps, shown


def numbers(crops: np.ndarray, crop_box: tuple[int, int, int, int], blocks: np.ndarray) -> list[int]:
    """The frame number each square crop (cut at `crop_box` of the video) shows in its blocks."""
    x0, y0, x1, _ = crop_box
    size = crops.shape[1]
    centres = np.round(((blocks[:, :2] + blocks[:, 2:]) / 2 - (x0, y0)) * size / (x1 - x0)).astype(int)
    assert ((centres >= 2) & (centres < size - 2)).all()  # every block lies inside the crop
    found = []
    for crop in crops:
        means = [crop[y - 2 : y + 2, x - 2 : x + 2].mean() for x, y in centres]
        found.append(sum(1 << bit for bit, mean in enumerate(means) if mean > 128))
    return found


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory, vae_dir: Path) -> Path:
    """The tiny model with random weights and the small VAE: sampling quality is beside the point here."""
    folder = tmp_path_factory.mktemp("checkpoint") / "tiny"
    RealPortrait.from_preset("tiny").save_pretrained(folder)
    shutil.copytree(vae_dir, folder / "vae")
    return folder


def test_a_variable_rate_driving_video_drives_the_animation_by_time(
    phone_video: tuple[Path, np.ndarray, np.ndarray], random_checkpoint: Path, tmp_path: Path
) -> None:
    driving, times, blocks = phone_video
    mean_fps, shown = shown_at_mean_rate(times)
    source = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(source)
    animator = Animator.from_checkpoint(random_checkpoint, precision=Precision.resolve("cpu"))
    out, sbs = tmp_path / "out.mp4", tmp_path / "sbs.mp4"
    options = SamplingOptions(num_steps=1)
    result = animate_files(
        animator, source, driving, out, options=options, side_by_side_out=sbs, detector=open_detector()
    )

    animation = VideoFile(out)
    assert len(animation) == result.frames == FRAMES and not animation.variable_rate
    assert result.fps == pytest.approx(mean_fps, rel=1e-3)
    duration = float(animation.times[-1]) + 1 / animation.fps
    assert duration == pytest.approx(times[-1] + 1 / mean_fps, abs=2e-3)  # the driving video's duration

    size = animator.size
    received = read_video(sbs).frames[:, strip_height(size) :, size : 2 * size]  # source | driving | result
    assert numbers(received, result.driving_box, blocks) == shown


def test_rp_eval_reads_a_variable_rate_clip_by_time(phone_video: tuple[Path, np.ndarray, np.ndarray]) -> None:
    """The phone video as an evaluation clip (a processed CelebV-HQ file: the whole file is the clip)."""
    driving, times, blocks = phone_video
    mean_fps, shown = shown_at_mean_rate(times)
    clip = Clip(
        item_id="celebvhq/phone_0",
        dataset="celebvhq",
        native_id="phone_0",
        youtube_id="",
        identity=None,
        identity_kind="none",
        range=None,
        crop=None,
        media=driving.name,
        modality="video",
        media_cut=True,
        fps=None,
        fps_from=None,
        media_frames=FRAMES,
        sha256="0" * 64,
    )
    loaded = load_clip(clip, driving.parent, 128, open_detector())
    assert loaded.fps == pytest.approx(mean_fps, rel=1e-3)
    assert numbers(loaded.frames, loaded.crop_box, blocks) == shown
