"""VFHQ: one meta file per clip under meta_info/<split>/ (datasets.md §8).

The clip name `Clip+<ytid>+P<pid>+C<idx>+F<start>-<end>` is split on '+'. Frame lines carry x, y, w, h
(not corners) and 5 landmarks in source pixels; the CROP line is last. The reference extraction takes
frames start+1 .. end-1, and that exact inclusive range is what the item stores.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from pipeline.sources.base import SourceAdapter
from pipeline.sources.probe import IMAGE_SUFFIXES
from pipeline.sources.records import Box, MediaStatus, SourceItem
from pipeline.sources.youtube import is_youtube_id

CLIP = re.compile(r"Clip\+([A-Za-z0-9_-]{11})\+P(\d+)\+C(\d+)\+F(\d+)-(\d+)")
SPLITS = ("train", "test")


class VFHQOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    raw_extensions: list[str] = Field(default_factory=lambda: ["mp4", "webm", "mkv"], min_length=1)


@dataclass
class _Meta:
    header: dict[str, str] = field(default_factory=dict)
    frames: list[int] = field(default_factory=list)
    boxes: list[float] = field(default_factory=list)
    points: list[float] = field(default_factory=list)
    crop: Box | None = None


class VFHQ(SourceAdapter):
    name = "vfhq"
    Options = VFHQOptions

    def read_items(self) -> Iterator[SourceItem]:
        folders = {
            split: os.path.dirname(self.spec.layout.annotation("meta", split=split, clip="")) for split in SPLITS
        }
        present = {split: folder for split, folder in folders.items() if (self.root / folder).is_dir()}
        for split, folder in folders.items():
            if split not in present:
                self.problem(folder, "missing_annotation_file", f"no {split} meta files (extract meta_info.zip here)")
        for split, folder in present.items():
            for name in sorted(os.listdir(self.root / folder)):
                if name.endswith(".txt"):
                    item = self._item(split, f"{folder}/{name}", name[:-4])
                    if item is not None:
                        yield item

    def _parse(self, rel: str) -> _Meta:
        meta = _Meta()
        in_frames = False
        for number, text in self.lines(rel):
            if text.startswith("CROP"):
                try:
                    x0, y0, x1, y1 = (float(v) for v in text.split(":", 1)[1].split())
                    meta.crop = (x0, y0, x1, y1)
                except ValueError:
                    self.problem(rel, "malformed_line", f"expected 'CROP: x0 y0 x1 y1', got {text!r}", number)
            elif text.startswith("FRAME INDEX"):
                in_frames = True
            elif not in_frames:
                key, _, value = text.partition(":")
                meta.header[key.strip()] = value.strip()
            else:
                fields = text.split()
                try:
                    if len(fields) != 16:
                        raise ValueError(f"expected 16 fields, got {len(fields)}")
                    numbers = [float(v) for v in fields[2:]]
                    frame = int(fields[0])
                except ValueError as exc:
                    self.problem(rel, "malformed_line", f"{exc}: {text!r}", number)
                    continue
                meta.frames.append(frame)
                x, y, w, h = numbers[:4]  # x, y, w, h: EFHQ calls them x2, y2 but uses them as a size
                meta.boxes.extend((x, y, x + w, y + h))
                meta.points.extend(numbers[4:])
        return meta

    def annotation_file(self, item: SourceItem) -> str:
        return self.spec.layout.annotation("meta", split=item.split, clip=item.native_id)

    def _frames_status(self, rel: str, item_id: str) -> MediaStatus:
        if self.outside_root(rel, item_id, folder=True):
            return "outside_root"
        try:
            names = os.listdir(self.root / rel)
        except OSError:
            self.problem(rel, "missing_media", "frame folder not on disk", None, item_id)
            return "missing"
        if not any(os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES for n in names):
            self.problem(rel, "empty_file", "the frame folder holds no images", None, item_id)
            return "empty"
        return "present"

    def _media(self, clip: str, ytid: str) -> tuple[str, bool]:
        """(path, is a frame folder): the processed frames first, else a downloaded source video."""
        frames = self.spec.layout.media_path("frames", clip=clip)
        if self.exists(frames):
            return frames, True
        for ext in self.options.raw_extensions:
            raw = self.spec.layout.media_path("raw", ytid=ytid, ext=ext)
            if self.exists(raw):
                return raw, False
        return frames, True

    def _item(self, split: str, rel: str, clip: str) -> SourceItem | None:
        match = CLIP.fullmatch(clip)
        if match is None:
            self.problem(rel, "invalid_value", "file name is not Clip+<ytid>+P<pid>+C<idx>+F<start>-<end>")
            return None
        ytid, pid, index, first, last = match.group(1), *(int(v) for v in match.groups()[1:])
        item_id = self.item_id(clip)
        meta = self._parse(rel)
        try:
            width, height, fps = int(meta.header["W"]), int(meta.header["H"]), float(meta.header["FPS"])
        except (KeyError, ValueError):
            self.problem(rel, "malformed_line", f"header lacks H, W or FPS: {meta.header}", None, item_id)
            return None
        stated = next((v for k, v in meta.header.items() if k.startswith("Video")), ytid)
        if stated != ytid or not is_youtube_id(ytid):
            self.problem(rel, "invalid_value", f"header names video {stated!r}, file name {ytid!r}", None, item_id)
        if meta.crop is None:
            self.problem(rel, "missing_annotation", "no CROP line at the end", None, item_id)
        media, is_frames = self._media(clip, ytid)
        status = self._frames_status(media, item_id) if is_frames else self.media_status(media, item_id)
        return SourceItem(
            dataset=self.name,
            native_id=clip,
            modality="frames" if is_frames else "video",
            media_path=media,
            media_status=status,
            split=split,
            identity=f"{self.name}:{ytid}+P{pid}",
            identity_kind="proxy_track",
            license_tag=self.spec.license.tag,
            media_cut=is_frames,
            youtube_id=ytid,
            time_unit="frame",
            start=first + 1,
            end=last - 1,
            end_inclusive=True,
            fps=fps,
            geometry_space="source",
            space_w=width,
            space_h=height,
            crop=meta.crop,
            frame_index=tuple(meta.frames) or None,
            frame_boxes=tuple(meta.boxes) or None,
            frame_landmarks=tuple(meta.points) or None,
            landmarks_kind="5pt" if meta.points else None,
            labels={"pid": pid, "clip_index": index, "name_range": [first, last]},
        )
