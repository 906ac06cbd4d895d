"""The frozen test split: 50 VFHQ + 50 CelebV-HQ clips chosen reproducibly (datasets.md §11).

Why it works this way:
- Candidates and their eligibility come from the annotations only (never from what happened to
  download), so every copy of the datasets ranks the same clips in the same order.
- The ranking is a salted sha256 of the clip id: stable, uncorrelated with anything in the data, and
  checkable by hand (`printf 'facetest-v1:vfhq:Clip+...' | sha256sum`).
- Media are only consulted while walking the ranking: a clip whose file is missing, unreadable or fails
  the check is skipped with its reason, and the walk goes on until enough clips are accepted. The check
  `faces` (the default) applies §11's face rules with the build's own parts (pipeline/split_check.py):
  one prominent face over the clip, a crop of at least `thresholds.min_crop_px`, no scene cut; `probe`
  only opens the media. The file records which check its clips passed.
- The result is frozen as JSON with a sha256 of every selected media file. The file is the source of
  truth from then on: re-downloads drift, so it is verified (`verify_split`), never re-selected.
- One clip per YouTube id is decided on the annotations too (the best-ranked eligible clip of each
  video represents it); if that clip's media fail, the video is skipped, not replaced by a sibling,
  so the set of videos a copy can yield never depends on its downloads.

Regenerate the committed sample split with `regenerate_sample_split()` (writes `manifests/splits/sample.json`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from manifests.schema import DATASETS_DIR, DatasetSpec, SpecError, load_specs
from pipeline.decode import frame_files
from pipeline.sources import open_adapter
from pipeline.sources.probe import probe
from pipeline.sources.records import USABLE_MEDIA, Problem, SourceItem

log = logging.getLogger(__name__)

FORMAT = "realportrait-split/1"
SALT = "facetest-v1"
DATASETS = ("vfhq", "celebvhq")  # the order clips are listed in
SPLITS_DIR = DATASETS_DIR.parent / "splits"
SAMPLE_SPLIT = SPLITS_DIR / "sample.json"
MAX_DRAWS = 1000  # derangement draws before falling back to a constructed pairing
CHUNK = 1 << 20
CheckLevel = Literal["probe", "faces"]
# what a check says of a clip: None to accept, a message (skipped as failed_check) or (reason, detail)
CheckResult = str | tuple[str, str] | None

SKIP_REASONS: dict[str, str] = {
    "no_youtube_id": "the item names no YouTube id, so the per-video rules cannot hold",
    "pid_not_0": "VFHQ: not the first person (P0) of its video",
    "too_short": "the annotated range is shorter than the threshold",
    "sep_flag": "CelebV-HQ: the emotion label is split into segments (sep_flag is not false)",
    "blurry": "CelebV-HQ: the 'blurry' appearance attribute is set",
    "youtube_id_in_training": "the YouTube id is in the given training lists",
    "youtube_id_in_both_datasets": "the YouTube id occurs in both VFHQ and CelebV-HQ",
    "youtube_id_duplicate": "a better-ranked eligible clip of the same YouTube id represents the video",
    "media_missing": "the media file is not on disk",
    "media_empty": "the media file is empty",
    "media_unreadable": "the media could not be opened",
    "failed_check": "the media failed the decode probe or the caller's own check",
    "scene_cut": "faces check: the build's scene detector finds a cut inside the clip",
    "no_face": "faces check: no face in any sampled frame",
    "face_lost": "faces check: the build's tracker does not hold the subject over the clip",
    "multiple_faces": "faces check: too many sampled frames show a second prominent face",
    "crop_too_small": "faces check: the build's crop square is smaller than thresholds.min_crop_px",
    "no_identity": "folder source: the item has no identity, so no split can keep its person out of training",
    "not_a_clip": "folder source: a photo, not a video clip",
    "identity_duplicate": "folder source: a better-ranked eligible clip of the same identity represents it",
}


def rank_key(dataset: str, native_id: str) -> str:
    """The ranking key: sha256("facetest-v1:" + dataset + ":" + native_id) in hex."""
    return hashlib.sha256(f"{SALT}:{dataset}:{native_id}".encode()).hexdigest()


# -- the frozen file's schema ----------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Frozen):
    """Eligibility thresholds (§11 defaults); the embedded sample's clips need smaller ones."""

    vfhq_min_frames: int = Field(200, ge=1, description="end - start of the clip name's F range")
    celebvhq_min_seconds: float = Field(5.0, gt=0, description="end_sec - start_sec")
    min_crop_px: int = Field(512, ge=1, description="faces check: side of the build's crop square, in media pixels")


