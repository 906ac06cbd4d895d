"""Shard samples and small build directories in exactly the v1 output contract, made of real parts.

Clips are rendered by the sample engine (real face photos in motion) and encoded to H.264 with PyAV,
images are JPEG, tars are written by webdataset's TarWriter and tables by pyarrow, so the report and the
inspector read what `rp-data build` writes, not a stand-in. Landmarks are a fixed cloud of 478 points
inside the known face box: these tests check shapes and drawing, not landmark accuracy.
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import webdataset as wds
from PIL import Image

from pipeline.sample.render import Actor, Shot, render_still, render_video, write_mp4

Sample = dict[str, Any]  # webdataset sample: "__key__" and member name -> bytes
FINGERPRINT = "fp-3fa2c1d9"
COLUMNS = (
    "item_id", "dataset", "kind", "status", "reason", "error_class", "message", "shard", "tar", "key", "frames",
    "face_px", "blur", "yaw", "pitch", "roll", "seconds_decode", "seconds_faces", "seconds_encode",
    "seconds_total", "attempt",
)  # fmt: skip
# what the build records of each source video; tables of older builds lack these columns
MEDIA = ("media_codec", "media_format", "media_matrix", "media_range", "media_rotation", "media_vfr")


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@cache
def _clip(frames: int, seed: int, fps: int) -> tuple[bytes, np.ndarray]:
    """H.264 mp4 bytes and the face box (frames, 4) of a rendered 512x512 clip; cached across tests."""
    shot = Shot((Actor("astronaut", (0.5, 0.5), 200),), frames, scene=seed)
    video, geometry = render_video([shot], (512, 512), seed=seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        write_mp4(path, video, fps)
        data = path.read_bytes()
    return data, np.array([faces[0].box for faces in geometry], np.float32)


@cache
def _image(seed: int, side: int) -> tuple[bytes, np.ndarray]:
    image, geometry = render_still([Actor("t1_b", (0.5, 0.5), side * 0.35)], (side, side), seed=seed)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), np.array([geometry[0].box], np.float32)


def _landmarks(boxes: np.ndarray) -> np.ndarray:
    """478 points per frame spread over the ellipse inscribed in each box, float16 as the contract says."""
    rng = np.random.default_rng(478)
    angle = rng.uniform(0, 2 * np.pi, 478)
    radius = np.sqrt(rng.uniform(0, 1, 478))
    unit = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1) * 0.5 + 0.5  # in [0, 1]^2
    origin, extent = boxes[:, None, :2], boxes[:, None, 2:] - boxes[:, None, :2]
    return (origin + unit[None] * extent).astype(np.float16)


def _pose(boxes: np.ndarray) -> np.ndarray:
    t = np.arange(len(boxes), dtype=np.float32)
    angles = np.stack([8 * np.sin(t / 5), 4 * np.cos(t / 7), 3 * np.sin(t / 3)], axis=1)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    return np.hstack([angles, centre, boxes[:, 2:3] - boxes[:, :1]]).astype(np.float32)


def _meta(key: str, dataset: str, kind: str, frames: int, fps: float | None, side: int) -> dict[str, Any]:
    span = {"unit": "frame", "start": 0, "end": frames} if kind == "clip" else None  # a still has no range
    return {
        "key": key, "item_id": f"{dataset}/{key}", "dataset": dataset, "native_id": key.split("_")[1],
        "kind": kind, "identity": "id-7", "identity_kind": "person", "youtube_id": None, "split": "train",
        "license": "research-only", "fps": fps, "frames": frames, "width": side, "height": side,
        "crop_box": [100.0, 40.0, 612.0, 552.0], "source_range": span,
        "quality": {"face_px": 210.0, "blur": 140.5, "yaw": 6.1, "pitch": 3.2, "roll": 2.0},
        "pipeline_version": "1.0.0", "fingerprint": FINGERPRINT,
    }  # fmt: skip


def clip_sample(key: str, frames: int = 12, seed: int = 1, fps: int = 25, nan_frames: tuple[int, ...] = ()) -> Sample:
    """A valid clip sample; `nan_frames` get all-NaN landmarks (the contract's "no face in this frame")."""
    mp4, boxes = _clip(frames, seed, fps)
    landmarks = _landmarks(boxes)
    landmarks[list(nan_frames)] = np.nan
    return {
        "__key__": key,
        "mp4": mp4,
        "json": json.dumps(_meta(key, key.split("_")[0], "clip", frames, fps, 512)).encode(),
        "landmarks.npy": npy(landmarks),
        "pose.npy": npy(_pose(boxes)),
        "bbox.npy": npy(boxes),
    }


def image_sample(key: str, seed: int = 1, side: int = 1024) -> Sample:
    jpg, boxes = _image(seed, side)
    return {
        "__key__": key,
        "jpg": jpg,
        "json": json.dumps(_meta(key, key.split("_")[0], "image", 1, None, side)).encode(),
        "landmarks.npy": npy(_landmarks(boxes)),
        "pose.npy": npy(_pose(boxes)),
        "bbox.npy": npy(boxes),
    }


def write_tar(path: Path, samples: list[Sample]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(path)) as writer:
        for sample in samples:
            writer.write(sample)
    return path


def row(**values: Any) -> dict[str, Any]:
    """A manifest row: every contract column, None where not given, and the media columns given."""
    unknown = set(values) - set(COLUMNS) - set(MEDIA)
    assert not unknown, unknown
    media = {column: values[column] for column in MEDIA if column in values}
    return {column: values.get(column) for column in COLUMNS} | media | {"attempt": values.get("attempt", 1)}


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """The table with the media columns only when some row has them, as an older build's table lacks them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    media = [column for column in MEDIA if any(column in r for r in rows)]
    pd.DataFrame(rows, columns=[*COLUMNS, *media]).to_parquet(path, index=False)


def sample_row(sample: Sample, shard: str, tar: str, **quality: float) -> dict[str, Any]:
    meta = json.loads(sample["json"])
    defaults = {"face_px": 200.0, "blur": 120.0, "yaw": 5.0, "pitch": 3.0, "roll": 2.0}
    return row(
        item_id=meta["item_id"], dataset=meta["dataset"], kind="sample", status="ok", shard=shard, tar=tar,
        key=sample["__key__"], frames=meta["frames"], seconds_encode=0.2, seconds_total=0.3,
        **(defaults | quality),
    )  # fmt: skip


def commit(root: Path, work: str, tars: dict[str, list[Sample]], rows: list[dict[str, Any]]) -> None:
    """Writes one work shard the way the build commits it: tars, its parquet, then stats.json last.

    `tars` maps names relative to the build directory (as the manifest's tar column has them) to samples;
    stats.json lists them relative to shards/, as pipeline.shards.WorkShardWriter does.
    """
    for name, samples in tars.items():
        write_tar(root / name, samples)
    write_rows(root / "shards" / f"{work}.parquet", rows)
    stats = {
        "work": work,
        "tars": [Path(name).name for name in tars],
        "samples": sum(len(samples) for samples in tars.values()),
        "bytes": sum((root / name).stat().st_size for name in tars),
        "frames": sum(r["frames"] or 0 for r in rows if r["kind"] == "sample"),
        "seconds": 4.5,
        "status_counts": pd.Series([r["status"] for r in rows]).value_counts().to_dict(),
    }
    (root / "shards" / f"{work}.stats.json").write_text(json.dumps(stats))


@dataclass(frozen=True)
class Build:
    root: Path
    committed_keys: tuple[str, ...]  # ok samples in committed shards
    uncommitted_key: str  # an ok sample in a shard without stats.json


def write_build(root: Path) -> Build:
    """Two committed work shards (vfhq clips over two tars, ffhq images), one shard still in progress."""
    clips = [
        clip_sample("vfhq_Clip-Ab3-F100-130_3fa2c1_c000", frames=12, seed=1),
        clip_sample("vfhq_Clip-Ab3-F100-130_3fa2c1_c001", frames=9, seed=2),
        clip_sample("vfhq_Clip-Xy9-F0-16_77aa01_c000", frames=16, seed=3, nan_frames=(5,)),
    ]
    images = [image_sample("ffhq_00017_9b1e40_i000", seed=4), image_sample("ffhq_00018_0c2d55_i000", seed=5)]
    tar_a, tar_b, tar_c = "shards/vfhq-00000-00.tar", "shards/vfhq-00000-01.tar", "shards/ffhq-00000-00.tar"
    vfhq_rows = [
        row(item_id="vfhq/Clip-Ab3", dataset="vfhq", kind="source", status="ok", shard="vfhq-00000", frames=31,
            face_px=205.0, blur=130.0, yaw=5.0, pitch=3.0, roll=2.0, seconds_decode=0.4, seconds_faces=0.6,
            seconds_total=1.4),
        row(item_id="vfhq/Clip-Xy9", dataset="vfhq", kind="source", status="ok", shard="vfhq-00000", frames=17,
            seconds_total=0.9),
        row(item_id="vfhq/Clip-Nf0", dataset="vfhq", kind="source", status="filtered", reason="no_face",
            shard="vfhq-00000", frames=40, seconds_total=0.5),
        row(item_id="vfhq/Clip-Sm1", dataset="vfhq", kind="source", status="filtered", reason="face_too_small",
            shard="vfhq-00000", frames=40, face_px=38.0, seconds_total=0.5),
        row(item_id="vfhq/Clip-Br2", dataset="vfhq", kind="source", status="failed", reason="decode_error",
            error_class="permanent", message="moov atom not found", shard="vfhq-00000", attempt=3),
        sample_row(clips[0], "vfhq-00000", tar_a, face_px=210.0, yaw=12.0),
        sample_row(clips[1], "vfhq-00000", tar_a, face_px=190.0, blur=95.0),
        sample_row(clips[2], "vfhq-00000", tar_b, face_px=250.0, pitch=9.0),
        row(item_id="vfhq/Clip-Xy9", dataset="vfhq", kind="sample", status="filtered", reason="blurry",
            shard="vfhq-00000", frames=20, blur=12.0),
    ]  # fmt: skip
    ffhq_rows = [
        row(item_id="ffhq/00017", dataset="ffhq", kind="source", status="ok", shard="ffhq-00000", frames=1),
        row(item_id="ffhq/00018", dataset="ffhq", kind="source", status="ok", shard="ffhq-00000", frames=1),
        row(item_id="ffhq/00019", dataset="ffhq", kind="source", status="filtered", reason="extreme_pose",
            shard="ffhq-00000", frames=1, yaw=71.0),
        *(sample_row(image, "ffhq-00000", tar_c, face_px=380.0) for image in images),
    ]  # fmt: skip
    commit(root, "vfhq-00000", {tar_a: clips[:2], tar_b: clips[2:]}, vfhq_rows)
    commit(root, "ffhq-00000", {tar_c: images}, ffhq_rows)
    # in progress: tar and parquet written, no stats.json yet, so none of it may be counted
    pending = clip_sample("vfhq_Clip-Pn4-F0-12_5d5d5d_c000", frames=10, seed=6)
    write_tar(root / "shards" / "vfhq-00001-00.tar", [pending])
    write_rows(
        root / "shards" / "vfhq-00001.parquet",
        [
            row(item_id="vfhq/Clip-Pn4", dataset="vfhq", kind="source", status="ok", shard="vfhq-00001"),
            sample_row(pending, "vfhq-00001", "shards/vfhq-00001-00.tar"),
            *(row(item_id=f"vfhq/Clip-Q{i}", dataset="vfhq", kind="source", status="failed", reason="missing_media",
                  shard="vfhq-00001") for i in range(7)),
        ],
    )  # fmt: skip
    write_rows(root / "manifest.parquet", vfhq_rows + ffhq_rows)
    info = {
        "fingerprint": FINGERPRINT,
        "pipeline_version": "1.0.0",
        "config": {"clip": {"fps": 25, "size": 512, "min_frames": 8}, "filters": {"min_face_px": 64}},
        "sources": {"vfhq": {"root": "/data/VFHQ", "items": 5}, "ffhq": {"root": "/data/FFHQ", "items": 3}},
        "created": "2025-05-01T12:00:00+00:00",
        "excluded_split": "test",
    }
    (root / "build.json").write_text(json.dumps(info, indent=2))
    keys = tuple(sample["__key__"] for sample in clips + images)
    return Build(root, keys, pending["__key__"])
