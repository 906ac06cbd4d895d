"""One source item in, its samples and manifest rows out: the per-item work of a build.

Videos go through two passes so that a worker's memory is bounded by constants (the output size and
the longest clip), never by the source's resolution or length:

1. Analysis: every output frame, decoded straight to detection size, feeds the scene-cut detector;
   the face detector runs on every k-th frame of each shot (or max-length piece of one), and when the
   shot ends the main face's runs and one stable crop per run are fixed. Runs too short, too crowded
   or with too small a face are filtered here. No frame outlives this step.
2. Crops: each remaining run's frames are decoded again and cut to its crop at output size from the
   decoder's planes; then landmarks, head pose, the blur and pose filters, and H.264.

The second decode is the price of not holding full-size frames: at 1080p decoding costs ~3 ms a frame
against ~6 MB held per frame for a whole shot (300 frames: 1.8 GB) in the single-pass design, and it
only covers frames of runs that passed the first filters (bench/pipeline.py measures both).
Every candidate clip gets a row, kept or filtered with its reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from manifests.schema import PipelineDefaults
from pipeline.config import BuildConfig
from pipeline.controls import face_box_from_landmarks, head_pose, sharpness
from pipeline.crops import even_square, unscaled
from pipeline.decode import FrameStream, Picture, open_frames, read_image
from pipeline.encode import encode_h264
from pipeline.faces import Face, FaceDetector, labelled_face, prominent
from pipeline.faces.landmarks import LandmarkTracker
from pipeline.scenes import SceneCuts
from pipeline.shards import npy_bytes
from pipeline.sources.records import SourceItem, refuse_unusable
from pipeline.tracking import Run, face_runs, stable_crop


@dataclass
class Models:
    """Loaded once per worker and reused for every item."""

    detector: FaceDetector
    landmarker: LandmarkTracker


@dataclass
class Sample:
    key: str
    members: dict[str, bytes]
    row: dict[str, object]


@dataclass
class Outcome:
    """What one item produced: its source row, one row per candidate clip, the kept samples."""

    source_row: dict[str, object]
    candidate_rows: list[dict[str, object]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    frames_decoded: int = 0


@dataclass
class Timer:
    decode: float = 0.0
    faces: float = 0.0
    encode: float = 0.0


def sample_key(item: SourceItem, clip: int) -> str:
    """Deterministic, dot-free and readable; the hash keeps sanitised ids apart."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", item.native_id).strip("-")
    digest = hashlib.sha1(item.item_id.encode()).hexdigest()[:6]
    return f"{item.dataset}_{safe}_{digest}_c{clip:03d}"


def _row(item: SourceItem, kind: str, status: str, reason: str | None = None, **values: object) -> dict[str, object]:
    return {
        "item_id": item.item_id,
        "dataset": item.dataset,
        "kind": kind,
        "status": status,
        "reason": reason,
        **values,
    }