DEFAULT_THRESHOLDS = Thresholds()


class SourceRange(_Frozen):
    unit: Literal["frame", "sec"]
    start: float
    end: float
    end_inclusive: bool


class Crop(_Frozen):
    """The annotation's crop: VFHQ's CROP line in source pixels, CelebV-HQ's normalized bbox
    (left, top, right, bottom; the official script widens it by 0.02 and squares it)."""

    box: tuple[float, float, float, float]
    space: Literal["source_px", "norm"]
    source_wh: tuple[int, int] | None = None


class Clip(_Frozen):
    item_id: str
    dataset: str
    native_id: str
    youtube_id: str
    identity: str | None
    identity_kind: str
    range: SourceRange | None
    crop: Crop | None
    media: str = Field(description="relative to the dataset root, posix separators")
    modality: Literal["video", "frames"]
    media_cut: bool = Field(description="the media hold exactly this clip (else range and crop still apply)")
    fps: float | None
    fps_from: Literal["media", "annotation"] | None
    media_frames: int | None = Field(description="frames in the media file or folder (the whole file if uncut)")
    sha256: str = Field(pattern="^[0-9a-f]{64}$", description="of the file; of names and bytes for a frame folder")


class Skip(_Frozen):
    item_id: str
    reason: str
    detail: str

    @model_validator(mode="after")
    def _known(self) -> Skip:
        if self.reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {self.reason!r}; known: {', '.join(SKIP_REASONS)}")
        return self


class DatasetCounts(_Frozen):
    pool_split: str = Field(description="the split the candidates came from")
    pool: int
    eligible: int = Field(description="passed every annotation rule")
    excluded: dict[str, int] = Field(description="annotation rule -> clips of the pool it excluded")
    walked: int = Field(description="ranked clips visited before the walk stopped")
    selected: int
    not_reached: int

    @classmethod
    def of(cls, ranked: Sequence[Ranked], pool_split: str, walked: int, selected: int) -> DatasetCounts:
        """The counts of one dataset's walk through its ranked pool."""
        excluded = Counter(entry.reason for entry in ranked if entry.reason)
        return cls(
            pool_split=pool_split,
            pool=len(ranked),
            eligible=len(ranked) - excluded.total(),
            excluded=dict(sorted(excluded.items())),
            walked=walked,
            selected=selected,
            not_reached=len(ranked) - walked,
        )


class Pair(_Frozen):
    source: str  # item_id: frame 0 of this clip is the portrait ...
    driving: str  # ... animated by this clip


class Pairs(_Frozen):
    seed: int
    method: Literal["drawn", "matched", "impossible"]
    draws: int
    note: str
    pairs: list[Pair]


class Fingerprint(_Frozen):
    count: int
    sha256: str = Field(description="of the sorted ids joined by newlines")


class Split(_Frozen):
    """What `write_split` freezes and `load_split` reads back; validated both ways."""

    format: Literal["realportrait-split/1"] = FORMAT
    ranking: str = f'sha256("{SALT}:" + dataset + ":" + native_id), hex ascending'
    per_dataset: int = Field(ge=1)
    thresholds: Thresholds
    check: Literal["probe", "faces", "custom"] = Field(
        "probe", description="what the clips passed: a decode probe, §11's face rules, or the caller's own check"
    )
    train_youtube_ids: Fingerprint
    notes: list[str] = Field(description="departures from §11 on this copy: a missing test split, a short pool")
    counts: dict[str, DatasetCounts]
    clips: list[Clip] = Field(description="VFHQ, then CelebV-HQ, each in ranking order")
    skipped: list[Skip] = Field(description="every clip ranked above where the walk stopped and not selected")
    pairs: Pairs

    @model_validator(mode="after")
    def _consistent(self) -> Split:
        ids = [clip.item_id for clip in self.clips]
        if len(set(ids)) != len(ids):
            raise ValueError("a clip is listed twice")
        for clip in self.clips:
            if clip.item_id != f"{clip.dataset}/{clip.native_id}":
                raise ValueError(f"clip {clip.item_id!r}: item_id is not <dataset>/<native_id>")
            if clip.dataset not in self.counts:
                raise ValueError(f"clip {clip.item_id!r}: no counts for dataset {clip.dataset!r}")
        for name, counts in self.counts.items():
            listed = sum(clip.dataset == name for clip in self.clips)
            if counts.selected != listed:
                raise ValueError(f"counts.{name}.selected is {counts.selected}, {listed} clips are listed")
        problem = pairing_problem(self.clips, self.pairs)
        if problem:
            raise ValueError(f"pairs: {problem}")
        return self


