"""The evaluation crop of a split clip: one fixed square per clip, the same for every method (eval.md §6.7).

Why it works this way:
- A split clip is stated as the annotation states it (a range on uncut media, the annotation's crop in
  source pixels or CelebV-HQ's normalised box, both on the picture as displayed: a phone's video stored
  on its side is annotated upright); `pipeline.decode` reads that range upright, and the annotated
  region (widened, as the build widens it) is what the face is searched in. A variable-rate clip is read
  at evenly spaced times at its mean rate, as `rp-animate` reads a driving video.
- Inside it the crop is the pipeline's own: the detector on every k-th frame, one `stable_crop` square of
  `crop_scale` times the face for the whole clip, the pipeline's resize rule (area when shrinking, cubic
  when enlarging) to the evaluation size. So the evaluated framing is the framing the model trains on,
  and it is made once, from the clip alone, whatever method is evaluated.
- The crop is deterministic (same detector, same frames), and recorded per clip in the run's results.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image

from pipeline.crops import Box, NoFaceError, crop_resize, driving_crop_box
from pipeline.decode import DecodeError, frame_files, open_frames
from pipeline.faces import FaceDetector
from pipeline.sources.celebvhq import official_crop
from pipeline.sources.records import SourceItem
from pipeline.split import Clip
from pipeline.video_file import VideoFile, displayed_size


@dataclass(frozen=True)
class EvalClip:
    """A split clip at the evaluation crop and size: frame 0 is the self-reenactment source."""

    item_id: str
    frames: np.ndarray  # (T, S, S, 3) uint8
    fps: float
    crop_box: Box  # in pixels of the media as displayed
    first_frame: int  # media frame number of frames[0]
    sampled_without_face: int  # detector samples that found no face (the crop holds the others)
    content_sha256: str = ""  # of the frames' bytes: the ground-truth cache's key (`eval.ground_truth`)

    @classmethod
    def of_frames(cls, item_id: str, frames: np.ndarray, fps: float = 25.0) -> EvalClip:
        """A clip given as its frames at the evaluation crop (the whole picture is the crop)."""
        height, width = frames.shape[1:3]
        return cls(item_id, frames, fps, (0, 0, width, height), 0, 0, frames_sha256(frames))


def frames_sha256(frames: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()


def media_size(path: Path, modality: str) -> tuple[int, int]:
    """(width, height) as displayed of a video file, or of a frame folder's first image."""
    if modality == "frames":
        files = frame_files(path)
        if not files:
            raise ValueError(f"{path}: the frame folder holds no images")
        with Image.open(files[0]) as image:
            return image.size
    return displayed_size(path)


