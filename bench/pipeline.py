"""Benchmark of `rp-data build`: how close the whole pipeline comes to the cost of its own stages.

    .venv/bin/python bench/pipeline.py [--videos 8] [--frames 200] [--root DIR]

In one run, on the same input: each stage alone (decode, scene cuts, face detection on every k-th
frame, crop and resize, landmarks, pose and blur, H.264, packaging), timed per frame in this process;
then the real build (Ray actors with their models loaded, work shards of one video each) with 1 and
with 2 workers. The composite floor is 1 / (sum of the stages' seconds per frame): what a pipeline that
decodes each frame once and hands it on for free would reach on one core. It prints

    end-to-end (1 worker) / composite floor     the overhead of everything that is not a stage
    end-to-end (2 workers) / end-to-end (1)     how the build scales over cores

Absolute frames/s vary between runs on a shared machine; the ratios are measured in one run.
The input is a MEAD-layout folder of rendered talking-head videos (640x360, 25 fps), written by this
script unless --root points at one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

# worker threads as the build sets them, before numpy loads
os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
# This file is bench/pipeline.py: put the repository first so `pipeline` is the package, not this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from manifests.schema import get_spec
from pipeline.build import Runner, WorkShard, plan_shards, scan_sources
from pipeline.config import BuildConfig
from pipeline.controls import face_box_from_landmarks, head_pose, sharpness
from pipeline.decode import open_frames
from pipeline.encode import encode_h264
from pipeline.faces import open_detector, open_landmarker
from pipeline.faces.threads import limit_threads
from pipeline.process import _crop_resize, _detect, _members
from pipeline.scenes import SceneCuts
from pipeline.sources.records import SourceItem
from pipeline.tracking import face_runs, stable_crop

PORTRAITS = ("astronaut", "t1_a", "t1_b", "t1_e")  # the ones the detector finds on every frame


def write_input(root: Path, videos: int, frames: int) -> None:
    from pipeline.sample.render import Actor, Shot, render_video, write_mp4

    for index in range(videos):
        actor = Actor(PORTRAITS[index % len(PORTRAITS)], (0.45 + 0.03 * (index % 4), 0.45), 130)
        clip, _ = render_video([Shot((actor,), frames, scene=60 + index)], (640, 360), seed=index)
        write_mp4(root / f"M{index + 1:03d}/video/front/neutral/level_1/001.mp4", clip, 25)


def stage_seconds(items: list[SourceItem], root: Path, cfg: BuildConfig, defaults) -> tuple[dict[str, float], int]:  # type: ignore[no-untyped-def]
    """Each stage alone over every video; frames are decoded once here and reused by the later stages."""
    limit_threads()
    detector, landmarker = open_detector(), open_landmarker()
    seconds = dict.fromkeys(("decode", "scenes", "detect", "crop", "landmarks", "pose+blur", "encode", "package"), 0.0)
    frames_total = 0
    for item in items:
        began = time.perf_counter()
        stream = open_frames(item, root, defaults.target_fps)
        frames = np.concatenate(list(stream.batches()))
        seconds["decode"] += time.perf_counter() - began
        frames_total += len(frames)

        began = time.perf_counter()
        cuts = SceneCuts(stream.fps, cfg.scene_threshold, cfg.scene_width, 8)
        for start in range(0, len(frames), 16):
            cuts.feed(frames[start : start + 16])
        seconds["scenes"] += time.perf_counter() - began

        began = time.perf_counter()
        sampled = sorted({*range(0, len(frames), cfg.detect_every), len(frames) - 1})
        detections = {i: _detect(detector, frames[i], cfg.detect_max_side) for i in sampled}
        seconds["detect"] += time.perf_counter() - began

        run = face_runs(detections, len(frames), cfg.filters.prominent_ratio)[0]
        began = time.perf_counter()
        box = stable_crop(run.boxes, cfg.crop_scale, frames.shape[2], frames.shape[1])
        crops = _crop_resize(frames[run.start : run.stop], box, cfg.output_size)
        seconds["crop"] += time.perf_counter() - began

        began = time.perf_counter()
        landmarks = landmarker.track(crops)
        seconds["landmarks"] += time.perf_counter() - began

        began = time.perf_counter()
        boxes, poses = face_box_from_landmarks(landmarks), head_pose(landmarks, (cfg.output_size,) * 2)
        x0, y0, x1, y1 = (int(v) for v in np.clip(boxes[len(boxes) // 2], 0, cfg.output_size))
        sharpness(crops[len(crops) // 2, y0:y1, x0:x1].mean(axis=2).astype(np.uint8))
        seconds["pose+blur"] += time.perf_counter() - began

        began = time.perf_counter()
        media = encode_h264(crops, stream.fps, crf=cfg.crf)
        seconds["encode"] += time.perf_counter() - began

        began = time.perf_counter()
        _members("mp4", media, {"key": item.item_id}, landmarks, poses, boxes)
        seconds["package"] += time.perf_counter() - began
    return seconds, frames_total


def end_to_end(shards: list[WorkShard], cfg: BuildConfig, out: Path, workers: int) -> tuple[float, int]:
    """(seconds, frames) of the build's work with `workers` actors, started and warmed before timing."""
    import ray

    runner = Runner(cfg, cfg.fingerprint(), out, workers)
    runner.ready()
    began = time.perf_counter()
    progress = runner.run(shards)
    elapsed = time.perf_counter() - began
    runner.close()
    ray.shutdown()
    return elapsed, progress.frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8, help="videos to render (default 8)")
    parser.add_argument("--frames", type=int, default=200, help="frames per video (default 200)")
    parser.add_argument("--root", type=Path, help="an existing MEAD-layout folder to use instead")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rp-bench-"))
    root = args.root or work / "input"
    if args.root is None:
        print(f"rendering {args.videos} videos x {args.frames} frames (640x360) into {root}")
        write_input(root, args.videos, args.frames)
    # the bench measures the work, not the filters: every clip must be kept and encoded
    defaults = get_spec("sample").defaults.model_copy(update={"max_clip_frames": 10_000})
    cfg = BuildConfig(videos_per_shard=1, defaults={"mead": defaults})
    items_frame = scan_sources([("mead", root)], work / "scan")
    items = [SourceItem.from_row(row) for row in items_frame.to_dict("records")]
    plan = plan_shards(items_frame, cfg)
    rows = {row["item_id"]: row for row in items_frame.to_dict("records")}
    shards = [
        WorkShard(w, "mead", str(root), defaults.model_dump(mode="json"), [rows[i] for i in g.item_id])
        for w, g in plan.groupby("work", sort=True)
    ]

    seconds, frames = stage_seconds(items, root, cfg, defaults)
    per_frame = {name: value / frames for name, value in seconds.items()}
    floor = 1.0 / sum(per_frame.values())
    print(f"\n{frames} frames in {len(items)} videos; each stage alone (one process, one thread):")
    decode_fps = 1.0 / per_frame["decode"]
    for name, value in per_frame.items():
        print(
            f"  {name:<10} {value * 1e3:7.2f} ms/frame  {1.0 / value:9.1f} frames/s  "
            f"{value / sum(per_frame.values()):6.1%} of the floor's cost"
        )
    print(f"  composite floor: {floor:.1f} frames/s (decode alone: {decode_fps:.1f} frames/s)")

    one_seconds, one_frames = end_to_end(shards, cfg, work / "one", 1)
    two_seconds, two_frames = end_to_end(shards, cfg, work / "two", 2)
    one, two = one_frames / one_seconds, two_frames / two_seconds
    print(f"\nend-to-end, 1 worker:  {one:.1f} frames/s ({one_frames} frames in {one_seconds:.1f} s)")
    print(f"end-to-end, 2 workers: {two:.1f} frames/s ({two_frames} frames in {two_seconds:.1f} s)")
    print(f"\nend-to-end (1 worker) / composite floor: {one / floor:.2f}   (goal >= 0.8)")
    print(f"2 workers / 1 worker:                    {two / one:.2f}   (goal >= 1.6 on 2 cores)")
    print(f"end-to-end (1 worker) / decode alone:     {one / decode_fps:.2f}")
    print(f"(outputs in {work})")


if __name__ == "__main__":
    main()