# -- eligibility and ranking from annotations ------------------------------------------------------


@dataclass(frozen=True)
class Ranked:
    """A pool clip with its ranking key and, when the annotations rule it out, why."""

    key: str
    item: SourceItem
    reason: str | None = None
    detail: str = ""


def clip_rule(item: SourceItem, thresholds: Thresholds) -> tuple[str, str] | None:
    """The first per-clip annotation rule the item breaks, as (reason, detail), or None.

    VFHQ's length is the clip name's F range (labels["name_range"], as the adapter keeps it), the
    numbers §11's rule is stated on; CelebV-HQ's is end_sec - start_sec.
    """
    if not item.youtube_id:
        return "no_youtube_id", "no youtube_id"
    if item.dataset == "vfhq":
        if item.labels.get("pid") != 0:
            return "pid_not_0", f"pid {item.labels.get('pid')}"
        first, last = item.labels["name_range"]  # type: ignore[misc]
        if last - first < thresholds.vfhq_min_frames:
            return "too_short", f"F{first}-{last}: {last - first} frames < {thresholds.vfhq_min_frames}"
        return None
    seconds = (item.end or 0.0) - (item.start or 0.0)
    if seconds < thresholds.celebvhq_min_seconds:
        return "too_short", f"{item.start}-{item.end} s: {seconds:.3f} s < {thresholds.celebvhq_min_seconds} s"
    emotion = item.labels.get("emotion")
    sep_flag = emotion.get("sep_flag") if isinstance(emotion, dict) else None
    if sep_flag is not False:
        return "sep_flag", f"sep_flag is {sep_flag!r}"
    if "blurry" in (str(name).lower() for name in item.labels.get("appearance") or ()):
        return "blurry", "appearance lists blurry"
    return None


def rank_pool(pool: Iterable[SourceItem], thresholds: Thresholds, shared: set[str], training: set[str]) -> list[Ranked]:
    """The pool in ranking order, each clip marked eligible or not by the annotation rules.

    `shared` are YouTube ids found in both datasets, `training` those of the training lists; among the
    clips of one video that pass every other rule, the best-ranked one represents the video.
    """
    ranked = sorted((Ranked(rank_key(item.dataset, item.native_id), item) for item in pool), key=lambda r: r.key)
    representative: dict[str, str] = {}
    out = []
    for entry in ranked:
        item = entry.item
        rule = clip_rule(item, thresholds)
        if rule is None and item.youtube_id in training:
            rule = "youtube_id_in_training", f"{item.youtube_id} is in the training lists"
        if rule is None and item.youtube_id in shared:
            rule = "youtube_id_in_both_datasets", f"{item.youtube_id} occurs in VFHQ and CelebV-HQ"
        if rule is None and item.youtube_id in representative:
            rule = "youtube_id_duplicate", f"{representative[item.youtube_id]} represents {item.youtube_id}"
        if rule is None:
            representative[item.youtube_id] = item.item_id  # type: ignore[index]
            out.append(entry)
        else:
            out.append(Ranked(entry.key, item, *rule))
    return out


def vfhq_pool(items: Sequence[SourceItem]) -> tuple[list[SourceItem], str, list[str]]:
    """(pool, its split, notes): VFHQ's test meta files, or train when a copy has no test split."""
    test = [item for item in items if item.split == "test"]
    if test:
        return test, "test", []
    note = "VFHQ: no clips of split 'test' (meta_info/test) were given; the pool is the train split"
    log.warning(note)
    return [item for item in items if item.split == "train"], "train", [note]


# -- media -----------------------------------------------------------------------------------------