def annotated_region(clip: Clip, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The annotation's crop in pixels of the media as displayed, or None when the media are that crop already."""
    if clip.media_cut or clip.crop is None:
        return None
    if clip.crop.space == "norm":
        left, top, right, bottom = clip.crop.box
        return official_crop({"left": left, "top": top, "right": right, "bottom": bottom}, width, height)[1]
    x0, y0, x1, y1 = clip.crop.box
    source_w, source_h = clip.crop.source_wh or (width, height)
    sx, sy = width / source_w, height / source_h
    return x0 * sx, y0 * sy, x1 * sx, y1 * sy


def clip_item(clip: Clip, region: tuple[float, float, float, float] | None) -> SourceItem:
    """The split clip as the pipeline's decoder reads items: its range, its region in media pixels."""
    span = clip.range
    return SourceItem(
        dataset=clip.dataset,
        native_id=clip.native_id,
        modality=clip.modality,
        media_path=clip.media,
        media_status="present",
        split="test",
        identity=clip.identity,
        identity_kind=clip.identity_kind,
        license_tag="",
        media_cut=clip.media_cut,
        youtube_id=clip.youtube_id,
        time_unit=span.unit if span else None,
        start=span.start if span else None,
        end=span.end if span else None,
        end_inclusive=span.end_inclusive if span else None,
        fps=clip.fps,
        geometry_space="media" if region else None,
        crop=region,
    )


def load_clip(clip: Clip, root: Path, size: int, detector: FaceDetector, max_frames: int | None = None) -> EvalClip:
    """Decode a split clip's range and cut the evaluation crop (see the module docstring).

    Raises `pipeline.crops.NoFaceError` when no sampled frame shows a face, `pipeline.decode.DecodeError`
    or OSError when the media cannot be read.
    """
    path = Path(root) / clip.media
    region = annotated_region(clip, *media_size(path, clip.modality))
    item = clip_item(clip, region)
    stream = open_frames(item, Path(root), None)
    if isinstance(stream.media, VideoFile) and stream.media.variable_rate:
        stream = open_frames(item, Path(root), stream.source_fps)
    frames = np.concatenate(list(stream.batches()))
    if max_frames is not None:
        frames = frames[:max_frames]
    box, missed = driving_crop_box(frames, detector)
    x0, y0 = stream.region[:2]
    media_box = (box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0)
    cropped = crop_resize(frames, box, size)
    return EvalClip(
        item_id=clip.item_id,
        frames=cropped,
        fps=stream.fps,
        crop_box=media_box,
        first_frame=int(stream.source_index[0]),
        sampled_without_face=missed,
        content_sha256=frames_sha256(cropped),
    )


class ClipStore:
    """Split clips at the evaluation crop, loaded when a task asks for them and kept in a small LRU cache.

    Why: a clip of ~300 frames at 512x512 is ~240 MB, so holding every clip of a split grows memory with
    the split (issue 13). A task needs at most two clips (its source and its driving clip); the cache holds
    `capacity` of them, so memory stays flat however many clips the split has. A clip that cannot be made is
    remembered with its reason (a short string), and asked for again it is not decoded again.
    `on_first_load(clip)` runs once per clip id, the first time it is made (the cross-FID real set's
    features are taken there, while the frames are in memory anyway).
    """

    def __init__(
        self,
        split_clips: list[Clip],
        roots: dict[str, Path],
        size: int,
        detector: FaceDetector,
        max_frames: int | None = None,
        *,
        capacity: int = 2,
        on_first_load: Callable[[EvalClip], None] | None = None,
    ):
        if capacity < 1:
            raise ValueError(f"a clip cache needs room for at least one clip, got capacity {capacity}")
        self.clips = {clip.item_id: clip for clip in split_clips}
        self.roots, self.size, self.detector, self.max_frames = roots, size, detector, max_frames
        self.capacity, self.on_first_load = capacity, on_first_load
        self.cache: OrderedDict[str, EvalClip] = OrderedDict()
        self.problems: dict[str, str] = {}
        self.seen: set[str] = set()

    def get(self, item_id: str) -> EvalClip:
        """The clip at the evaluation crop; `ClipUnusable` with the reason when it cannot be made."""
        if item_id in self.cache:
            self.cache.move_to_end(item_id)
            return self.cache[item_id]
        if item_id in self.problems:
            raise ClipUnusable(item_id, self.problems[item_id])
        if item_id not in self.clips:
            raise ClipUnusable(item_id, "not in the split")
        clip = self.clips[item_id]
        try:
            if clip.dataset not in self.roots:
                raise FileNotFoundError(f"no root given for dataset {clip.dataset!r} (--root {clip.dataset}=DIR)")
            loaded = load_clip(clip, self.roots[clip.dataset], self.size, self.detector, self.max_frames)
        except (NoFaceError, DecodeError, OSError, ValueError, av.FFmpegError) as exc:
            self.problems[item_id] = f"{type(exc).__name__}: {exc}"
            raise ClipUnusable(item_id, self.problems[item_id]) from exc
        self.cache[item_id] = loaded
        while len(self.cache) > self.capacity:
            self.cache.popitem(last=False)
        if item_id not in self.seen:
            self.seen.add(item_id)
            if self.on_first_load is not None:
                self.on_first_load(loaded)
        return loaded

    def visit_rest(self, tick: Callable[[], None] | None = None, skip: set[str] | None = None) -> None:
        """Make every clip no task asked for once, so `on_first_load` and `problems` cover the whole split;
        the clips in `skip` (whose first load a resumed run saw before) are not made again."""
        for item_id in self.clips:
            if item_id not in self.seen and item_id not in self.problems and item_id not in (skip or set()):
                with suppress(ClipUnusable):  # recorded in `problems`
                    self.get(item_id)
            if tick is not None:
                tick()


class ClipUnusable(Exception):
    """A split clip that cannot be read or shows no face; `reason` says why."""

    def __init__(self, item_id: str, reason: str):
        super().__init__(f"{item_id}: {reason}")
        self.item_id, self.reason = item_id, reason
