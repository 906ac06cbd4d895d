"""VGGFace2: identity folders, list files, loose boxes and 5-point landmarks (datasets.md §1)."""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator

from pipeline.sources.base import KeyedLookahead, SourceAdapter
from pipeline.sources.records import USABLE_MEDIA, SourceItem, xywh_to_xyxy

LISTED_IMAGE = re.compile(r"(n\d{6})/([^/\s]+)\.jpg")
SPLITS = ("train", "test")


def _csv_fields(text: str) -> list[str]:
    return next(csv.reader([text], skipinitialspace=True))


class VGGFace2(SourceAdapter):
    name = "vggface2"

    def read_items(self) -> Iterator[SourceItem]:
        meta = self._identity_meta()
        for split in SPLITS:
            yield from self._split_items(split, meta)

    def _identity_meta(self) -> dict[str, dict[str, object]]:
        """Class id -> name, gender, Sample_Num. Names with commas are re-joined (the known trap)."""
        rel = self.spec.layout.annotation("identity_meta")
        meta: dict[str, dict[str, object]] = {}
        for number, text in self.lines(rel):
            fields = _csv_fields(text)
            if number == 1 and fields and fields[0].strip().lower() == "class_id":
                continue
            if len(fields) < 5:
                self.problem(rel, "malformed_line", f"expected 5 fields, got {len(fields)}: {text!r}", number)
                continue
            class_id, *name_parts, count, flag, gender = (f.strip() for f in fields)
            if not re.fullmatch(r"n\d{6}", class_id) or not count.isdigit():
                self.problem(rel, "malformed_line", f"bad class id or Sample_Num: {text!r}", number)
                continue
            meta[class_id] = {
                "name": ", ".join(name_parts),
                "sample_num": int(count),
                "flag": flag,
                "gender": gender,
            }
        return meta

    def _numeric_rows(self, rel: str, width: int) -> Iterator[tuple[str, tuple[float, ...]]]:
        for number, text in self.lines(rel):
            fields = _csv_fields(text)
            if number == 1 and fields and fields[0].strip().upper() == "NAME_ID":
                continue
            try:
                if len(fields) != width + 1:
                    raise ValueError(f"expected {width + 1} fields, got {len(fields)}")
                yield fields[0].strip(), tuple(float(v) for v in fields[1:])
            except ValueError as exc:
                self.problem(rel, "malformed_line", f"{exc}: {text!r}", number)

    def _split_items(self, split: str, meta: dict[str, dict[str, object]]) -> Iterator[SourceItem]:
        layout = self.spec.layout
        list_rel = layout.annotation(f"{split}_list")
        bb_rel = layout.annotation("loose_bb", split=split)
        lm_rel = layout.annotation("loose_landmark", split=split)
        boxes = KeyedLookahead(self._numeric_rows(bb_rel, 4))
        marks = KeyedLookahead(self._numeric_rows(lm_rel, 10))
        on_disk: Counter[str] = Counter()
        previous = None
        for number, text in self.lines(list_rel):
            match = LISTED_IMAGE.fullmatch(text.strip())
            if match is None:
                self.problem(list_rel, "malformed_line", f"expected 'n000000/0000_00.jpg', got {text!r}", number)
                continue
            class_id = match.group(1)
            name_id = f"{class_id}/{match.group(2)}"
            item_id = self.item_id(name_id)
            if name_id == previous:
                self.problem(list_rel, "duplicate_id", f"{name_id} listed twice", number, item_id)
                continue
            previous = name_id
            media = layout.media_path("image", split=split, name_id=name_id)
            status = self.media_status(media, item_id)
            if status in USABLE_MEDIA:
                on_disk[class_id] += 1
            box = boxes.pop(name_id)
            if box is None:
                self.problem(bb_rel, "missing_annotation", f"no loose box for {name_id}", None, item_id)
            points = marks.pop(name_id)
            if points is None:
                self.problem(lm_rel, "missing_annotation", f"no landmarks for {name_id}", None, item_id)
            person = meta.get(class_id, {})
            yield SourceItem(
                dataset=self.name,
                native_id=name_id,
                modality="image",
                media_path=media,
                media_status=status,
                split=split,
                identity=f"{self.name}:{class_id}",
                identity_kind="label",
                license_tag=self.spec.license.tag,
                geometry_space="media",
                box=xywh_to_xyxy(*box) if box else None,
                landmarks=points,
                landmarks_kind="5pt" if points else None,
                labels={k: person[k] for k in ("name", "gender") if k in person},
            )
        for name_id, _ in boxes.leftovers():
            self.problem(bb_rel, "unlisted_annotation", f"{name_id} is not in {list_rel}")
        for name_id, _ in marks.leftovers():
            self.problem(lm_rel, "unlisted_annotation", f"{name_id} is not in {list_rel}")
        self._check_counts(split, on_disk, meta)

    def _check_counts(self, split: str, on_disk: Counter[str], meta: dict[str, dict[str, object]]) -> None:
        """Mirrors that re-encode or drop images are caught against identity_meta.csv's Sample_Num."""
        flag = "1" if split == "train" else "0"
        meta_rel = self.spec.layout.annotation("identity_meta")
        for class_id, person in meta.items():
            if person["flag"] != flag:
                continue
            found = on_disk.get(class_id, 0)
            if found and found != person["sample_num"]:
                self.problem(
                    f"{split}/{class_id}",
                    "count_mismatch",
                    f"{found} images usable on disk, {meta_rel} says Sample_Num={person['sample_num']}",
                )
        for class_id in on_disk.keys() - meta.keys():
            self.problem(meta_rel, "missing_annotation", f"class {class_id} ({split}) has no identity_meta row")