def media_sha256(path: Path, modality: str) -> str:
    """sha256 of a media file; for a frame folder, of its frame files' names and bytes in name order
    (each as name, NUL, byte count, NUL, bytes), so a renamed, added or changed frame shows."""
    digest = hashlib.sha256()
    files = frame_files(path) if modality == "frames" else [path]
    for file in files:
        if modality == "frames":
            digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
        with open(file, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class MediaFacts:
    fps: float | None
    fps_from: Literal["media", "annotation"] | None
    frames: int | None
    sha256: str


def measure(path: Path, item: SourceItem) -> MediaFacts:
    """What the file records of the media: fps and frame count from a video's header (a frame folder
    has no rate of its own, so its fps is the annotation's and its count its number of frames), and
    the sha256. Raises OSError, av.FFmpegError or IndexError (no video stream) when they cannot be read."""
    digest = media_sha256(path, item.modality)
    if item.modality == "frames":
        return MediaFacts(item.fps, "annotation" if item.fps else None, len(frame_files(path)), digest)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate) if stream.average_rate else None
        return MediaFacts(rate, "media" if rate else None, stream.frames or None, digest)


def frozen_clip(item: SourceItem, media: MediaFacts) -> Clip:
    """The selected item as the file records it."""
    crop = None
    if item.dataset == "vfhq" and item.crop is not None:
        size = (item.space_w, item.space_h) if item.space_w and item.space_h else None
        crop = Crop(box=item.crop, space="source_px", source_wh=size)
    elif isinstance(bbox := item.labels.get("bbox_norm"), dict):
        crop = Crop(box=(bbox["left"], bbox["top"], bbox["right"], bbox["bottom"]), space="norm")
    span = None
    if item.time_unit and item.start is not None and item.end is not None:
        span = SourceRange(unit=item.time_unit, start=item.start, end=item.end, end_inclusive=bool(item.end_inclusive))
    return Clip(
        item_id=item.item_id,
        dataset=item.dataset,
        native_id=item.native_id,
        youtube_id=item.youtube_id or "",
        identity=item.identity,
        identity_kind=item.identity_kind,
        range=span,
        crop=crop,
        media=item.media_path,
        modality=item.modality,  # type: ignore[arg-type]
        media_cut=item.media_cut,
        fps=media.fps,
        fps_from=media.fps_from,
        media_frames=media.frames,
        sha256=media.sha256,
    )


# -- walking the ranking ---------------------------------------------------------------------------


def walk(
    ranked: Sequence[Ranked], root: Path, per_dataset: int, check: Callable[[SourceItem], CheckResult]
) -> tuple[list[Clip], list[Skip], int]:
    """(accepted clips, skipped clips, clips walked): accept eligible clips whose media are usable and
    pass `check`, in ranking order, until `per_dataset` are accepted."""
    clips: list[Clip] = []
    skipped: list[Skip] = []
    walked = 0
    for entry in ranked:
        if len(clips) >= per_dataset:
            break
        walked += 1
        item = entry.item
        reason, detail = entry.reason, entry.detail
        if reason is None and item.media_status not in USABLE_MEDIA:
            reason, detail = f"media_{item.media_status}", f"{item.media_path}: media_status {item.media_status}"
        if reason is None and (verdict := check(item)) is not None:
            reason, detail = ("failed_check", verdict) if isinstance(verdict, str) else verdict
        if reason is None:
            try:
                media = measure(root / item.media_path, item)
            except (OSError, av.FFmpegError, IndexError) as exc:
                reason, detail = "media_unreadable", f"{type(exc).__name__}: {exc}"
            else:
                clips.append(frozen_clip(item, media))
                continue
        detail = detail.replace(f"{root}{os.sep}", "")  # decoder messages name the file: keep the record portable
        log.info("skipped %s: %s (%s)", item.item_id, reason, detail)
        skipped.append(Skip(item_id=item.item_id, reason=reason, detail=detail))
    return clips, skipped, walked


def readable(roots: Mapping[str, Path]) -> Callable[[SourceItem], str | None]:
    """The `probe` check: the media open and decode at both ends (`pipeline.sources.probe`)."""
    return lambda item: probe(Path(roots[item.dataset]) / item.media_path, item.modality)


def faces_check(
    roots: Mapping[str, Path], thresholds: Thresholds, registry: Mapping[str, DatasetSpec] | None, stack: ExitStack
) -> Callable[[SourceItem], CheckResult]:
    """The `faces` check: the probe, then §11's face rules (pipeline/split_check.py). The detector is
    the build's default backend, closed when `stack` closes."""
    from pipeline.config import BuildConfig
    from pipeline.faces import open_detector
    from pipeline.split_check import face_check

    cfg = BuildConfig()
    detector = open_detector(cfg.face_backend)
    stack.callback(detector.close)
    specs = registry or load_specs()
    defaults = {name: specs[name].defaults for name in roots}
    faces = face_check(roots, detector, defaults, thresholds.min_crop_px, cfg)
    opens = readable(roots)

    def check(item: SourceItem) -> CheckResult:
        message = opens(item)
        if message is not None:
            return message
        try:
            return faces(item)
        except (ValueError, OSError, IndexError, av.FFmpegError) as exc:  # decoding past the probe's two ends
            return "media_unreadable", f"{type(exc).__name__}: {exc}"

    return check


