"""Overlapping intervals of one source video: which of them become clips, so no frame is built twice.

Annotations can list an interval inside another of the same video (HDTF: WRA_MittRomney 08:10-08:30
inside 00:33-08:53) or the same interval under two names (HDTF's aliases WhipJimClyburn and
JamesClyburn1). Each interval is cut as its own clip, so every frame of the overlap would enter
training twice, and nothing downstream would notice.

The rule, per run of transitively overlapping intervals of one source video:
- one interval spans the whole run (a nest, or identical intervals): it is kept as it is and the
  others are dropped. Merging would give the same span, so dropping keeps the kept interval's own
  media file and crop window instead of inventing new ones. Among equal spans the one with a crop
  window is kept, then the first by id, so the choice does not depend on the order of the files;
- no interval spans the run (a partial overlap): the adapter's `merge` makes one item over the
  union (only an uncut source holds it); when it cannot (no usable uncut source), the longest
  intervals are kept while they overlap nothing kept, so frames are lost rather than doubled.

Only intervals whose media are usable take part: an interval that cannot be built doubles no frame,
and letting it win would throw away a sibling that can (the downloader keeps no clip of an interval
without a crop window, so MittRomney's outer interval often exists only as the raw video). Usable means
present on disk when the adapter runs: a file that `rp-data scan --probe` later finds unreadable has
already been chosen, and its dropped siblings are named in their `overlapping_interval` problems.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.sources.records import USABLE_MEDIA, SourceItem

How = Literal["nested", "merged", "overlapping"]


@dataclass(frozen=True)
class Absorbed:
    """An interval that becomes no clip of its own, and the item whose clip holds (some of) its frames."""

    item: SourceItem
    into: SourceItem
    how: How


@dataclass(frozen=True)
class Resolution:
    kept: list[SourceItem]  # the run's items that become clips (one unless the run could not be merged)
    absorbed: list[Absorbed]


def _span(item: SourceItem) -> tuple[float, float]:
    return float(item.start), float(item.end)  # type: ignore[arg-type]


def overlaps(a: SourceItem, b: SourceItem) -> bool:
    """Half-open ranges [start, end) share time: touching intervals (one ends where the next starts) do not."""
    (a0, a1), (b0, b1) = _span(a), _span(b)
    return a0 < b1 and b0 < a1


def overlap_runs(items: Iterable[SourceItem]) -> list[list[SourceItem]]:
    """Usable, timed intervals grouped by source video (YouTube id and time unit) into runs of
    transitively overlapping ones, each sorted by (start, longest first, id); single intervals are runs too."""
    videos: dict[tuple[str, str], list[SourceItem]] = {}
    for item in items:
        timed = item.youtube_id and item.time_unit and item.start is not None and item.end is not None
        if timed and item.media_status in USABLE_MEDIA:
            videos.setdefault((item.youtube_id, item.time_unit), []).append(item)  # type: ignore[arg-type]
    runs: list[list[SourceItem]] = []
    for key in sorted(videos):
        ordered = sorted(videos[key], key=lambda i: (i.start, -float(i.end), i.native_id))  # type: ignore[arg-type]
        run_end = float("-inf")  # where the current run ends: an interval starting before it joins the run
        for item in ordered:
            if float(item.start) < run_end:  # type: ignore[arg-type]
                runs[-1].append(item)
            else:
                runs.append([item])
            run_end = max(run_end, float(item.end))  # type: ignore[arg-type]
    return runs


def _preference(item: SourceItem) -> tuple[float, bool, str]:
    """Longest first, then the one with a crop window, then the first id."""
    start, end = _span(item)
    return (-(end - start), item.crop is None, item.native_id)


def resolve_run(run: Sequence[SourceItem], merge: Callable[[Sequence[SourceItem]], SourceItem | None]) -> Resolution:
    """Which items of one run become clips (see the module docstring for the rule)."""
    if len(run) == 1:
        return Resolution([run[0]], [])
    first, last = min(i.start for i in run), max(i.end for i in run)  # type: ignore[type-var]
    covering = sorted((i for i in run if i.start == first and i.end == last), key=_preference)
    if covering:
        keep = covering[0]
        return Resolution([keep], [Absorbed(i, keep, "nested") for i in run if i is not keep])
    merged = merge(run)
    if merged is not None:
        return Resolution([merged], [Absorbed(i, merged, "merged") for i in run])
    kept: list[SourceItem] = []
    absorbed: list[Absorbed] = []
    for item in sorted(run, key=_preference):
        hit = next((k for k in kept if overlaps(k, item)), None)
        if hit is None:
            kept.append(item)
        else:
            absorbed.append(Absorbed(item, hit, "overlapping"))
    return Resolution(sorted(kept, key=lambda i: (i.start, i.native_id)), absorbed)  # type: ignore[arg-type,return-value]


def union_box(boxes: Sequence[tuple[float, float, float, float] | None]) -> tuple[float, float, float, float] | None:
    """The smallest box holding every box, or None when any is None (then the whole frame is searched)."""
    if not boxes or any(box is None for box in boxes):
        return None
    return (
        min(b[0] for b in boxes),  # type: ignore[index]
        min(b[1] for b in boxes),  # type: ignore[index]
        max(b[2] for b in boxes),  # type: ignore[index]
        max(b[3] for b in boxes),  # type: ignore[index]
    )
