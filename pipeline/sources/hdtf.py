"""HDTF: the repository's 15 annotation files joined per interval (datasets.md §6).

Items are the annotated intervals, `<SUB>_<name>_<k>` with k the interval's index on its annotation
line (the downloader renumbers clips over the intervals that have a crop window; that index is only
used to find its files). Intervals without a crop window are still items, flagged.

Intervals of one YouTube video that overlap (a nest, an alias listing the same interval) would give
the same frames twice: pipeline/sources/overlaps.py decides which become clips. Each interval that does
not is an `overlapping_interval` problem naming the clip that holds its frames, and that clip's
`labels["overlap"]` lists the intervals it stands for.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from pipeline.sources.base import SourceAdapter
from pipeline.sources.overlaps import Absorbed, overlap_runs, resolve_run, union_box
from pipeline.sources.records import Box, SourceItem
from pipeline.sources.youtube import youtube_id_from_url

INTERVAL = re.compile(r"(?:(\d+):)?(\d+):(\d{2})-(?:(\d+):)?(\d+):(\d{2})")
CLIP_NAME = re.compile(r"(.+)_(\d+)\.mp4")


class HDTFOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # the repository keeps the files in HDTF_dataset/; a bare copy has them in the root
    annotation_dirs: list[str] = Field(default_factory=lambda: ["HDTF_dataset", "."], min_length=1)
    subsets: list[str] = Field(default_factory=lambda: ["RD", "WDA", "WRA"], min_length=1)


def _seconds(hours: str | None, minutes: str, seconds: str) -> int:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def person_name(video_name: str) -> str:
    return video_name.rstrip("0123456789")


@dataclass
class _Subset:
    """The annotation files of one subset (RD, WDA or WRA), parsed."""

    urls: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (YouTube id, line)
    heights: dict[str, int] = field(default_factory=dict)
    intervals: dict[str, list[tuple[int, int] | None]] = field(default_factory=dict)  # None = unparsable
    interval_lines: dict[str, int] = field(default_factory=dict)
    crops: dict[str, tuple[Box, int]] = field(default_factory=dict)  # "<name>_<k>" -> (x0,y0,x1,y1), line
    ratios: dict[str, float] = field(default_factory=dict)


class _Aliases:
    """Union of person names that share a YouTube id (WhipJimClyburn and JamesClyburn1 are one video)."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        self._parent.setdefault(name, name)
        while self._parent[name] != name:
            self._parent[name] = self._parent[self._parent[name]]
            name = self._parent[name]
        return name

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self._parent[max(ra, rb)] = min(ra, rb)