def select_split(
    vfhq: Sequence[SourceItem],
    celebvhq: Sequence[SourceItem],
    *,
    roots: Mapping[str, Path],
    per_dataset: int = 50,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    train_youtube_ids: Iterable[str] = frozenset(),
    check: CheckLevel | Callable[[SourceItem], CheckResult] = "faces",
    seed: int = 0,
    registry: Mapping[str, DatasetSpec] | None = None,
) -> Split:
    """Selects up to `per_dataset` clips of each dataset (datasets.md §11) and pairs them for cross-reenactment.

    `vfhq` and `celebvhq` are every item the adapters read (VFHQ's train items too: their YouTube ids
    count for the both-datasets rule). `roots` maps "vfhq" and "celebvhq" to the dataset roots the
    items' media paths are relative to: selected media are hashed, so a split cannot be made without them.
    `check` is a level, "faces" (§11's face rules, after the probe) or "probe" (the media open), or a
    function of the item returning None to accept, or a message or (reason, detail) to skip.
    """
    for name, items in (("vfhq", vfhq), ("celebvhq", celebvhq)):
        if name not in roots:
            raise ValueError(f"roots has no entry for {name!r}")
        strays = {item.dataset for item in items} - {name}
        if strays:
            raise ValueError(f"the {name} items include items of {sorted(strays)}")
    with ExitStack() as stack:
        if check == "faces":
            verdict = faces_check(roots, thresholds, registry, stack)
        elif check == "probe":
            verdict = readable(roots)
        elif callable(check):
            verdict = check
        else:
            raise ValueError(f"check must be 'faces', 'probe' or a function, not {check!r}")
        recorded = check if isinstance(check, str) else "custom"
        return _select(vfhq, celebvhq, roots, per_dataset, thresholds, train_youtube_ids, (verdict, recorded), seed)


def _select(
    vfhq: Sequence[SourceItem],
    celebvhq: Sequence[SourceItem],
    roots: Mapping[str, Path],
    per_dataset: int,
    thresholds: Thresholds,
    train_youtube_ids: Iterable[str],
    check: tuple[Callable[[SourceItem], CheckResult], str],  # the function, and what the file calls it
    seed: int,
) -> Split:
    verdict, recorded = check
    training = set(train_youtube_ids)
    shared = {i.youtube_id for i in vfhq if i.youtube_id} & {i.youtube_id for i in celebvhq if i.youtube_id}
    pool, pool_split, notes = vfhq_pool(vfhq)
    pools = {"vfhq": (pool, pool_split), "celebvhq": (list(celebvhq), "unsplit")}
    counts, clips, skipped = {}, [], []
    for name in DATASETS:
        items, split_name = pools[name]
        ranked = rank_pool(items, thresholds, shared, training)
        accepted, missed, walked = walk(ranked, Path(roots[name]), per_dataset, verdict)
        counts[name] = DatasetCounts.of(ranked, split_name, walked, len(accepted))
        if len(accepted) < per_dataset:
            notes.append(f"{name}: selected {len(accepted)} of the {per_dataset} clips asked for: the pool ran out")
        clips += accepted
        skipped += missed
    ids = sorted(training)
    return Split(
        per_dataset=per_dataset,
        thresholds=thresholds,
        check=recorded,
        train_youtube_ids=Fingerprint(count=len(ids), sha256=hashlib.sha256("\n".join(ids).encode()).hexdigest()),
        notes=notes,
        counts=counts,
        clips=clips,
        skipped=skipped,
        pairs=cross_pairs(clips, seed),
    )


# -- cross-identity pairs --------------------------------------------------------------------------


def _video(clip: Clip) -> str:
    """The video a clip comes from: its YouTube id, or for a folder source (no YouTube id) its file."""
    return clip.youtube_id or f"{clip.dataset}:{clip.media}"


