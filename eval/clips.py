"""The evaluation crop of a split clip: one fixed square per clip, the same for every method (eval.md §6.7).

Why it works this way:
- A split clip is stated as the annotation states it (a range on uncut media, the annotation's crop in
  source pixels or CelebV-HQ's normalised box); `pipeline.decode` reads that range, and the annotated
  region (widened, as the build widens it) is what the face is searched in.
- Inside it the crop is the pipeline's own: the detector on every k-th frame, one `stable_crop` square of
  `crop_scale` times the face for the whole clip, the pipeline's resize rule (area when shrinking, cubic
  when enlarging) to the evaluation size. So the evaluated framing is the framing the model trains on,
  and it is made once, from the clip alone, whatever method is evaluated.
- The crop is deterministic (same detector, same frames), and recorded per clip in the run's results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.crops import Box, crop_resize, driving_crop_box
from pipeline.decode import frame_files, open_frames
from pipeline.faces import FaceDetector
from pipeline.sources.celebvhq import official_crop
from pipeline.sources.probe import video_size
from pipeline.sources.records import SourceItem
from pipeline.split import Clip


@dataclass(frozen=True)
class EvalClip:
    """A split clip at the evaluation crop and size: frame 0 is the self-reenactment source."""

    item_id: str
    frames: np.ndarray  # (T, S, S, 3) uint8
    fps: float
    crop_box: Box  # in pixels of the media as stored
    first_frame: int  # media frame number of frames[0]
    sampled_without_face: int  # detector samples that found no face (the crop holds the others)


def media_size(path: Path, modality: str) -> tuple[int, int]:
    """(width, height) of a video file or of a frame folder's first image."""
    if modality == "frames":
        files = frame_files(path)
        if not files:
            raise ValueError(f"{path}: the frame folder holds no images")
        with Image.open(files[0]) as image:
            return image.size
    return video_size(path)


def annotated_region(clip: Clip, width: int, height: int) -> tuple[float, float, float, float] | None:
    """The annotation's crop in pixels of the media as stored, or None when the media are that crop already."""
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
    stream = open_frames(clip_item(clip, region), Path(root), None)
    frames = np.concatenate(list(stream.batches()))
    if max_frames is not None:
        frames = frames[:max_frames]
    box, missed = driving_crop_box(frames, detector)
    x0, y0 = stream.region[:2]
    media_box = (box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0)
    return EvalClip(
        item_id=clip.item_id,
        frames=crop_resize(frames, box, size),
        fps=stream.fps,
        crop_box=media_box,
        first_frame=int(stream.source_index[0]),
        sampled_without_face=missed,
    )
