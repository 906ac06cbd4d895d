"""Benchmark of `rp-data build`: speed against the cost of its own stages, at 360p, 1080p and 4K, and memory.

    .venv/bin/python bench/pipeline.py [--videos 8] [--frames 200] [--long-seconds 60 --long-4k-seconds 20]
                                       [--driver-rows 3000000] [--skip-hd] [--skip-driver]

In one run, on the same inputs, for each resolution (640x360: eight short videos; 1920x1080 and
3840x2160: talking heads made by this script from the same renders, upscaled, as H.264):

- each stage alone, per frame, in this process, one thread: the analysis decode, scene cuts (frames
  converted to their small size), face detection on every k-th frame (converted to detection size), the
  second decode cutting the crop at output size, landmarks, pose and blur, H.264, packaging. The
  composite floor is 1 / (sum of their seconds per frame): what a pipeline that hands frames on for free
  would reach on one core. Decode alone (to YUV, nothing else) is printed beside it, as is what holding
  the shot's full-size frames would cost in memory instead of decoding twice.
- the real build (Ray actors, models loaded before timing, work shards of one video) with 1 and 2 workers.

It prints end to end / composite floor (goal >= 0.8 at 1080p), frames/s per core (2 workers / 2 cores;
goal >= 22 at 1080p), the projection for the paper's 1,100 hours on 10 x 32 cores, the peak RSS of the
worker process (the Ray actor, measured by getrusage inside it) building one long 1080p and one long 4K
clip (goal <= 1.5 GiB), and the build driver's peak RSS on a synthetic 3-million-row image scan (goal <=
1 GiB, bench/driver_memory.py). Absolute frames/s vary between runs on a shared machine; each ratio is
measured within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

# worker threads as the build sets them, before numpy loads
os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
# This file is bench/pipeline.py: put the repository first so `pipeline` is the package, not this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from manifests.schema import PipelineDefaults, get_spec
from pipeline.build import scan_sources
from pipeline.config import BuildConfig
from pipeline.controls import face_box_from_landmarks, head_pose, sharpness
from pipeline.crops import unscaled
from pipeline.decode import open_frames
from pipeline.encode import BT709, LIMITED, X264_TAGS, encode_h264
from pipeline.faces import open_detector, open_landmarker
from pipeline.faces.threads import limit_threads
from pipeline.fingerprint import node_inputs
from pipeline.process import crop_square, sample_members
from pipeline.runner import Runner, WorkShard
from pipeline.scenes import SceneCuts
from pipeline.sources.records import SourceItem
from pipeline.tracking import face_runs

PORTRAITS = ("astronaut", "t1_a", "t1_b", "t1_e")  # the ones the detector finds on every frame
FPS = 25
PAPER_HOURS, NODES, CORES_PER_NODE = 1100, 10, 32
GIB = 2**30


def _mead_path(root: Path, index: int) -> Path:
    return root / f"M{index + 1:03d}/video/front/neutral/level_1/001.mp4"


def _render(index: int, frames: int) -> np.ndarray:
    from pipeline.sample.render import Actor, Shot, render_video

    actor = Actor(PORTRAITS[index % len(PORTRAITS)], (0.45 + 0.03 * (index % 4), 0.45), 130)
    clip, _ = render_video([Shot((actor,), frames, scene=60 + index)], (640, 360), seed=index)
    return clip


def write_input(root: Path, videos: int, frames: int) -> None:
    from pipeline.sample.render import write_mp4

    for index in range(videos):
        write_mp4(_mead_path(root, index), _render(index, frames), FPS)


def write_upscaled(path: Path, index: int, size: tuple[int, int], frames: int) -> None:
    """A talking head at `size`: 5 s rendered at 640x360, played forwards and back (no cut), upscaled,
    written as an HD download is: BT.709 limited range, tagged so (the build converts with that matrix).

    Streamed to the encoder frame by frame, so a 60 s 4K input never sits in memory. x264 uses its own
    threads here: writing the input is not what is measured.
    """
    import av
    import cv2

    clip = _render(index, 125)
    order = [*range(len(clip)), *range(len(clip) - 1, -1, -1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.codec_context.colorspace, stream.codec_context.color_range = BT709, LIMITED
        stream.codec_context.options = {"crf": "20", "preset": "veryfast", "x264-params": X264_TAGS}
        for number in range(frames):
            image = cv2.resize(clip[order[number % len(order)]], size, interpolation=cv2.INTER_CUBIC)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame = frame.reformat(format="yuv420p", dst_colorspace=BT709, dst_color_range=LIMITED)
            frame.pts = number
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def decode_only(path: Path) -> float:
    """Seconds per frame to decode to the decoder's own YUV, one thread: the floor of any reader."""
    import av

    began = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        count = sum(1 for _ in container.decode(stream))
    return (time.perf_counter() - began) / count


