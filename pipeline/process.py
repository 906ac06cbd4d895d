"""One source item in, its samples and manifest rows out: the per-item work of a build.

Videos stream through once: each decoded batch feeds the scene-cut detector and a buffer of the
current shot; a shot (or a max-length piece of one) is analysed when it ends: the face detector on
every k-th frame, the main face's runs, one stable crop per run, landmarks on the 512 crops, head
pose, filters, H.264. Every candidate clip gets a row, kept or filtered with its reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from manifests.schema import PipelineDefaults
from pipeline.config import BuildConfig
from pipeline.controls import face_box_from_landmarks, head_pose, sharpness
from pipeline.decode import open_frames, read_image
from pipeline.encode import encode_h264
from pipeline.faces import Face, FaceDetector, prominent
from pipeline.faces.landmarks import LandmarkTracker
from pipeline.scenes import SceneCuts
from pipeline.shards import npy_bytes
from pipeline.sources.records import SourceItem
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


def _detect(detector: FaceDetector, frame: np.ndarray, max_side: int) -> list[Face]:
    scale = min(1.0, max_side / max(frame.shape[:2]))
    small = frame if scale == 1.0 else cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    faces = detector.detect(small)
    return [
        Face(tuple(v / scale for v in f.box), f.score, None if f.keypoints is None else f.keypoints / scale)
        for f in faces
    ]


def _crop_resize(frames: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    side = x1 - x0
    method = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f[y0:y1, x0:x1], (size, size), interpolation=method) for f in frames])


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


def _members(
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

    def run(self) -> Outcome:
        started = time.perf_counter()
        stream = open_frames(self.item, self.root, self.defaults.target_fps)
        self.stream = stream
        scenes = None
        if self.defaults.scene_detection:
            scenes = SceneCuts(
                stream.fps, self.cfg.scene_threshold, self.cfg.scene_width, max(4, self.defaults.min_clip_frames // 2)
            )
        buffer: list[np.ndarray] = []
        start = 0  # output index of buffer[0]
        cut_at: list[int] = []
        decode_started = time.perf_counter()
        for batch in stream.batches():
            self.timer.decode += time.perf_counter() - decode_started
            self.outcome.frames_decoded += len(batch)
            cuts = scenes.feed(batch) if scenes else []
            buffer.extend(batch)
            for cut in cuts:
                if cut > start:
                    self._segment(np.stack(buffer[: cut - start]), start, ended_by_cut=True)
                    buffer, start = buffer[cut - start :], cut
                cut_at.append(cut)
            while len(buffer) >= self.defaults.max_clip_frames:
                self._segment(np.stack(buffer[: self.defaults.max_clip_frames]), start, ended_by_cut=False)
                buffer, start = buffer[self.defaults.max_clip_frames :], start + self.defaults.max_clip_frames
            decode_started = time.perf_counter()
        if buffer:
            self._segment(np.stack(buffer), start, ended_by_cut=False)
        if cut_at and self.cfg.filters.on_scene_cut == "drop" and self.item.start is not None:
            for row in self.outcome.candidate_rows:
                row.update(status="filtered", reason="scene_cut", tar=None)
            self.outcome.samples = []
        self._finish(time.perf_counter() - started, len(stream), cut_at)
        return self.outcome

    def _segment(self, frames: np.ndarray, start: int, ended_by_cut: bool) -> None:
        began = time.perf_counter()
        k = self.cfg.detect_every
        indices = sorted({*range(0, len(frames), k), len(frames) - 1})
        samples = {i: _detect(self.models.detector, frames[i], self.cfg.detect_max_side) for i in indices}
        runs = face_runs(samples, len(frames), self.cfg.filters.prominent_ratio)
        self.no_face_frames += len(frames) - sum(len(run) for run in runs)
        self.timer.faces += time.perf_counter() - began
        for run in runs:
            self._clip(frames, start, run)

    def _clip(self, frames: np.ndarray, start: int, run: Run) -> None:
        item, cfg, size = self.item, self.cfg, self.cfg.output_size
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
        if reason:
            self.outcome.candidate_rows.append(_row(item, "sample", "filtered", reason, **base))
            return
        region_h, region_w = frames.shape[1:3]
        box = stable_crop(run.boxes, cfg.crop_scale, region_w, region_h)
        began = time.perf_counter()
        crops = _crop_resize(frames[run.start : run.stop], box, size)
        landmarks = self.models.landmarker.track(crops)
        blur, boxes, poses = _face_quality(crops, landmarks, size)
        self.timer.faces += time.perf_counter() - began
        lost = float(np.mean(~np.isfinite(landmarks[:, 0, 0])))
        quality = _quality(poses, face_px, blur)
        base |= quality
        if lost > cfg.filters.max_lost_fraction:
            reason = "face_lost"
        elif blur < self.defaults.min_sharpness:
            reason = "blurry"
        else:
            reason = _pose_reason(poses, cfg)
        if reason:
            self.outcome.candidate_rows.append(_row(item, "sample", "filtered", reason, **base))
            return
        began = time.perf_counter()
        media = encode_h264(crops, self.stream.fps, crf=cfg.crf)
        self.timer.encode += time.perf_counter() - began
        x0, y0 = self.stream.region[:2]
        first, last = (
            int(self.stream.source_index[start + run.start]),
            int(self.stream.source_index[start + run.stop - 1]),
        )
        meta = _meta(
            item,
            key,
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
                "start": first,
                "end": last,
                "end_inclusive": True,
                "source_fps": self.stream.source_fps,
            },
            quality=quality,
        )
        members = _members("mp4", media, meta, landmarks, poses, boxes)
        row = _row(item, "sample", "ok", **base)
        self.outcome.candidate_rows.append(row)
        self.outcome.samples.append(Sample(key, members, row))

    def _finish(self, seconds: float, frames: int, cuts: list[int]) -> None:
        kept = sum(1 for row in self.outcome.candidate_rows if row["status"] == "ok")
        reasons = Counter(row["reason"] for row in self.outcome.candidate_rows if row["status"] != "ok")
        if kept:
            status, reason = "ok", None
        elif reasons:
            status, reason = "filtered", reasons.most_common(1)[0][0]
        else:
            status, reason = "filtered", "no_face" if frames else "too_short"
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
            message=f"{len(cuts)} scene cut(s)" if cuts else None,
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
    """A face-centred context crop (larger than 512, so training can take random 512 crops)."""
    started = time.perf_counter()
    image = read_image(root / item.media_path)
    decoded = time.perf_counter()
    height, width = image.shape[:2]
    upscale = 2.0 if max(height, width) < 256 else 1.0  # the detector needs context around small faces
    probe = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC) if upscale > 1 else image
    faces = [
        Face(tuple(v / upscale for v in f.box), f.score)
        for f in prominent(models.detector.detect(probe), cfg.filters.prominent_ratio)
    ]
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
    members = _members("jpg", buffer.getvalue(), meta, landmarks, poses, boxes)
    result = done("ok", None, **quality)
    result.samples.append(Sample(key, members, result.candidate_rows[0]))
    return result


def process_item(
    item: SourceItem, root: Path, cfg: BuildConfig, defaults: PipelineDefaults, models: Models, fingerprint: str
) -> Outcome:
    if item.modality == "image":
        return process_image(item, root, cfg, defaults, models, fingerprint)
    return VideoJob(item, root, cfg, defaults, models, fingerprint).run()
