"""rp-animate: overlapping windows blended at every step, the pipeline's crops, a playable mp4."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from evalkit import REPO
from PIL import Image

from eval.frame_files import read_video
from model.animate import Animator, SamplingOptions, sample_windows, window_starts, window_weights
from model.animate_cli import main as animate_main
from model.animate_cli import parser as animate_parser
from model.precision import Precision
from model.views import strip_height
from pipeline.video_file import VideoFile


@pytest.mark.parametrize(("length", "expected"), [(10, [0]), (16, [0]), (28, [0, 12]), (39, [0, 12, 23])])
def test_windows_cover_every_frame_and_end_at_the_last(length: int, expected: list[int]) -> None:
    starts = window_starts(length, 16, 4)
    assert starts == expected
    covered = np.zeros(length, int)
    for start in starts:
        covered[start : start + min(16, length)] += 1
    assert covered.min() >= 1 and starts[-1] + min(16, length) == length


def test_blending_weights_ramp_across_overlaps() -> None:
    first, middle = window_weights(0, 16, 40, 4), window_weights(12, 16, 40, 4)
    assert torch.all(first[:12] == 1) and torch.all(first[-4:] < 1)
    assert torch.allclose(first[-4:] + middle[:4], torch.ones(4))  # the shared frames' weights add up to 1
    assert torch.all(window_weights(0, 10, 10, 4) == 1)


def test_windowed_sampling_of_one_window_is_the_models_own_sampler(tiny_checkpoint: Path) -> None:
    """A video that fits one window is sampled exactly as `RealPortrait.sample` samples it."""
    animator = Animator.from_checkpoint(tiny_checkpoint, precision=Precision.resolve("cpu"))
    generator = torch.Generator().manual_seed(3)
    reference = torch.randn(1, 4, 16, 16, generator=generator)
    driving = torch.rand(1, 3, 6, 128, 128, generator=generator) * 2 - 1
    options = SamplingOptions(num_steps=2, seed=5)

    def motion(start: int, stop: int) -> torch.Tensor:
        return animator.model.encode_motion(driving[:, :, start:stop])

    with torch.no_grad():
        ours = sample_windows(animator.model, reference, motion, 6, options, fps=30.0)
    theirs = animator.model.sample(
        reference, driving, num_steps=2, fps=30.0, generator=torch.Generator().manual_seed(5)
    )
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_rp_animate_writes_a_video_of_the_driving_length(
    tiny_checkpoint: Path, sample_root: Path, tmp_path: Path
) -> None:
    source = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(source)
    driving = sample_root / "celebvhq" / "downloaded_celebvhq" / "processed" / "-xU_9kQ2mZ0_1.mp4"
    length = len(VideoFile(driving))
    assert length > 16  # longer than one window
    out, sbs = tmp_path / "out.mp4", tmp_path / "sbs.mp4"
    code = animate_main(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--source",
            str(source),
            "--driving",
            str(driving),
            "--out",
            str(out),
            "--side-by-side",
            str(sbs),
            "--steps",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0
    frames = read_video(out).frames
    assert frames.shape == (length, 128, 128, 3)
    assert VideoFile(out).fps == pytest.approx(VideoFile(driving).fps)
    assert frames.std() > 1  # not a constant image
    assert read_video(sbs).frames.shape[1:] == (strip_height(128) + 128, 384, 3)  # labels above 128 px panels


def test_rp_animate_names_what_is_wrong(tiny_checkpoint: Path, sample_root: Path, tmp_path: Path, capsys) -> None:
    driving = sample_root / "celebvhq" / "downloaded_celebvhq" / "processed" / "-xU_9kQ2mZ0_1.mp4"
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((256, 256, 3), 127, np.uint8)).save(blank)
    common = ["--driving", str(driving), "--out", str(tmp_path / "o.mp4"), "--steps", "1", "--no-progress"]
    assert animate_main(["--checkpoint", str(tiny_checkpoint), "--source", str(blank), *common]) == 2
    assert "no face was found in the source image" in capsys.readouterr().err
    assert animate_main(["--checkpoint", str(tmp_path), "--source", str(blank), *common]) == 2
    assert "not a RealPortrait checkpoint" in capsys.readouterr().err


def test_help_shows_an_example() -> None:
    assert "examples:" in animate_parser().format_help() and "rp-animate --checkpoint" in animate_parser().format_help()


def test_rp_animate_runs_in_bf16_autocast_on_the_cpu(tiny_checkpoint: Path, sample_root: Path, tmp_path: Path) -> None:
    """The GPU's precision path (--dtype bf16, autocast) run on the CPU: a playable video of the asked length."""
    source = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(source)
    driving = sample_root / "celebvhq" / "downloaded_celebvhq" / "processed" / "-xU_9kQ2mZ0_1.mp4"
    out = tmp_path / "bf16.mp4"
    arguments = ["--checkpoint", str(tiny_checkpoint), "--source", str(source), "--driving", str(driving)]
    options = ["--max-frames", "20", "--steps", "1", "--device", "cpu", "--dtype", "bf16", "--no-progress"]
    assert animate_main([*arguments, "--out", str(out), *options]) == 0
    frames = read_video(out).frames
    assert frames.shape == (20, 128, 128, 3) and frames.std() > 1


