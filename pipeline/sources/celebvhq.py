"""CelebV-HQ: clips of celebvhq_info.json on raw downloads or the official processed crops (§4)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import ijson
from pydantic import BaseModel, ConfigDict

from pipeline.sources.base import SourceAdapter
from pipeline.sources.records import Box, SourceItem
from pipeline.sources.youtube import is_youtube_id
from pipeline.video_file import displayed_size


class CelebVHQOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # processed: the official square crops when present (raw otherwise); raw: always cut from the source
    prefer: Literal["processed", "raw"] = "processed"


def official_crop(bbox_norm: dict[str, float], width: int, height: int) -> tuple[Box, Box]:
    """(face box, crop window) in source pixels, the crop made exactly as download_and_process.py does.

    The script widens each side by 0.02 (clamped to the frame), rounds to pixels at the downloaded
    resolution, then keeps a centred square of side 2*floor(min(h, w)/2).
    """
    top, bottom, left, right = (float(bbox_norm[k]) for k in ("top", "bottom", "left", "right"))
    face = (left * width, top * height, right * width, bottom * height)
    t, b = round(max(top - 0.02, 0.0) * height), round(min(bottom + 0.02, 1.0) * height)
    lft, r = round(max(left - 0.02, 0.0) * width), round(min(right + 0.02, 1.0) * width)
    half = min(b - t, r - lft) // 2
    cy, cx = (t + b) / 2, (lft + r) / 2
    return face, (cx - half, cy - half, cx + half, cy + half)


class CelebVHQ(SourceAdapter):
    name = "celebvhq"
    Options = CelebVHQOptions

    def read_items(self) -> Iterator[SourceItem]:
        self._sizes: dict[str, tuple[int, int] | None] = {}
        rel = self.spec.layout.annotation("info")
        path = self.root / rel
        if not path.exists():
            self.problem(rel, "missing_annotation_file", "not found in the dataset root")
            return
        try:
            mappings = self._mappings(path)
            with open(path, "rb") as handle:
                for key, clip in ijson.kvitems(handle, "clips", use_float=True):
                    item = self._item(rel, key, clip, mappings)
                    if item is not None:
                        yield item
        except ijson.JSONError as exc:
            self.problem(rel, "unreadable_file", f"JSON stops parsing: {exc}")

    def annotation_file(self, item: SourceItem) -> str:
        return self.spec.layout.annotation("info")

    @staticmethod
    def _mappings(path: Path) -> dict[str, list[str]]:
        with open(path, "rb") as handle:
            meta = next(ijson.items(handle, "meta_info"), {}) or {}
        return {k: list(meta.get(f"{k}_mapping", [])) for k in ("appearance", "action")}

    def _source_size(self, raw: str) -> tuple[int, int] | None:
        """The displayed size the normalised boxes are fractions of (a phone's portrait video is stored on
        its side); clips of one video share one read (and one problem if it fails)."""
        if raw not in self._sizes:
            try:
                self._sizes[raw] = displayed_size(self.root / raw)
            except Exception as exc:
                self.problem(raw, "unreadable_media", f"cannot read the video's first frame: {exc}")
                self._sizes[raw] = None
        return self._sizes[raw]

    def _item(self, rel: str, key: str, clip: Any, mappings: dict[str, list[str]]) -> SourceItem | None:
        try:
            ytid = str(clip.get("ytb_id") or key[:11])
            start, end = float(clip["duration"]["start_sec"]), float(clip["duration"]["end_sec"])
            bbox = {k: float(clip["bbox"][k]) for k in ("top", "bottom", "left", "right")}
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            self.problem(rel, "malformed_entry", f"clip {key!r}: {type(exc).__name__} {exc}")
            return None
        item_id = self.item_id(key)
        # a dropped clip's problem has no item_id: it has no row of its own (see SourceAdapter.items)
        if not is_youtube_id(ytid) or not key.startswith(ytid + "_"):
            self.problem(rel, "invalid_value", f"clip {key!r}: YouTube id {ytid!r} does not prefix the key")
            return None
        inside = all(0.0 <= v <= 1.0 for v in bbox.values())  # NaN too is outside
        if not (inside and bbox["left"] < bbox["right"] and bbox["top"] < bbox["bottom"]):
            # times are checked with every adapter's (SourceAdapter.items)
            self.problem(rel, "invalid_value", f"clip {key!r}: bbox {bbox} is not a box inside 0..1")
            return None
        processed = self.spec.layout.media_path("processed", key=key)
        raw = self.spec.layout.media_path("raw", ytid=ytid)
        candidates = [processed, raw] if self.options.prefer == "processed" else [raw]
        media = next((c for c in candidates if self.exists(c)), candidates[0])
        use_raw = media == raw
        status = self.media_status(media, item_id)
        face = crop = size = None
        if use_raw and status == "present":
            size = self._source_size(raw)
            if size is None:
                status = "unreadable"
            else:
                face, crop = official_crop(bbox, *size)
        attributes = clip.get("attributes") or {}
        return SourceItem(
            dataset=self.name,
            native_id=key,
            modality="video",
            media_path=media,
            media_status=status,
            split="unsplit",
            identity=f"{self.name}:{ytid}",
            identity_kind="proxy_video",
            license_tag=self.spec.license.tag,
            media_cut=not use_raw,
            youtube_id=ytid,
            time_unit="sec",
            start=start,
            end=end,
            end_inclusive=False,
            geometry_space="source" if size else None,
            space_w=size[0] if size else None,
            space_h=size[1] if size else None,
            crop=crop,
            box=face,
            labels={
                "bbox_norm": bbox,
                "appearance": _named(attributes.get("appearance"), mappings["appearance"]),
                "action": _named(attributes.get("action"), mappings["action"]),
                "emotion": attributes.get("emotion"),
            },
        )


def _named(flags: Any, names: list[str]) -> list[str]:
    """Active attribute names; indices stand in when the JSON's mapping is shorter than the flags."""
    if not isinstance(flags, list):
        return []
    return [names[i] if i < len(names) else str(i) for i, flag in enumerate(flags) if flag]
