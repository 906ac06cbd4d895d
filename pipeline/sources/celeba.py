"""CelebA: the partition list joined with identities, wild boxes and landmarks (datasets.md §2)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict

from pipeline.sources.base import KeyedLookahead, SourceAdapter
from pipeline.sources.records import SourceItem, xywh_to_xyxy

IMAGE_ID = re.compile(r"\d{6}\.(jpg|png)")
PARTITIONS = {"0": "train", "1": "val", "2": "test"}


class CelebAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # wild: larger in-the-wild photos, boxes and landmarks apply; aligned: 178x218 crops
    variant: Literal["wild", "aligned"] = "wild"


class CelebA(SourceAdapter):
    name = "celeba"
    Options = CelebAOptions

    def _pairs(self, rel: str) -> Iterator[tuple[str, str]]:
        """'000001.jpg 2880' rows; a header line (re-hosted copies add one) is skipped, not reported."""
        for number, text in self.lines(rel):
            fields = text.split()
            if len(fields) == 2 and IMAGE_ID.fullmatch(fields[0]):
                yield fields[0], fields[1]
            elif number > 1:
                self.problem(rel, "malformed_line", f"expected '<image> <value>', got {text!r}", number)

    def _table(self, rel: str, width: int) -> Iterator[tuple[str, tuple[float, ...]]]:
        """The count/header/rows layout of list_bbox and list_landmarks; the count is checked."""
        stated = None
        rows = 0
        for number, text in self.lines(rel):
            fields = text.split()
            if number == 1:
                if len(fields) == 1 and fields[0].isdigit():
                    stated = int(fields[0])
                else:
                    self.problem(rel, "malformed_line", f"line 1 should be the row count, got {text!r}", 1)
                continue
            if number == 2 and not IMAGE_ID.fullmatch(fields[0]):
                continue  # the column header
            try:
                if len(fields) != width + 1 or not IMAGE_ID.fullmatch(fields[0]):
                    raise ValueError(f"expected an image id and {width} numbers")
                values = tuple(float(v) for v in fields[1:])
            except ValueError as exc:
                self.problem(rel, "malformed_line", f"{exc}, got {text!r}", number)
                continue
            rows += 1
            yield fields[0], values
        if stated is not None and stated != rows:
            self.problem(rel, "count_mismatch", f"line 1 states {stated} rows, {rows} readable rows follow")

    def read_items(self) -> Iterator[SourceItem]:
        layout = self.spec.layout
        variant = self.options.variant
        identity_rel = layout.annotation("identity")
        bbox_rel = layout.annotation("bbox")
        marks_rel = layout.annotation("landmarks_wild" if variant == "wild" else "landmarks_aligned")
        identities = KeyedLookahead(self._pairs(identity_rel))
        boxes = KeyedLookahead(self._table(bbox_rel, 4))
        marks = KeyedLookahead(self._table(marks_rel, 10))
        partition_rel = layout.annotation("partition")
        for image_id, code in self._pairs(partition_rel):
            item_id = self.item_id(image_id.rsplit(".", 1)[0])
            split = PARTITIONS.get(code)
            if split is None:
                self.problem(partition_rel, "invalid_value", f"{image_id}: partition {code!r} not in 0/1/2")
                continue
            media = layout.media_path(variant, image_id=image_id)
            person = identities.pop(image_id)
            if person is None:
                self.problem(identity_rel, "missing_annotation", f"no identity for {image_id}", None, item_id)
            box = boxes.pop(image_id)
            points = marks.pop(image_id)
            if points is None:
                self.problem(marks_rel, "missing_annotation", f"no landmarks for {image_id}", None, item_id)
            wild_box = xywh_to_xyxy(*box) if box else None
            if box is None:
                self.problem(bbox_rel, "missing_annotation", f"no box for {image_id}", None, item_id)
            yield SourceItem(
                dataset=self.name,
                native_id=image_id.rsplit(".", 1)[0],
                modality="image",
                media_path=media,
                media_status=self.media_status(media, item_id),
                split=split,
                identity=f"{self.name}:{person}" if person else None,
                identity_kind="label" if person else "none",
                license_tag=self.spec.license.tag,
                geometry_space="media",
                # the official boxes are in in-the-wild pixels: they never describe an aligned image
                box=wild_box if variant == "wild" else None,
                landmarks=points,
                landmarks_kind="5pt" if points else None,
                labels={"variant": variant}
                | ({"wild_box": list(wild_box)} if variant == "aligned" and wild_box else {}),
            )
        for source, rel in ((identities, identity_rel), (boxes, bbox_rel), (marks, marks_rel)):
            for image_id, _ in source.leftovers():
                self.problem(rel, "unlisted_annotation", f"{image_id} is not in {partition_rel}")