def colour_cost(path: Path, output_size: int, frames: int = 40) -> dict[str, float]:
    """Seconds per frame of cutting a face-sized square out of the decoded planes at output size, and of
    the colour conversion inside it (the stream's own matrix, pipeline.colour) beside OpenCV's fixed
    BT.601 conversion of the same planes, which the build used before and which is wrong for HD."""
    import cv2

    from pipeline.colour import yuv_to_rgb_matrix
    from pipeline.video_file import VideoFile, convert_region

    video = VideoFile(path)
    width, height = video.size
    side = (height * 3 // 5) & ~1
    box = ((width - side) // 2 & ~1, (height - side) // 2 & ~1, (width + side) // 2 & ~1, (height + side) // 2 & ~1)
    decoded = [frame for _, frame in video.decode(range(min(frames, len(video))))]
    half = output_size // 2
    planes = [np.full((output_size, output_size), 100, np.uint8), *[np.full((half, half), 120, np.uint8)] * 2]
    yuv = cv2.merge([planes[0], *(cv2.resize(p, (output_size, output_size)) for p in planes[1:])])
    i420 = np.concatenate([p.ravel() for p in planes]).reshape(output_size * 3 // 2, output_size)
    matrix = yuv_to_rgb_matrix(decoded[0].colorspace or 2, False, 8)

    def per_frame(work) -> float:  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        for frame in decoded:
            work(frame)
        return (time.perf_counter() - began) / len(decoded)

    return {
        "cut": per_frame(lambda frame: convert_region(frame, box, output_size, output_size)),
        "matrix": per_frame(lambda _: cv2.transform(yuv, matrix)),
        "bt601": per_frame(lambda _: cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)),
    }


STAGES = ("decode", "scenes", "detect", "decode+crop", "landmarks", "pose+blur", "encode", "package")


def stage_seconds(items: list[SourceItem], root: Path, cfg: BuildConfig, defaults: PipelineDefaults) -> dict:
    """Each stage alone over every video, with the build's own functions; returns seconds and frames."""
    limit_threads()
    detector, landmarker = open_detector(), open_landmarker()
    seconds = dict.fromkeys(STAGES, 0.0)
    frames_total = 0
    for item in items:
        began = time.perf_counter()
        stream = open_frames(item, root, defaults.target_fps)
        seconds["decode"] += time.perf_counter() - began
        x0, y0, x1, y1 = stream.region
        small_w, small_h = stream.small_size(cfg.detect_max_side)
        cuts = SceneCuts(stream.fps, cfg.scene_threshold, cfg.scene_width, 8)
        scene_size = cuts.size_for(x1 - x0, y1 - y0)
        sampled = {*range(0, len(stream), cfg.detect_every), len(stream) - 1}
        detections = {}
        pictures = stream.pictures()
        for index in range(len(stream)):
            began = time.perf_counter()
            picture = next(pictures)
            seconds["decode"] += time.perf_counter() - began
            began = time.perf_counter()
            cuts.feed(picture.at(*scene_size)[None])
            seconds["scenes"] += time.perf_counter() - began
            if index in sampled:
                began = time.perf_counter()
                faces = detector.detect(picture.at(small_w, small_h))
                detections[index] = [unscaled(f, small_w / (x1 - x0), small_h / (y1 - y0)) for f in faces]
                seconds["detect"] += time.perf_counter() - began
        frames_total += len(stream)

        run = face_runs(detections, len(stream), cfg.filters.prominent_ratio, max_missed=cfg.track_max_missed)[0]
        box = crop_square(run.boxes, cfg.crop_scale, x1 - x0, y1 - y0)
        began = time.perf_counter()
        crops = stream.read(range(run.start, run.stop), box, cfg.output_size)
        seconds["decode+crop"] += time.perf_counter() - began

        began = time.perf_counter()
        landmarks = landmarker.track(crops)
        seconds["landmarks"] += time.perf_counter() - began

        began = time.perf_counter()
        boxes, poses = face_box_from_landmarks(landmarks), head_pose(landmarks, (cfg.output_size,) * 2)
        bx0, by0, bx1, by1 = (int(v) for v in np.clip(boxes[len(boxes) // 2], 0, cfg.output_size))
        sharpness(crops[len(crops) // 2, by0:by1, bx0:bx1].mean(axis=2).astype(np.uint8))
        seconds["pose+blur"] += time.perf_counter() - began

        began = time.perf_counter()
        media = encode_h264(crops, stream.fps, crf=cfg.crf)
        seconds["encode"] += time.perf_counter() - began

        began = time.perf_counter()
        sample_members("mp4", media, {"key": item.item_id}, landmarks, poses, boxes)
        seconds["package"] += time.perf_counter() - began
    return {"seconds": seconds, "frames": frames_total}


def end_to_end(shards: list[WorkShard], cfg: BuildConfig, out: Path, workers: int) -> tuple[float, int, float]:
    """(seconds, frames, peak worker RSS in bytes) of the build's work with `workers` actors, warmed first."""
    import ray

    runner = Runner(cfg, cfg.fingerprint(), out, workers, inputs=node_inputs(cfg))
    runner.ready()
    began = time.perf_counter()
    progress = runner.run(shards)
    elapsed = time.perf_counter() - began
    peak = max(ray.get([actor.__ray_call__.remote(_peak_rss) for actor in runner.actors]))
    runner.close()
    ray.shutdown()
    return elapsed, progress.frames, peak


def _peak_rss(_actor: object) -> int:
    """Runs inside a worker actor: the peak resident memory of its process, in bytes."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Case:
    """One resolution: its input folder, the items and work shards of one video each."""

    name: str
    root: Path
    items: list[SourceItem]
    shards: list[WorkShard]


def make_case(name: str, root: Path, work: Path, cfg: BuildConfig, defaults: PipelineDefaults) -> Case:
    [scanned] = scan_sources([("mead", root)], work / f"scan-{name}")
    rows = pd.read_parquet(scanned).sort_values("item_id").to_dict("records")
    shards = [
        WorkShard(f"mead-{i:05d}", "mead", str(root), defaults.model_dump(mode="json"), [row])
        for i, row in enumerate(rows)
    ]
    return Case(name, root, [SourceItem.from_row(row) for row in rows], shards)


def report_case(case: Case, cfg: BuildConfig, defaults: PipelineDefaults, work: Path) -> dict[str, float]:
    measured = stage_seconds(case.items, case.root, cfg, defaults)
    frames = measured["frames"]
    per_frame = {name: value / frames for name, value in measured["seconds"].items()}
    floor = 1.0 / sum(per_frame.values())
    decode = float(np.mean([decode_only(case.root / item.media_path) for item in case.items]))
    print(f"\n== {case.name}: {frames} frames in {len(case.items)} videos; each stage alone (one thread) ==")
    for name, value in per_frame.items():
        share = value / sum(per_frame.values())
        print(
            f"  {name:<14} {value * 1e3:7.2f} ms/frame  {1.0 / value:9.1f} frames/s  {share:6.1%} of the floor's cost"
        )
    print(f"  composite floor: {floor:.1f} frames/s; decode alone to YUV: {1 / decode:.1f} frames/s")
    colour = colour_cost(case.root / case.items[0].media_path, cfg.output_size)
    print(
        f"  colour: a {cfg.output_size} px crop cut from the planes and converted {colour['cut'] * 1e3:.2f} ms/frame, "
        f"of which the stream's matrix {colour['matrix'] * 1e3:.2f} ms "
        f"(OpenCV's fixed BT.601 conversion: {colour['bt601'] * 1e3:.2f} ms)"
    )
    one_seconds, one_frames, _ = end_to_end(case.shards, cfg, work / f"{case.name}-one", 1)
    two_seconds, two_frames, _ = end_to_end(case.shards, cfg, work / f"{case.name}-two", 2)
    one, two = one_frames / one_seconds, two_frames / two_seconds
    per_core = two / 2
    hours = PAPER_HOURS * 3600 * FPS / (per_core * NODES * CORES_PER_NODE) / 3600
    print(f"  end to end, 1 worker:  {one:.1f} frames/s ({one_frames} frames in {one_seconds:.1f} s)")
    print(f"  end to end, 2 workers: {two:.1f} frames/s ({two_frames} frames in {two_seconds:.1f} s)")
    print(f"  end to end (1 worker) / composite floor: {one / floor:.2f}   (goal >= 0.8)")
    print(f"  frames/s per core (2 workers / 2 cores):  {per_core:.1f}   (goal >= 22 at 1080p)")
    print(f"  2 workers / 1 worker:                     {two / one:.2f}")
    print(f"  projection: {PAPER_HOURS:,} h of {case.name} video on {NODES} x {CORES_PER_NODE} cores: {hours:.1f} h")
    return {"floor": floor, "one": one, "per_core": per_core}


def held_frames_gib(width: int, height: int, frames: int) -> float:
    """What the single-pass design held: a shot's full-size RGB frames, twice over while stacking them."""
    return 2 * width * height * 3 * frames / GIB


def long_clip_rss(name: str, size: tuple[int, int], seconds: int, cfg: BuildConfig, work: Path) -> None:
    defaults = get_spec("mead").defaults.model_copy(update={"min_face_px": 48, "min_sharpness": 1.0})
    root = work / f"long-{name}"
    print(f"\nrendering one {seconds} s {name} clip ({size[0]}x{size[1]}) ...", flush=True)
    write_upscaled(_mead_path(root, 0), 0, size, seconds * FPS)
    case = make_case(f"long-{name}", root, work, cfg.model_copy(update={"defaults": {"mead": defaults}}), defaults)
    took, frames, peak = end_to_end(
        case.shards, cfg.model_copy(update={"defaults": {"mead": defaults}}), work / name, 1
    )
    held = held_frames_gib(*size, defaults.max_clip_frames)
    print(
        f"peak worker RSS, one {seconds} s {name} clip: {peak / GIB:.2f} GiB   (goal <= 1.5 GiB; "
        f"{frames} frames in {took:.1f} s; holding a {defaults.max_clip_frames}-frame shot at full size "
        f"instead would take ~{held:.1f} GiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8, help="640x360 videos to render (default 8)")
    parser.add_argument("--frames", type=int, default=200, help="frames per 640x360 video (default 200)")
    parser.add_argument("--hd-frames", type=int, default=250, help="frames per 1080p / 4K speed video (250)")
    parser.add_argument("--long-seconds", type=int, default=60, help="the long 1080p clip's length (60 s)")
    parser.add_argument("--long-4k-seconds", type=int, default=20, help="the long 4K clip's length (20 s)")
    parser.add_argument("--driver-rows", type=int, default=3_000_000, help="rows of the synthetic image scan")
    parser.add_argument("--skip-hd", action="store_true", help="only the 640x360 case")
    parser.add_argument("--skip-driver", action="store_true", help="no driver-memory line")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rp-bench-"))
    # the bench measures the work, not the filters: every clip must be kept and encoded
    defaults = get_spec("sample").defaults.model_copy(update={"max_clip_frames": 10_000})
    cfg = BuildConfig(videos_per_shard=1, defaults={"mead": defaults})
    print(f"rendering inputs into {work} ...", flush=True)
    write_input(work / "360p", args.videos, args.frames)
    cases = [make_case("360p", work / "360p", work, cfg, defaults)]
    if not args.skip_hd:
        for name, size, count in (("1080p", (1920, 1080), 2), ("4K", (3840, 2160), 2)):
            for index in range(count):
                write_upscaled(_mead_path(work / name, index), index, size, args.hd_frames)
            cases.append(make_case(name, work / name, work, cfg, defaults))
    for case in cases:
        report_case(case, cfg, defaults, work)
    if not args.skip_hd:
        long_clip_rss("1080p", (1920, 1080), args.long_seconds, cfg, work)
        long_clip_rss("4K", (3840, 2160), args.long_4k_seconds, cfg, work)
    if not args.skip_driver:
        from bench.driver_memory import report

        print(f"\nbuild driver on a synthetic {args.driver_rows:,}-row image scan ...", flush=True)
        report(args.driver_rows)
    print(f"\n(outputs in {work})")


if __name__ == "__main__":
    main()