def rp_animate(*arguments: str) -> subprocess.CompletedProcess[str]:
    """The installed `rp-animate` command, run as a user runs it (a terminal's stderr is no pytest capture)."""
    command = [str(Path(sys.executable).with_name("rp-animate")), *arguments]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_an_export_animates_alone_quietly_and_counts_its_steps(
    tiny_checkpoint: Path, sample_root: Path, tmp_path: Path
) -> None:
    """No --vae (the export carries its VAE), no native log lines unless --verbose, a bar that counts steps."""
    source = tmp_path / "me.png"
    Image.fromarray(skimage.data.astronaut()).save(source)
    driving = sample_root / "celebvhq" / "downloaded_celebvhq" / "processed" / "-xU_9kQ2mZ0_1.mp4"
    common = ["--checkpoint", str(tiny_checkpoint), "--source", str(source), "--driving", str(driving)]
    quiet = rp_animate(*common, "--out", str(tmp_path / "a.mp4"), "--steps", "2", "--max-frames", "20")
    assert quiet.returncode == 0, quiet.stderr
    assert f"the VAE from {tiny_checkpoint / 'vae'}" in quiet.stdout
    assert "animating (2 windows)" in quiet.stdout and "2/2 denoising steps" in quiet.stdout  # not 4/4 windows
    assert quiet.stderr == ""
    verbose = rp_animate(*common, "--out", str(tmp_path / "b.mp4"), "--steps", "1", "--max-frames", "4", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "TensorFlow Lite" in verbose.stderr  # what the quiet run filtered out
    assert read_video(tmp_path / "a.mp4").frames.shape == (20, 128, 128, 3)


def test_rp_animate_checks_its_arguments_before_loading(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A missing --source with a real checkpoint: one line naming it, before the model code is even imported."""
    missing = tmp_path / "me.jpg"
    arguments = ["--checkpoint", str(tiny_checkpoint), "--source", str(missing), "--driving", str(missing)]
    script = (
        "import sys\nfrom model.animate_cli import main\ncode = main(sys.argv[1:])\n"
        "print(sorted(name for name in ('diffusers', 'mediapipe', 'model.realportrait') if name in sys.modules))\n"
        "sys.exit(code)"
    )
    command = [sys.executable, "-c", script, *arguments, "--out", str(tmp_path / "o.mp4")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == "[]\n", result.stdout + result.stderr
    assert result.stderr == f"rp-animate: error: argument --source: {missing}: no such file\n"


def test_an_export_whose_vae_is_gone_names_it(tiny_checkpoint: Path, vae_dir: Path, tmp_path: Path, capsys) -> None:
    checkpoint = Path(shutil.copytree(tiny_checkpoint, tmp_path / "export", ignore=shutil.ignore_patterns("vae")))
    image = tmp_path / "me.png"
    Image.fromarray(skimage.data.astronaut()).save(image)
    arguments = ["--checkpoint", str(checkpoint), "--source", str(image), "--driving", str(image)]
    assert animate_main([*arguments, "--out", str(tmp_path / "o.mp4")]) == 2
    captured = capsys.readouterr()
    assert f"{checkpoint / 'vae'} is missing. The export was made with the VAE at {vae_dir.resolve()}" in captured.err
    assert f"pass --vae {vae_dir.resolve()}" in captured.err and "loading the model" not in captured.out
    assert animate_main([*arguments, "--out", str(tmp_path / "o.mp4"), "--steps", "0"]) == 2
    assert "argument --steps: input should be greater than or equal to 1, got 0" in capsys.readouterr().err
    assert animate_main([*arguments, "--out", str(tmp_path / "o.mp4"), "--overlap", "16"]) == 2
    assert "the overlap (16) must be smaller than the window (16)" in capsys.readouterr().err