def _different(a: Clip, b: Clip) -> bool:
    """May `a` be animated by `b`: another video (so never `a` itself) and not the same known identity."""
    return _video(a) != _video(b) and (a.identity is None or a.identity != b.identity)


def pairing_problem(clips: Sequence[Clip], pairs: Pairs) -> str | None:
    """Why `pairs` is not a valid cross-identity derangement of `clips`, or None."""
    if pairs.method == "impossible":
        return "an impossible pairing lists pairs" if pairs.pairs else None
    by_id = {clip.item_id: clip for clip in clips}
    if sorted(p.source for p in pairs.pairs) != sorted(by_id) or sorted(p.driving for p in pairs.pairs) != sorted(
        by_id
    ):
        return "sources and drivers must each be every clip exactly once"
    for pair in pairs.pairs:
        if not _different(by_id[pair.source], by_id[pair.driving]):
            return f"{pair.source} -> {pair.driving} is the same clip, video or identity"
    return None


def _matching(clips: Sequence[Clip], seed: int) -> list[int] | None:
    """A valid pairing source -> driver found as an assignment, or None when none exists: the proof
    that no valid pairing can be drawn.

    A pairing is a perfect matching of sources to drivers over the allowed pairs; that is the
    assignment problem with forbidden pairs at infinite cost, which `linear_sum_assignment` solves or
    declares infeasible. Allowed pairs cost a seeded sha256 of the pair (32-bit integers: every sum is
    exact in float64), so the matching, like a draw, changes with the seed and is the same on every
    machine: a tie between two optimal matchings (distinct sums almost surely rule one out) is broken
    by the solver's fixed order, which depends only on the matrix.
    """
    # imported here: only this fallback needs scipy.optimize, and build, eval and training import this module
    from scipy.optimize import linear_sum_assignment

    n = len(clips)
    cost = np.full((n, n), np.inf)
    for i, source in enumerate(clips):
        for j, driver in enumerate(clips):
            if _different(source, driver):
                key = f"{SALT}:pairs:{seed}:match:{source.item_id}:{driver.item_id}"
                cost[i, j] = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    try:
        rows, columns = linear_sum_assignment(cost)
    except ValueError:  # "cost matrix is infeasible": no perfect matching avoids every forbidden pair
        return None
    return columns[np.argsort(rows)].tolist()  # rows come sorted for a square matrix; made explicit


def _draw_key(seed: int, draw: int, item_id: str) -> str:
    return hashlib.sha256(f"{SALT}:pairs:{seed}:{draw}:{item_id}".encode()).hexdigest()


def cross_pairs(clips: Sequence[Clip], seed: int, max_draws: int = MAX_DRAWS) -> Pairs:
    """Source clip i -> driving clip σ(i), σ a seeded derangement with no shared video or identity.

    Draw k orders the clips by sha256("facetest-v1:pairs:<seed>:<k>:" + item_id) (a uniform random
    permutation, reproducible on any machine) and is kept if every pair is valid. If `max_draws` draws
    fail, a valid pairing is constructed as an assignment instead (`_matching`); if none exists, the
    file says so.
    """
    n = len(clips)
    draws = 0
    while n > 1 and draws < max_draws:
        k, draws = draws, draws + 1
        order = sorted(range(n), key=lambda i, k=k: _draw_key(seed, k, clips[i].item_id))
        if all(_different(clips[i], clips[order[i]]) for i in range(n)):
            pairs = [Pair(source=clips[i].item_id, driving=clips[order[i]].item_id) for i in range(n)]
            note = f"draw {k} is the first valid one: clips ordered by sha256('{SALT}:pairs:{seed}:{k}:' + item_id)"
            return Pairs(seed=seed, method="drawn", draws=draws, note=note, pairs=pairs)
    sigma = _matching(clips, seed) if n > 1 else None
    if sigma is None:
        note = f"no pairing of these {n} clips avoids a shared YouTube id or identity: no pairs"
        log.warning(note)
        return Pairs(seed=seed, method="impossible", draws=draws, note=note, pairs=[])
    pairs = [Pair(source=clips[i].item_id, driving=clips[sigma[i]].item_id) for i in range(n)]
    note = (
        f"no valid draw in {max_draws}: pairs constructed as the cheapest assignment (scipy linear_sum_assignment), "
        f"allowed pairs costing int(sha256('{SALT}:pairs:{seed}:match:' + source + ':' + driving)[:8], 16)"
    )
    return Pairs(seed=seed, method="matched", draws=draws, note=note, pairs=pairs)


