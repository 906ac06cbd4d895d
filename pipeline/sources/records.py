"""Normalized source items and recorded problems: what every adapter yields, whatever its dataset.

Coordinate convention (all geometry in a SourceItem):
    boxes are (x0, y0, x1, y1) floats in pixels, origin at the top-left corner of the top-left pixel,
    x to the right, y down, x1/y1 exclusive; points are (x, y) in the same frame. `geometry_space`
    names the frame: "media" = the file at `media_path` as stored; "source" = the uncut source video or
    photo the media was (or is to be) cut from, of size `space_w` x `space_h` where the annotation
    states it. Annotation formats (x,y,w,h; l,t,r,b; normalized top/bottom/left/right; x w y h) are
    converted into this convention by the adapter that reads them, and nowhere else.

Time convention: `start`/`end` on the timeline of the media named by `media_path` when `media_cut` is
false (the range still has to be cut), otherwise on the source timeline the media was cut from
(provenance). `time_unit` says frames or seconds, `end_inclusive` says what `end` means.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa

Modality = Literal["image", "video", "frames"]
TimeUnit = Literal["frame", "sec"]
GeometrySpace = Literal["media", "source"]
LandmarksKind = Literal["5pt", "68pt_dlib"]
# present = exists and is not empty (not opened); ok = opened by --probe; the rest cannot be used
# (outside_root: the path leads out of the dataset root, so it is never opened)
MediaStatus = Literal["present", "ok", "missing", "empty", "unreadable", "outside_root"]
USABLE_MEDIA = ("present", "ok")

Box = tuple[float, float, float, float]


def xywh_to_xyxy(x: float, y: float, w: float, h: float) -> Box:
    return (float(x), float(y), float(x) + float(w), float(y) + float(h))


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One image or one clip as an official annotation describes it (datasets.md §10, trimmed)."""

    dataset: str
    native_id: str
    modality: Modality
    media_path: str  # relative to the dataset root, posix separators
    media_status: MediaStatus
    split: str  # official split, or "unsplit"
    identity: str | None  # "<dataset>:<label>"
    identity_kind: str  # manifests.schema.IdentityKind value
    license_tag: str
    media_cut: bool = True  # the media file holds exactly this item (already trimmed/cropped)
    youtube_id: str | None = None
    audio_path: str | None = None
    time_unit: TimeUnit | None = None
    start: float | None = None
    end: float | None = None
    end_inclusive: bool | None = None
    fps: float | None = None  # nominal rate stated by the annotation
    geometry_space: GeometrySpace | None = None
    space_w: int | None = None
    space_h: int | None = None
    crop: Box | None = None  # region of the source the media is (or is to be) cut from
    box: Box | None = None  # the face
    landmarks: tuple[float, ...] | None = None  # flat x0, y0, x1, y1, ...
    landmarks_kind: LandmarksKind | None = None
    frame_index: tuple[int, ...] | None = None  # per-frame annotations: source frame numbers ...
    frame_boxes: tuple[float, ...] | None = None  # ... with a face box (4 floats) per frame ...
    frame_landmarks: tuple[float, ...] | None = None  # ... and 5 points (10 floats) per frame
    labels: dict[str, object] = field(default_factory=dict)  # dataset-specific facts kept verbatim

    @property
    def item_id(self) -> str:
        return f"{self.dataset}/{self.native_id}"

    def crop_in_media(self, width: int, height: int) -> Box | None:
        """The annotated crop in pixels of the media as stored (width x height), when it still applies.

        Media already cut by the official tools hold only the crop; uncut sources may have been
        downloaded at another resolution than the one the annotation was drawn at, so the crop is
        rescaled (by height alone when the annotation states only a height, as HDTF's does).
        """
        if self.crop is None or self.media_cut:
            return None
        if self.geometry_space == "media":
            return self.crop
        scale_y = height / self.space_h if self.space_h else None
        scale_x = width / self.space_w if self.space_w else scale_y
        scale_y = scale_y or scale_x
        if scale_x is None or scale_y is None:
            return self.crop
        x0, y0, x1, y1 = self.crop
        return (x0 * scale_x, y0 * scale_y, x1 * scale_x, y1 * scale_y)

    @classmethod
    def from_row(cls, row: dict[str, object]) -> SourceItem:
        """Back from a manifest row (parquet gives lists and NaN where the record has tuples and None)."""
        values = {}
        for name in cls.__dataclass_fields__:
            value = row.get(name)
            if isinstance(value, float) and value != value:  # NaN from a nullable numeric column
                value = None
            elif hasattr(value, "tolist"):
                value = value.tolist()
            if isinstance(value, list):
                value = tuple(value)
            values[name] = value
        values["labels"] = json.loads(str(row.get("labels") or "{}"))
        for name in ("space_w", "space_h"):
            if values[name] is not None:
                values[name] = int(values[name])
        return cls(**values)

    def row(self) -> dict[str, object]:
        values = asdict(self)
        values["labels"] = json.dumps(self.labels, sort_keys=True, ensure_ascii=False)
        return {"item_id": self.item_id, **values}


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in a dataset that could not be used as the official files describe it.

    Problems never stop a scan: they are collected, counted by reason and written beside the manifest,
    so that a user sees exactly which file and line to look at.
    """

    dataset: str
    file: str  # relative to the dataset root
    line: int | None  # 1-based, when the problem is one line of an annotation file
    reason: str  # short stable code, e.g. "malformed_line" (see REASONS)
    detail: str  # human-readable: what was expected, what was found
    item_id: str | None = None

    def row(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"[{self.dataset}] {where}: {self.reason}: {self.detail}"


REASONS: dict[str, str] = {
    "missing_annotation_file": "an annotation file of the official layout is absent",
    "unreadable_file": "a file exists but cannot be read or decoded as text/JSON",
    "malformed_line": "an annotation line does not have the official format",
    "malformed_entry": "a JSON entry lacks a field of the official format or has a wrong type",
    "missing_media": "an annotation refers to a media file that is not on disk",
    "empty_file": "a media file has zero bytes",
    "unreadable_media": "a media file cannot be opened or is truncated (--probe)",
    "no_face": "no face in the item's middle frame (--faces)",
    "multiple_faces": "several faces of similar size in the item's middle frame (--faces)",
    "missing_annotation": "an item lacks an entry in a companion annotation file",
    "unlisted_annotation": "an annotation entry refers to no listed item",
    "duplicate_id": "the same item id appears twice",
    "no_crop_window": "an annotated interval has no crop window",
    "no_intervals": "a video has no annotated interval",
    "overlapping_interval": "an interval overlaps another of the same video: its frames are built once, elsewhere",
    "invalid_value": "a value is out of range (an interval that ends before it starts, a time or size that is "
    "infinite, NaN or negative, a box without area): the item is not built",
    "media_outside_root": "a media path leads out of the dataset root ('..', an absolute path, a symlink "
    "pointing elsewhere): it is never opened",
    "count_mismatch": "the number of files differs from the count the annotation states",
    "missing_view": "a recording lacks a camera view or emotion that the dataset defines",
    "unextracted_archive": "an archive is present but was not extracted",
    "not_media": "a folder source's file is no video or image (by extension, or by its first bytes)",
    "symlink_loop": "a link leads back to itself or to a folder that holds it: never followed",
    "linked_folder": "a link to a folder inside the root: its files are read where they lie, not twice",
    "duplicate_content": "a file has the same bytes as another: built once, as the other",
    "unknown_split": "a sidecar row names a split other than train, val or test",
}


class Refused(ValueError):
    """An item the build refuses before it reads the media: a permanent failure, recorded with `reason`."""

    reason: ClassVar[str]


class InvalidValue(Refused):
    reason = "invalid_value"


class OutsideRoot(Refused):
    reason = "media_outside_root"


class TooLarge(Refused):
    reason = "too_large"


def invalid_values(item: SourceItem) -> str | None:
    """What in an item's annotated values no stage can use, or None when they all can.

    Annotation files are text and JSON, where "inf", "NaN", 1e999 and "-5" all parse as numbers; such a
    value would reach the decoder's arithmetic (an infinite range, a crop without area) and fail there as
    a bug. Every adapter's items pass through this one rule (SourceAdapter.items), and the build checks it
    again before it opens anything. Coordinates may be negative (VGGFace2's loose boxes reach past the
    image edge); times, rates and sizes may not.
    """
    return _time_problem(item) or _size_problem(item) or _geometry_problem(item)


def _time_problem(item: SourceItem) -> str | None:
    for name in ("start", "end", "fps"):
        value = getattr(item, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            return f"{name} {value!r} is not a finite number >= 0"
    if item.fps is not None and item.fps <= 0:
        return f"fps {item.fps!r} is not above 0"
    start, end = item.start, item.end
    if start is not None and end is not None and (end < start or (end == start and not item.end_inclusive)):
        return f"range {item.start!r}-{item.end!r} ({item.time_unit}) ends before it starts"
    return None


def _size_problem(item: SourceItem) -> str | None:
    for name in ("space_w", "space_h"):
        value = getattr(item, name)
        if value is not None and value <= 0:
            return f"{name} {value!r} is not above 0"
    return None


def _geometry_problem(item: SourceItem) -> str | None:
    for name in ("crop", "box", "frame_boxes"):
        boxes = getattr(item, name)
        if boxes is not None and (problem := _boxes_problem(np.asarray(boxes, dtype=np.float64))):
            return f"{name}: {problem}"
    for name in ("landmarks", "frame_landmarks"):
        points = getattr(item, name)
        if points is not None and not np.isfinite(np.asarray(points, dtype=np.float64)).all():
            return f"{name}: a point is not a finite number"
    if item.frame_index is not None and min(item.frame_index, default=0) < 0:
        return f"frame_index: negative frame number {min(item.frame_index)}"
    return None


def _boxes_problem(values: np.ndarray) -> str | None:
    """Why (x0, y0, x1, y1) boxes, flat, cannot be cut: not finite, or no area."""
    if values.size % 4:
        return f"{values.size} values are not whole boxes of 4"
    boxes = values.reshape(-1, 4)
    bad = ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if not bad.any():
        return None
    first = boxes[int(np.argmax(bad))]
    what = "is not finite" if not np.isfinite(first).all() else "has no area (x1 <= x0 or y1 <= y0)"
    return f"({', '.join(f'{v:g}' for v in first)}) {what}"


def leads_outside(real_root: Path, rel_path: str, folder: bool = False) -> str | None:
    """Where `rel_path` leads when that is outside the dataset root, else None; for a frame folder, the
    first frame linked out of it too.

    Media paths come from annotation files (FFHQ's JSON names its files, CelebV-HQ's keys name clips) and
    from trees that downloads unpacked (tar keeps symlinks): '..', an absolute path or a link could name
    any file of the machine, which the build would read and publish as training data. `real_root` is the
    root with its own symlinks resolved (a root that is itself a link is fine); only stat-level calls are
    made, nothing is opened.
    """
    target = (real_root / rel_path).resolve()
    if not target.is_relative_to(real_root):
        return f"resolves to {target}, outside the dataset root {real_root}"
    if folder and target.is_dir():
        try:
            entries = list(os.scandir(target))
        except OSError:
            return None  # an unlistable folder is the opener's problem (missing_media, unreadable_media)
        for entry in entries:
            if entry.is_symlink() and not (linked := Path(entry.path).resolve()).is_relative_to(real_root):
                return f"{entry.name} links to {linked}, outside the dataset root {real_root}"
    return None


def refuse_unusable(item: SourceItem, root: Path) -> None:
    """Raises Refused for an item whose values or media path no stage may use; opens nothing.

    The scan already dropped or flagged such items; this repeats the rule where the media are read, for a
    scan made by an older version or a tree that changed since (a retry re-reads the disk).
    """
    problem = invalid_values(item)
    if problem:
        raise InvalidValue(f"{item.item_id}: {problem}")
    outside = leads_outside(Path(root).resolve(), item.media_path, folder=item.modality == "frames")
    if outside:
        raise OutsideRoot(f"{item.media_path}: {outside}")


_BOX = pa.list_(pa.float64())  # 4 values; fixed-size lists with nulls do not round-trip parquet
ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("dataset", pa.string()),
        ("native_id", pa.string()),
        ("modality", pa.string()),
        ("media_path", pa.string()),
        ("media_status", pa.string()),
        ("split", pa.string()),
        ("identity", pa.string()),
        ("identity_kind", pa.string()),
        ("license_tag", pa.string()),
        ("media_cut", pa.bool_()),
        ("youtube_id", pa.string()),
        ("audio_path", pa.string()),
        ("time_unit", pa.string()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("end_inclusive", pa.bool_()),
        ("fps", pa.float64()),
        ("geometry_space", pa.string()),
        ("space_w", pa.int32()),
        ("space_h", pa.int32()),
        ("crop", _BOX),
        ("box", _BOX),
        ("landmarks", pa.list_(pa.float32())),
        ("landmarks_kind", pa.string()),
        ("frame_index", pa.list_(pa.int64())),
        ("frame_boxes", pa.list_(pa.float32())),
        ("frame_landmarks", pa.list_(pa.float32())),
        ("labels", pa.string()),
    ]
)

PROBLEM_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("item_id", pa.string()),
    ]
)