def _face_quality(crops: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Sharpness of the face (middle frame), per-frame boxes and poses in crop pixels."""
    boxes = face_box_from_landmarks(landmarks)
    poses = head_pose(landmarks, (size, size))
    middle = len(crops) // 2
    valid = np.flatnonzero(np.isfinite(boxes[:, 0]))
    if len(valid) == 0:
        return 0.0, boxes, poses
    index = valid[np.argmin(np.abs(valid - middle))]
    x0, y0, x1, y1 = (round(v) for v in np.clip(boxes[index], 0, size))
    gray = cv2.cvtColor(crops[index][y0:y1, x0:x1], cv2.COLOR_RGB2GRAY) if x1 > x0 and y1 > y0 else None
    return (sharpness(gray) if gray is not None else 0.0), boxes, poses


def _pose_reason(poses: np.ndarray, cfg: BuildConfig) -> str | None:
    yaw, pitch = np.nanmedian(np.abs(poses[:, 0])), np.nanmedian(np.abs(poses[:, 1]))
    if yaw > cfg.filters.max_abs_yaw or pitch > cfg.filters.max_abs_pitch:
        return "extreme_pose"
    return None


def _quality(poses: np.ndarray, face_px: float, blur: float) -> dict[str, float]:
    with np.errstate(all="ignore"):
        yaw, pitch, roll = (float(np.nanmean(np.abs(poses[:, c]))) for c in range(3))
    return {"face_px": face_px, "blur": blur, "yaw": yaw, "pitch": pitch, "roll": roll}


def sample_members(
    media_ext: str,
    media: bytes,
    meta: dict[str, object],
    landmarks: np.ndarray,
    poses: np.ndarray,
    boxes: np.ndarray,
) -> dict[str, bytes]:
    return {
        "json": json.dumps(meta, sort_keys=True).encode(),
        media_ext: media,
        "landmarks.npy": npy_bytes(landmarks.astype(np.float16)),
        "pose.npy": npy_bytes(poses.astype(np.float32)),
        "bbox.npy": npy_bytes(boxes.astype(np.float32)),
    }


def _meta(item: SourceItem, key: str, kind: str, cfg: BuildConfig, fingerprint: str, **values: object) -> dict:
    return {
        "key": key,
        "item_id": item.item_id,
        "dataset": item.dataset,
        "native_id": item.native_id,
        "kind": kind,
        "identity": item.identity,
        "identity_kind": item.identity_kind,
        "youtube_id": item.youtube_id,
        "split": item.split,
        "license": item.license_tag,
        "pipeline_version": cfg.pipeline_version,
        "fingerprint": fingerprint,
        **values,
    }


@dataclass
class PendingClip:
    """A run that passed the detection-stage filters: its crop is cut in the second pass."""

    key: str
    start: int  # output frame index of its first frame
    run: Run
    box: tuple[int, int, int, int]  # even square in region pixels
    row: dict[str, object]  # its manifest row, in candidate order, completed by the second pass


class Segments:
    """Detections on every k-th frame of each shot (or max-length piece of one), streamed.

    Pictures arrive one at a time and are dropped after; a short ring of the latest ones lets a scene
    cut reported up to `late` frames after it happened still be placed exactly (its segment's last frame
    and the new segment's sampled frames are detected from the ring). For the same reason a shot longer
    than `max_frames` is split only `late` frames after the split point: a cut that lies before the split
    point but is reported after it (PySceneDetect reports a cut that ends a strobe `min_scene_len` frames
    late) then still closes the segment at the cut, so no segment spans a cut.
    """

    def __init__(self, detect: Callable[[Picture], list[Face]], every: int, max_frames: int, late: int):
        self.detect, self.every, self.max_frames, self.late = detect, every, max_frames, late
        self.recent: deque[tuple[int, Picture]] = deque(maxlen=late + 4)
        self.found: dict[int, list[Face]] = {}
        self.start = 0

    def _faces(self, index: int) -> list[Face]:
        if index not in self.found:
            picture = next((p for i, p in self.recent if i == index), None)
            if picture is None:
                raise RuntimeError(f"frame {index} left the ring before its detection was needed")
            self.found[index] = self.detect(picture)
        return self.found[index]

    def add(self, index: int, picture: Picture, cut: int | None) -> list[tuple[int, dict[int, list[Face]]]]:
        """Feeds output frame `index`; returns (start, detections by offset) of each segment that ended before it."""
        self.recent.append((index, picture))
        ended = []
        if cut is not None and cut > self.start:
            if cut - self.start > self.max_frames:  # a cut past a split point still pending
                ended.append(self._close(self.start + self.max_frames))
            ended.append(self._close(cut))
        elif index - self.start >= self.max_frames + self.late:
            ended.append(self._close(self.start + self.max_frames))
        if ended:  # the new segment's sample grid starts at its first frame, a few frames back
            for sampled in range(self.start, index + 1, self.every):
                self._faces(sampled)
        elif (index - self.start) % self.every == 0:
            self._faces(index)
        return ended

    def finish(self, count: int) -> list[tuple[int, dict[int, list[Face]]]]:
        """The segments still open when the frames end: a last piece may still exceed `max_frames`."""
        ended = []
        while count - self.start > self.max_frames:
            ended.append(self._close(self.start + self.max_frames))
        if count > self.start:
            ended.append(self._close(count))
        return ended

    def _close(self, stop: int) -> tuple[int, dict[int, list[Face]]]:
        start = self.start
        indices = sorted({*range(start, stop, self.every), stop - 1})
        detections = {i - start: self._faces(i) for i in indices}
        self.found = {i: f for i, f in self.found.items() if i >= stop}
        self.start = stop
        return start, detections


def crop_square(boxes: np.ndarray, crop_scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """A run's stable crop (tracking.stable_crop) with even corner and side (crops.even_square), so 4:2:0
    chroma is cut without a half-pixel shift."""
    return even_square(stable_crop(boxes, crop_scale, width, height), width, height)


class VideoJob:
    """Streams one video item through every stage (see the module docstring)."""

    def __init__(
        self,
        item: SourceItem,
        root: Path,
        cfg: BuildConfig,
        defaults: PipelineDefaults,
        models: Models,
        fingerprint: str,
    ):
        self.item, self.root, self.cfg, self.defaults, self.models = item, root, cfg, defaults, models
        self.fingerprint = fingerprint
        self.timer = Timer()
        self.outcome = Outcome(source_row={})
        self.clip = 0
        self.no_face_frames = 0
        self.pending: list[PendingClip] = []

    def run(self) -> Outcome:
        started = time.perf_counter()
        stream = open_frames(
            self.item,
            self.root,
            self.defaults.target_fps,
            limits=self.cfg.limits,
            min_frames=self.defaults.min_clip_frames,
        )
        self.stream = stream
        self.timer.decode += time.perf_counter() - started
        cuts_at = self._analyse(stream)
        for clip in self.pending:
            self._finish_clip(clip)
        if cuts_at and self.cfg.filters.on_scene_cut == "drop" and self.item.start is not None:
            for row in self.outcome.candidate_rows:
                row.update(status="filtered", reason="scene_cut", tar=None)
            self.outcome.samples = []
        self._finish(time.perf_counter() - started, len(stream), cuts_at)
        return self.outcome

    def _analyse(self, stream: FrameStream) -> list[int]:
        """First pass: detection-size frames through scene cuts and the detector; returns the cuts."""
        cfg, defaults = self.cfg, self.defaults
        x0, y0, x1, y1 = stream.region
        small_w, small_h = stream.small_size(cfg.detect_max_side)
        scale_x, scale_y = small_w / (x1 - x0), small_h / (y1 - y0)

        def detect(picture: Picture) -> list[Face]:
            began = time.perf_counter()
            frame = picture.at(small_w, small_h)
            faces = [unscaled(face, scale_x, scale_y) for face in self.models.detector.detect(frame)]
            self.timer.faces += time.perf_counter() - began
            return faces

        min_scene = max(4, defaults.min_clip_frames // 2)
        scenes = None
        if defaults.scene_detection:
            scenes = SceneCuts(stream.fps, cfg.scene_threshold, cfg.scene_width, min_scene)
            scene_size = scenes.size_for(x1 - x0, y1 - y0)
        # PySceneDetect's flash filter reports a cut that ends a strobe min_scene frames late
        segments = Segments(detect, cfg.detect_every, defaults.max_clip_frames, late=min_scene)
        pictures = stream.pictures()
        index = 0
        while True:
            began = time.perf_counter()
            picture = next(pictures, None)
            self.timer.decode += time.perf_counter() - began
            if picture is None:
                break
            self.outcome.frames_decoded += 1
            cuts = scenes.feed(picture.at(*scene_size)[None]) if scenes else []
            for ended in segments.add(index, picture, cuts[-1] if cuts else None):
                self._segment(*ended)
            index += 1
        for ended in segments.finish(index):
            self._segment(*ended)
        return scenes.cuts if scenes else []

    def _segment(self, start: int, samples: dict[int, list[Face]]) -> None:
        count = max(samples) + 1
        runs = face_runs(samples, count, self.cfg.filters.prominent_ratio, max_missed=self.cfg.track_max_missed)
        self.no_face_frames += count - sum(len(run) for run in runs)
        for run in runs:
            self._candidate(start, run)

    def _candidate(self, start: int, run: Run) -> None:
        """Filters a run can fail before its crop exists; a run that passes waits for the second pass."""
        item, cfg = self.item, self.cfg
        key = sample_key(item, self.clip)
        self.clip += 1
        sides = np.maximum(run.boxes[:, 2] - run.boxes[:, 0], run.boxes[:, 3] - run.boxes[:, 1])
        face_px = float(np.median(sides))
        base = {"key": key, "frames": len(run), "face_px": face_px}
        reason = None
        if len(run) < self.defaults.min_clip_frames:
            reason = "too_short"
        elif run.multi_face_fraction > cfg.filters.max_multi_face_fraction:
            reason = "multiple_faces"
        elif face_px < self.defaults.min_face_px:
            reason = "face_too_small"
        row = _row(item, "sample", "filtered", reason, **base)
        self.outcome.candidate_rows.append(row)
        if reason is None:
            x0, y0, x1, y1 = self.stream.region
            box = crop_square(run.boxes, cfg.crop_scale, x1 - x0, y1 - y0)
            self.pending.append(PendingClip(key, start, run, box, row))

    def _finish_clip(self, clip: PendingClip) -> None:
        """Second pass: the crop at output size, landmarks, pose and blur filters, H.264."""
        item, cfg, size, run, box = self.item, self.cfg, self.cfg.output_size, clip.run, clip.box
        began = time.perf_counter()
        outputs = range(clip.start + run.start, clip.start + run.stop)
        crops = self.stream.read(outputs, box, size)
        self.timer.decode += time.perf_counter() - began
        began = time.perf_counter()
        landmarks = self.models.landmarker.track(crops)
        blur, boxes, poses = _face_quality(crops, landmarks, size)
        self.timer.faces += time.perf_counter() - began
        lost = float(np.mean(~np.isfinite(landmarks[:, 0, 0])))
        quality = _quality(poses, float(clip.row["face_px"]), blur)  # type: ignore[arg-type]
        clip.row.update(quality)
        if lost > cfg.filters.max_lost_fraction:
            reason = "face_lost"
        elif blur < self.defaults.min_sharpness:
            reason = "blurry"
        else:
            reason = _pose_reason(poses, cfg)
        if reason:
            clip.row["reason"] = reason
            return
        began = time.perf_counter()
        media = encode_h264(crops, self.stream.fps, crf=cfg.crf)
        self.timer.encode += time.perf_counter() - began
        x0, y0 = self.stream.region[:2]
        first, last = outputs[0], outputs[-1]
        meta = _meta(
            item,
            clip.key,
            "clip",
            cfg,
            self.fingerprint,
            fps=self.stream.fps,
            frames=len(run),
            width=size,
            height=size,
            crop_box=[box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0],
            source_range={
                "unit": "frame",
                "start": int(self.stream.source_index[first]),
                "end": int(self.stream.source_index[last]),
                "end_inclusive": True,
                "source_fps": self.stream.source_fps,
                "start_sec": round(float(self.stream.source_time[first]), 6),
                "end_sec": round(float(self.stream.source_time[last]), 6),
            },
            quality=quality,
        )
        members = sample_members("mp4", media, meta, landmarks, poses, boxes)
        clip.row.update(status="ok", reason=None)
        self.outcome.samples.append(Sample(clip.key, members, clip.row))

    def _finish(self, seconds: float, frames: int, cuts: list[int]) -> None:
        kept = sum(1 for row in self.outcome.candidate_rows if row["status"] == "ok")
        reasons = Counter(row["reason"] for row in self.outcome.candidate_rows if row["status"] != "ok")
        if kept:
            status, reason = "ok", None
        elif reasons:
            status, reason = "filtered", reasons.most_common(1)[0][0]
        else:
            status, reason = "filtered", "no_face" if frames else "too_short"
        notes = [f"{len(cuts)} scene cut(s)"] if cuts else []
        if self.stream.note:
            notes.append(self.stream.note)
        self.outcome.source_row = _row(
            self.item,
            "source",
            status,
            reason,
            frames=frames,
            seconds_decode=self.timer.decode,
            seconds_faces=self.timer.faces,
            seconds_encode=self.timer.encode,
            seconds_total=seconds,
            message="; ".join(notes) or None,
            **self.stream.media.properties(),
        )


def image_context(
    face: Face, width: int, height: int, crop_scale: float, context_scale: float
) -> tuple[int, int, int, int]:
    """(x0, y0, side, crop side) of the square kept around a face in a still image.

    Training takes random 512 crops of it (two per image make a reference/target pair), so it holds
    `context_scale` times the face's crop where the photo allows; it never reaches past the photo
    (padding would show mirrored or black borders no video frame has), so small photos keep less context,
    and a photo smaller than even one crop gives a crop that is the whole square.
    """
    limit = min(width, height)
    crop_side = min(round(face.side * crop_scale), limit)
    side = min(round(crop_side * context_scale), limit)
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    x0 = min(max(round(cx - side / 2), 0), width - side)
    y0 = min(max(round(cy - side / 2), 0), height - side)
    return x0, y0, side, crop_side


def process_image(
    item: SourceItem, root: Path, cfg: BuildConfig, defaults: PipelineDefaults, models: Models, fingerprint: str
) -> Outcome:
    """A face-centred context crop (larger than 512, so training can take random 512 crops).

    When the annotation boxes the subject (CelebA's wild boxes, VGGFace2's loose boxes), the detection
    it names is the face, whatever else the photo shows: a group photo is filtered as `multiple_faces`
    only when no detection matches the box (`labelled_face`), as it is when there is no box.
    """
    started = time.perf_counter()
    image = read_image(root / item.media_path, cfg.limits)
    decoded = time.perf_counter()
    height, width = image.shape[:2]
    upscale = 2.0 if max(height, width) < 256 else 1.0  # the detector needs context around small faces
    probe = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC) if upscale > 1 else image
    detected = [Face(tuple(v / upscale for v in f.box), f.score) for f in models.detector.detect(probe)]
    subject = labelled_face(detected, item.box) if item.box is not None and item.geometry_space == "media" else None
    faces = [subject] if subject is not None else prominent(detected, cfg.filters.prominent_ratio)
    key = sample_key(item, 0)
    outcome = Outcome(source_row={}, frames_decoded=1)

    def done(status: str, reason: str | None, **values: object) -> Outcome:
        timing = {"seconds_decode": decoded - started, "seconds_total": time.perf_counter() - started}
        outcome.candidate_rows.insert(0, _row(item, "sample", status, reason, key=key, frames=1, **values))
        outcome.source_row = _row(item, "source", status, reason, frames=1, **timing)
        return outcome

    if not faces:
        return done("filtered", "no_face")
    if len(faces) > 1:
        return done("filtered", "multiple_faces")
    face = faces[0]
    if face.side < defaults.min_face_px:
        return done("filtered", "face_too_small", face_px=face.side)
    x0, y0, side, crop_side = image_context(face, width, height, cfg.crop_scale, defaults.image_context_scale)
    # scaled so that a training crop of `crop_side` source pixels becomes exactly output_size pixels
    out_side = round(side * cfg.output_size / crop_side)
    region = image[y0 : y0 + side, x0 : x0 + side]
    method = cv2.INTER_AREA if side > out_side else cv2.INTER_CUBIC
    context = cv2.resize(region, (out_side, out_side), interpolation=method)
    found = models.landmarker.single(context)
    landmarks = np.full((1, 478, 2), np.nan, np.float32) if found is None else found[None].astype(np.float32)
    blur, boxes, poses = _face_quality(context[None], landmarks, out_side)
    quality = _quality(poses, face.side, blur)
    if found is None:
        return done("filtered", "face_lost", **quality)
    if blur < defaults.min_sharpness:
        return done("filtered", "blurry", **quality)
    reason = _pose_reason(poses, cfg)
    if reason:
        return done("filtered", reason, **quality)
    buffer = io.BytesIO()
    Image.fromarray(context).save(buffer, format="JPEG", quality=cfg.jpeg_quality)
    meta = _meta(
        item,
        key,
        "image",
        cfg,
        fingerprint,
        fps=None,
        frames=1,
        width=out_side,
        height=out_side,
        crop_box=[x0, y0, x0 + side, y0 + side],
        crop_side=cfg.output_size,
        source_range=None,
        quality=quality,
    )
    members = sample_members("jpg", buffer.getvalue(), meta, landmarks, poses, boxes)
    result = done("ok", None, **quality)
    result.samples.append(Sample(key, members, result.candidate_rows[0]))
    return result


def process_item(
    item: SourceItem, root: Path, cfg: BuildConfig, defaults: PipelineDefaults, models: Models, fingerprint: str
) -> Outcome:
    """One item's rows and samples; an item whose values or media path no stage may use is refused
    (records.Refused) before anything is opened."""
    refuse_unusable(item, root)
    if item.modality == "image":
        return process_image(item, root, cfg, defaults, models, fingerprint)
    return VideoJob(item, root, cfg, defaults, models, fingerprint).run()
