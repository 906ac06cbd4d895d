"""TalkingHead-1KH: tube lines of data_list/<split>_video_tubes.txt, streamed (datasets.md §5)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydantic import BaseModel, ConfigDict, Field

from pipeline.sources.base import SourceAdapter
from pipeline.sources.records import SourceItem

CHUNK = re.compile(r"([A-Za-z0-9_-]{11})_(\d{4})")


class TalkingHeadOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # `small` is a smoke-test subset of the same videos: scanning it beside train would list tubes twice
    splits: list[str] = Field(default_factory=lambda: ["train", "val"], min_length=1)


class TalkingHead1KH(SourceAdapter):
    name = "talkinghead_1kh"
    Options = TalkingHeadOptions

    def read_items(self) -> Iterator[SourceItem]:
        seen: set[str] = set()
        for split in self.options.splits:
            yield from self._split_items(split, seen)

    def annotation_file(self, item: SourceItem) -> str:
        return self.spec.layout.annotation("tubes", split=item.split)

    def _split_items(self, split: str, seen: set[str]) -> Iterator[SourceItem]:
        layout = self.spec.layout
        rel = layout.annotation("tubes", split=split)
        for number, text in self.lines(rel):
            fields = [f.strip() for f in text.split(",")]
            match = CHUNK.fullmatch(fields[0]) if len(fields) == 9 else None
            try:
                if match is None:
                    raise ValueError("expected 'chunk_name, H, W, S, E, L, T, R, B' with chunk '<ytid>_NNNN'")
                height, width, first, last, left, top, right, bottom = (int(v) for v in fields[1:])
            except ValueError as exc:
                self.problem(rel, "malformed_line", f"{exc}: {text!r}", number)
                continue
            chunk, ytid = fields[0], match.group(1)
            stem = f"{chunk}_S{first}_E{last}_L{left}_T{top}_R{right}_B{bottom}"
            item_id = self.item_id(stem)
            if last < first or right <= left or bottom <= top:  # dropped: no item_id, it has no row
                self.problem(rel, "invalid_value", f"{item_id}: empty frame range or box: {text!r}", number)
                continue
            if stem in seen:
                self.problem(rel, "duplicate_id", f"tube {stem} listed again", number, item_id)
                continue
            seen.add(stem)
            cropped = layout.media_path("cropped", split=split, stem=stem)
            chunk_path = layout.media_path("chunk", split=split, chunk=chunk)
            # the official crops first; a 1-min chunk still yields the tube by cutting S..E and the box
            media = cropped if self.exists(cropped) or not self.exists(chunk_path) else chunk_path
            yield SourceItem(
                dataset=self.name,
                native_id=stem,
                modality="video",
                media_path=media,
                media_status=self.media_status(media, item_id),
                split=split,
                identity=f"{self.name}:{ytid}",
                identity_kind="proxy_video",
                license_tag=self.spec.license.tag,
                media_cut=media == cropped,
                youtube_id=ytid,
                time_unit="frame",
                start=first,
                end=last,
                end_inclusive=True,  # the official script keeps frames S..E+1 exclusive
                geometry_space="source",
                space_w=width,
                space_h=height,
                crop=(float(left), float(top), float(right), float(bottom)),
                labels={"chunk": chunk},
            )