# -- the frozen file -------------------------------------------------------------------------------


def write_split(split: Split, path: Path) -> None:
    """Writes the split as indented JSON (a stable byte form), under a temporary name then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = split.model_dump_json(indent=2) + "\n"
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8"
    ) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def load_split(path: Path) -> Split:
    """Reads and validates a frozen split; errors name the file and the field."""
    path = Path(path)
    try:
        return Split.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the split file: {exc.strerror or exc}") from exc
    except ValidationError as exc:
        fields = "; ".join(f"field '{'.'.join(map(str, e['loc'])) or '(file)'}': {e['msg']}" for e in exc.errors())
        raise SpecError(f"{path}: {fields}") from exc


def excluded_ids(split: Split) -> tuple[set[str], set[str]]:
    """(YouTube ids, identities) of the test clips, to keep out of every training shard."""
    youtube_ids = {clip.youtube_id for clip in split.clips if clip.youtube_id}  # a folder source's clips have none
    return youtube_ids, {clip.identity for clip in split.clips if clip.identity}


def verify_split(split: Split, roots: Mapping[str, Path]) -> list[str]:
    """One line per selected clip whose media are missing or differ from the recorded sha256."""
    problems = []
    for clip in split.clips:
        if clip.dataset not in roots:
            problems.append(f"{clip.item_id}: no root given for {clip.dataset}")
            continue
        path = Path(roots[clip.dataset]) / clip.media
        if not path.exists():
            problems.append(f"{clip.item_id}: {path} is missing")
            continue
        actual = media_sha256(path, clip.modality)
        if actual != clip.sha256:
            problems.append(f"{clip.item_id}: {path} has sha256 {actual}, the split records {clip.sha256}")
    return problems


# -- from dataset roots ----------------------------------------------------------------------------


def read_items(
    dataset: str, root: Path, registry: Mapping[str, DatasetSpec] | None = None
) -> tuple[list[SourceItem], list[Problem]]:
    """Every item of one dataset's official layout under `root`, with the problems the adapter found."""
    problems: list[Problem] = []
    specs = registry or load_specs()
    if dataset not in specs:
        raise SpecError(f"unknown dataset {dataset!r}; the registry has: {', '.join(sorted(specs))}")
    items = list(open_adapter(specs[dataset], Path(root), problems.append).items())
    return items, problems


def split_from_roots(
    roots: Mapping[str, Path],
    *,
    per_dataset: int = 50,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    train_youtube_ids: Iterable[str] = frozenset(),
    check: CheckLevel | Callable[[SourceItem], CheckResult] = "faces",
    seed: int = 0,
    registry: Mapping[str, DatasetSpec] | None = None,
) -> tuple[Split, list[Problem]]:
    """Reads VFHQ and CelebV-HQ under `roots` with their adapters and selects (see `select_split`);
    the adapters' problems come back for printing."""
    vfhq, vfhq_problems = read_items("vfhq", roots["vfhq"], registry)
    celebvhq, celebvhq_problems = read_items("celebvhq", roots["celebvhq"], registry)
    split = select_split(
        vfhq,
        celebvhq,
        roots=roots,
        per_dataset=per_dataset,
        thresholds=thresholds,
        train_youtube_ids=train_youtube_ids,
        check=check,
        seed=seed,
        registry=registry,
    )
    return split, vfhq_problems + celebvhq_problems


# the sample's renders are 240-360 px high, so no crop reaches 512 (its clips' crops are 174-288 px)
SAMPLE_THRESHOLDS = Thresholds(vfhq_min_frames=20, celebvhq_min_seconds=1.0, min_crop_px=128)
SAMPLE_PER_DATASET = 2


def sample_split(sample_root: Path) -> Split:
    """The embedded sample's split: its clips last 1-2 s, hence the small thresholds."""
    roots = {name: Path(sample_root) / name for name in DATASETS}
    split, _ = split_from_roots(roots, per_dataset=SAMPLE_PER_DATASET, thresholds=SAMPLE_THRESHOLDS)
    return split


def regenerate_sample_split(out: Path = SAMPLE_SPLIT) -> Split:
    """Writes the sample to a temporary folder and freezes its split to `out` (the committed file)."""
    from pipeline.sample import write_sample

    with tempfile.TemporaryDirectory() as folder:
        write_sample(Path(folder))
        split = sample_split(Path(folder))
    write_split(split, out)
    return split
