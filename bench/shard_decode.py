"""Benchmark of decoding the project's own shard clips: the training reader (PyAV through the project's video
module) against decord and other PyAV routes.

    .venv/bin/python bench/shard_decode.py [--clips 6] [--frames 64] [--side 256] [--rounds 5]

Every reader of video goes through PyAV (`pipeline.video_file`); the training readers (training/examples.py,
validation.py, train_vae.py) used decord, which could have stayed only if it were the faster reader of the
project's own shard clips. It is not, so they read through `VideoFile.frames` too. This bench keeps the
evidence (decord is a dev dependency for it). In one run and on the same bytes (512x512 H.264 written by
`pipeline.encode.encode_h264` from rendered talking heads, as the build writes its clips), one thread each:

- decord: `VideoReader(BytesIO(mp4), num_threads=1, width=side, height=side).get_batch(indices)`;
- PyAV + OpenCV: `av.open(BytesIO(mp4))`, thread_count 1, `to_ndarray("rgb24")`, `cv2.resize` (area);
- PyAV reformat: the same decode, `frame.reformat(width=side, height=side, format="rgb24")` (swscale);
- training reader: `VideoFile(mp4).frames(indices, side, side)`, what training calls: the timeline read
  from the packets, the YUV planes resized before the colour conversion with the stream's matrix.

Two access patterns: a whole 16-frame clip, and what a stage-2 training example takes from a longer clip
(a random 16-frame window plus a random reference frame). Each reader decodes from the keyframe before
the first frame it needs, as both libraries must. Printed: frames delivered per second (the best round of
`--rounds`, the readers interleaved) and each reader's speed over decord's.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
# This file is bench/shard_decode.py: put the repository first so `pipeline` is the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av
import cv2
import numpy as np
from decord import VideoReader, cpu

from pipeline.encode import encode_h264
from pipeline.sample.render import Actor, Shot, render_video
from pipeline.video_file import VideoFile

PORTRAITS = ("astronaut", "t1_a", "t1_b", "t1_e", "hanks", "t1_c")
WINDOW = 16  # the paper's clip length L
FPS = 25
Reader = Callable[[bytes, Sequence[int], int], np.ndarray]  # (mp4, ascending frame indices, side) -> frames


def shard_clips(count: int, frames: int) -> list[bytes]:
    """Shard-like clips: one talking head per 512x512 clip, encoded as the build encodes its samples."""
    clips = []
    for index in range(count):
        shot = Shot((Actor(PORTRAITS[index % len(PORTRAITS)], (0.5, 0.5), 230),), frames, scene=index)
        rendered, _ = render_video([shot], (512, 512), seed=index)
        clips.append(encode_h264(rendered, FPS))
    return clips


def decord_frames(mp4: bytes, indices: Sequence[int], side: int) -> np.ndarray:
    reader = VideoReader(io.BytesIO(mp4), ctx=cpu(0), num_threads=1, width=side, height=side)
    return reader.get_batch(list(indices)).asnumpy()


def pyav_frames(convert: Callable[[av.VideoFrame, int], np.ndarray]) -> Reader:
    """A PyAV reader decoding sequentially up to the last wanted frame, converting only the wanted ones."""

    def read(mp4: bytes, indices: Sequence[int], side: int) -> np.ndarray:
        wanted, last, out = set(indices), max(indices), []
        with av.open(io.BytesIO(mp4)) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            for number, frame in enumerate(container.decode(stream)):
                if number in wanted:
                    out.append(convert(frame, side))
                if number >= last:
                    break
        return np.stack(out)

    return read


def resized_by_cv2(frame: av.VideoFrame, side: int) -> np.ndarray:
    return cv2.resize(frame.to_ndarray(format="rgb24"), (side, side), interpolation=cv2.INTER_AREA)


def reformatted(frame: av.VideoFrame, side: int) -> np.ndarray:
    return frame.reformat(width=side, height=side, format="rgb24").to_ndarray()


def training_reader(mp4: bytes, indices: Sequence[int], side: int) -> np.ndarray:
    return VideoFile(mp4).frames(indices, side, side)


READERS: dict[str, Reader] = {
    "decord": decord_frames,
    "PyAV + cv2.resize": pyav_frames(resized_by_cv2),
    "PyAV reformat": pyav_frames(reformatted),
    "training reader": training_reader,
}


def patterns(frames: int, clips: int, seed: int = 0) -> dict[str, list[list[int]]]:
    """Frame indices each clip is asked for, per access pattern (the same for every reader)."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(clips):
        start = int(rng.integers(0, frames - WINDOW + 1))
        examples.append(sorted({int(rng.integers(0, frames)), *range(start, start + WINDOW)}))
    return {"whole 16-frame clip": [list(range(WINDOW))] * clips, "training example": examples}


def timed(reader: Reader, clips: list[bytes], asks: list[list[int]], side: int) -> tuple[float, int]:
    began, delivered = time.perf_counter(), 0
    for mp4, indices in zip(clips, asks, strict=True):
        delivered += len(reader(mp4, indices, side))
    return time.perf_counter() - began, delivered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=6, help="shard clips to decode per round")
    parser.add_argument("--frames", type=int, default=64, help="frames per clip (training draws a window of 16)")
    parser.add_argument("--side", type=int, default=256, help="the training side frames are shrunk to")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best of each reader is reported")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    short = shard_clips(args.clips, WINDOW)
    long = shard_clips(args.clips, args.frames)
    asks = patterns(args.frames, args.clips)
    inputs = {"whole 16-frame clip": short, "training example": long}
    check = {name: reader(long[0], asks["training example"][0], args.side) for name, reader in READERS.items()}
    for name, frames in check.items():  # the readers must agree on which frames they deliver
        error = np.abs(frames.astype(int) - check["decord"].astype(int)).mean()
        if frames.shape != check["decord"].shape or error > 4:
            raise SystemExit(f"{name} delivers other frames than decord (shape {frames.shape}, mean error {error:.1f})")
    side = f"{args.side}x{args.side}"
    print(f"{args.clips} clips of 512x512 H.264, frames shrunk to {side}, one thread, best of {args.rounds} rounds")
    for pattern, clips in inputs.items():
        best = dict.fromkeys(READERS, np.inf)
        for _ in range(args.rounds):
            for name, reader in READERS.items():
                seconds, delivered = timed(reader, clips, asks[pattern], args.side)
                best[name] = min(best[name], seconds / delivered)
        print(f"\n{pattern}:")
        for name, per_frame in best.items():
            ratio = best["decord"] / per_frame
            print(f"  {name:<20} {1 / per_frame:8.0f} frames/s   {ratio:5.2f}x decord")


if __name__ == "__main__":
    main()
