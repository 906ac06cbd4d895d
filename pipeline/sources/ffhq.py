"""FFHQ: the 255 MB metadata JSON, streamed entry by entry (datasets.md §3)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any, Literal

import ijson
from pydantic import BaseModel, ConfigDict

from pipeline.sources.base import SourceAdapter
from pipeline.sources.records import SourceItem

CATEGORIES = {"training": "train", "validation": "val"}
# the licence names FFHQ's JSON uses, as short tags (unknown names are slugged, never dropped)
LICENSES = {
    "Attribution License": "cc-by-2.0",
    "Attribution-NonCommercial License": "cc-by-nc-2.0",
    "Public Domain Dedication (CC0)": "cc0-1.0",
    "Public Domain Mark": "pdm-1.0",
    "No known copyright restrictions": "no-known-restrictions",
    "United States Government Work": "us-gov",
}


def license_tag(name: str) -> str:
    slug = LICENSES.get(name) or re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-") or "unknown"
    return f"ffhq:{slug}"


class FFHQOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variant: Literal["image", "thumbnail"] = "image"


class FFHQ(SourceAdapter):
    name = "ffhq"
    Options = FFHQOptions

    def read_items(self) -> Iterator[SourceItem]:
        rel = self.spec.layout.annotation("metadata")
        try:
            handle = open(self.root / rel, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            self.problem(rel, "missing_annotation_file", "not found in the dataset root")
            return
        with handle:
            try:
                for key, entry in ijson.kvitems(handle, "", use_float=True):
                    item = self._item(rel, key, entry)
                    if item is not None:
                        yield item
            except ijson.JSONError as exc:
                self.problem(rel, "unreadable_file", f"JSON stops parsing after byte {handle.tell()}: {exc}")

    def annotation_file(self, item: SourceItem) -> str:
        return self.spec.layout.annotation("metadata")

    def _item(self, rel: str, key: str, entry: Any) -> SourceItem | None:
        try:
            index = int(key)
            file_fields = entry[self.options.variant]
            media = file_fields["file_path"]
            if not isinstance(media, str):
                raise TypeError(f"file_path {media!r} is not a string")
            width, height = (int(v) for v in file_fields["pixel_size"])
            drawn_width = float(entry["image"]["pixel_size"][0])  # thumbnails reuse the 1024 landmarks
            split = CATEGORIES[entry["category"]]
            points = entry["image"]["face_landmarks"]
            if len(points) != 68 or any(len(p) != 2 for p in points):
                raise ValueError(f"{len(points)} landmarks instead of 68")
            landmarks = [float(c) for point in points for c in point]
        except (KeyError, TypeError, ValueError) as exc:
            self.problem(rel, "malformed_entry", f"entry {key!r}: {type(exc).__name__} {exc}")
            return None
        if min(width, height) <= 0 or not 0 < drawn_width < math.inf:
            self.problem(rel, "invalid_value", f"entry {key!r}: pixel_size {width}x{height}, image width {drawn_width}")
            return None
        native_id = f"{index:05d}"
        item_id = self.item_id(native_id)
        scale = width / drawn_width
        metadata = entry.get("metadata", {})
        wild = entry.get("in_the_wild", {})
        return SourceItem(
            dataset=self.name,
            native_id=native_id,
            modality="image",
            media_path=media,
            media_status=self.media_status(media, item_id),
            split=split,
            identity=None,
            identity_kind="none",
            license_tag=license_tag(str(metadata.get("license", "unknown"))),
            geometry_space="media",
            space_w=width,
            space_h=height,
            landmarks=tuple(c * scale for c in landmarks),
            landmarks_kind="68pt_dlib",
            labels={
                "license_url": metadata.get("license_url"),
                "photo_url": metadata.get("photo_url"),
                "pixel_md5": file_fields.get("pixel_md5"),
                "wild_face_rect": wild.get("face_rect"),
                "wild_pixel_size": wild.get("pixel_size"),
            },
        )