class HDTF(SourceAdapter):
    name = "hdtf"
    Options = HDTFOptions

    def _annotation_dir(self) -> str:
        for directory in self.options.annotation_dirs:
            if any(
                self.exists(f"{directory}/{self.spec.layout.annotation('video_url', sub=sub)}")
                for sub in self.options.subsets
            ):
                return directory
        return self.options.annotation_dirs[0]

    def _rel(self, directory: str, role: str, sub: str) -> str:
        name = self.spec.layout.annotation(role, sub=sub)
        return name if directory == "." else f"{directory}/{name}"

    def _read(self, directory: str, sub: str) -> _Subset:
        data = _Subset()
        rel = self._rel(directory, "video_url", sub)
        for number, text in self.lines(rel):
            fields = text.split()
            ytid = youtube_id_from_url(fields[1]) if len(fields) == 2 else None
            if ytid is None:
                self.problem(rel, "malformed_line", f"expected '<name> <YouTube URL>', got {text!r}", number)
                continue
            data.urls[fields[0]] = (ytid, number)
        rel = self._rel(directory, "resolution", sub)
        for number, text in self.lines(rel):
            fields = text.split()
            if len(fields) != 2 or not fields[0].endswith(".mp4") or not fields[1].isdigit():
                self.problem(rel, "malformed_line", f"expected '<name>.mp4 <height>', got {text!r}", number)
                continue
            if int(fields[1]) == 0:
                self.problem(
                    rel, "invalid_value", f"{fields[0]}: height 0, so its crop windows are used unscaled", number
                )
                continue
            data.heights[fields[0][:-4]] = int(fields[1])
        rel = self._rel(directory, "annotation_time", sub)
        for number, text in self.lines(rel):
            video, *tokens = text.split()
            if not video.endswith(".mp4"):
                self.problem(rel, "malformed_line", f"expected '<name>.mp4 MM:SS-MM:SS ...', got {text!r}", number)
                continue
            spans: list[tuple[int, int] | None] = []
            for token in tokens:
                match = INTERVAL.fullmatch(token)
                if match is None:
                    self.problem(rel, "malformed_line", f"interval {token!r} is not MM:SS-MM:SS", number)
                    spans.append(None)
                    continue
                h0, m0, s0, h1, m1, s1 = match.groups()
                spans.append((_seconds(h0, m0, s0), _seconds(h1, m1, s1)))
            data.intervals[video[:-4]] = spans
            data.interval_lines[video[:-4]] = number
        rel = self._rel(directory, "crop_wh", sub)
        for number, text in self.lines(rel):
            fields = text.split()
            match = CLIP_NAME.fullmatch(fields[0]) if len(fields) == 5 else None
            if match is None or not all(v.lstrip("-").isdigit() for v in fields[1:]):
                self.problem(rel, "malformed_line", f"expected '<name>_<k>.mp4 x w y h', got {text!r}", number)
                continue
            x, w, y, h = (int(v) for v in fields[1:])
            if w <= 0 or h <= 0:  # before overlaps are resolved: such a window must not stand for others
                self.problem(rel, "invalid_value", f"crop window {w}x{h} has no area", number)
                continue
            if w != h:
                self.problem(rel, "invalid_value", f"crop window {w}x{h} is not square", number)
            data.crops[fields[0][:-4]] = ((float(x), float(y), float(x + w), float(y + h)), number)
        rel = self._rel(directory, "crop_ratio", sub)
        for number, text in self.lines(rel, required=False):
            fields = text.split()
            try:
                data.ratios[fields[0][:-4]] = float(fields[1])
            except (IndexError, ValueError):
                self.problem(rel, "malformed_line", f"expected '<name>_<k>.mp4 <scale>', got {text!r}", number)
        return data

    def read_items(self) -> Iterator[SourceItem]:
        directory = self._annotation_dir()
        subsets = {sub: self._read(directory, sub) for sub in self.options.subsets}
        aliases = _Aliases()
        owner: dict[str, str] = {}
        for data in subsets.values():
            for name, (ytid, _) in data.urls.items():
                if not name.startswith("Radio"):
                    aliases.union(owner.setdefault(ytid, person_name(name)), person_name(name))
        # HDTF has a few hundred intervals: they are held to find the overlaps among them
        items = [item for sub, data in subsets.items() for item in self._subset_items(directory, sub, data, aliases)]
        yield from self._without_overlaps(items, directory, subsets)

    def _without_overlaps(
        self, items: list[SourceItem], directory: str, subsets: dict[str, _Subset]
    ) -> Iterator[SourceItem]:
        """The items in their order, each run of overlapping intervals of a video built once (see overlaps.py)."""
        replaced: dict[str, SourceItem | None] = {}
        for run in overlap_runs(items):
            resolution = resolve_run(run, self._merge)
            for absorbed in resolution.absorbed:
                replaced[absorbed.item.native_id] = None
                sub = str(absorbed.item.labels["subset"])
                # no item_id: the interval has no source row, and the build manifest keeps a problem
                # without one as a row of its annotation line (the detail names the interval)
                self.problem(
                    self._rel(directory, "annotation_time", sub),
                    "overlapping_interval",
                    _overlap_detail(absorbed),
                    subsets[sub].interval_lines[str(absorbed.item.labels["name"])],
                )
            for kept in resolution.kept:
                stands_for = [a for a in resolution.absorbed if a.into is kept]
                if stands_for:
                    overlap = {
                        "how": stands_for[0].how,
                        "intervals": [
                            {"id": a.item.native_id, "start": a.item.start, "end": a.item.end} for a in stands_for
                        ],
                    }
                    replaced[kept.native_id] = dataclasses.replace(kept, labels={**kept.labels, "overlap": overlap})
        for item in items:
            out = replaced.get(item.native_id, item)
            if out is not None:
                yield out

    def _merge(self, run: Sequence[SourceItem]) -> SourceItem | None:
        """One item over the union of partially overlapping intervals, cut from the first readable raw
        download of the video (a cut clip holds one interval only), or None when there is none."""
        raw = next(
            (
                path
                for item in run
                if self.exists(
                    path := self.spec.layout.media_path("raw", sub=item.labels["subset"], name=item.labels["name"])
                )
            ),
            None,
        )
        if raw is None:
            return None
        first = run[0]
        heights = {item.space_h for item in run}
        crop = union_box([item.crop for item in run]) if len(heights) == 1 else None
        return dataclasses.replace(
            first,
            media_path=raw,
            media_status=self.media_status(raw, first.item_id),
            media_cut=False,
            start=min(float(item.start) for item in run),  # type: ignore[arg-type]
            end=max(float(item.end) for item in run),  # type: ignore[arg-type]
            crop=crop,
            geometry_space="source" if crop else None,
        )

    def _subset_items(self, directory: str, sub: str, data: _Subset, aliases: _Aliases) -> Iterator[SourceItem]:
        times_rel = self._rel(directory, "annotation_time", sub)
        crops_rel = self._rel(directory, "crop_wh", sub)
        used_crops: set[str] = set()
        for name, (ytid, url_line) in data.urls.items():
            spans = data.intervals.get(name)
            if not spans:
                self.problem(
                    self._rel(directory, "video_url", sub),
                    "no_intervals",
                    f"{name} has no interval in {times_rel}",
                    url_line,
                )
                continue
            with_crop = [k for k in range(len(spans)) if f"{name}_{k}" in data.crops]
            # RadioN names carry no person: the video is the only (proxy) identity they have
            radio = name.startswith("Radio")
            identity = (ytid, "proxy_video") if radio else (aliases.find(person_name(name)), "name")
            for k, span in enumerate(spans):
                if span is None:
                    continue
                native_id = f"{sub}_{name}_{k}"
                item_id = self.item_id(native_id)
                if span[1] <= span[0]:  # dropped: no item_id, it has no row
                    self.problem(
                        times_rel,
                        "invalid_value",
                        f"{item_id}: interval {k} of {name} ends before it starts",
                        data.interval_lines[name],
                    )
                    continue
                crop_entry = data.crops.get(f"{name}_{k}")
                if crop_entry is None:
                    self.problem(
                        times_rel,
                        "no_crop_window",
                        f"interval {k} of {name} has no {name}_{k}.mp4 line in {crops_rel}",
                        data.interval_lines[name],
                        item_id,
                    )
                else:
                    used_crops.add(f"{name}_{k}")
                yield self._item(sub, name, k, span, ytid, crop_entry, with_crop, data, identity)
        for name in data.intervals.keys() - data.urls.keys():
            self.problem(times_rel, "missing_annotation", f"{name} has intervals but no URL", data.interval_lines[name])
        for clip in data.crops.keys() - used_crops:
            self.problem(
                crops_rel, "unlisted_annotation", f"{clip}.mp4 matches no annotated interval", data.crops[clip][1]
            )

    def _item(
        self,
        sub: str,
        name: str,
        k: int,
        span: tuple[int, int],
        ytid: str,
        crop_entry: tuple[Box, int] | None,
        with_crop: list[int],
        data: _Subset,
        identity: tuple[str, str],
    ) -> SourceItem:
        layout = self.spec.layout
        candidates = []
        if k in with_crop:
            candidates.append(layout.media_path("clip", sub=sub, name=name, index=with_crop.index(k)))
        candidates.append(layout.media_path("clip_official", name=name, k=str(k)))
        raw = layout.media_path("raw", sub=sub, name=name)
        candidates.append(raw)
        media = next((c for c in candidates if self.exists(c)), candidates[0])
        item_id = self.item_id(f"{sub}_{name}_{k}")
        return SourceItem(
            dataset=self.name,
            native_id=f"{sub}_{name}_{k}",
            modality="video",
            media_path=media,
            media_status=self.media_status(media, item_id),
            split="unsplit",
            identity=f"{self.name}:{identity[0]}",
            identity_kind=identity[1],
            license_tag=self.spec.license.tag,
            media_cut=media != raw,
            youtube_id=ytid,
            time_unit="sec",
            start=float(span[0]),
            end=float(span[1]),
            end_inclusive=False,
            geometry_space="source" if crop_entry else None,
            space_h=data.heights.get(name),
            crop=crop_entry[0] if crop_entry else None,
            labels={"subset": sub, "name": name, "crop_ratio": data.ratios.get(f"{name}_{k}")},
        )


def _overlap_detail(absorbed: Absorbed) -> str:
    item, into = absorbed.item, absorbed.into
    span = f"{_clock(item.start or 0)}-{_clock(item.end or 0)}"
    into_span = f"{_clock(into.start or 0)}-{_clock(into.end or 0)}"
    where = f"interval {item.item_id} ({span}) of YouTube video {item.youtube_id}"
    if absorbed.how == "nested":
        return f"{where} lies within {into.native_id} ({into_span}): its frames are built once, in {into.item_id}"
    if absorbed.how == "merged":
        return (
            f"{where} overlaps others: the run is built once, as {into.item_id} over {into_span} of {into.media_path}"
        )
    return f"{where} overlaps {into.native_id} ({into_span}) and no raw download can merge them: dropped"
