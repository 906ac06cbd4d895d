"""One shard sample in, one training example out: decoding and the choice of frames and crops.

- image mode, image sample: two random crops of the face-centred context image (the paper's
  random-crop augmentation). Each crop's side is `crop_side` (the json's training-crop side) times
  a scale drawn from `crop_scale`, its offset is drawn so the face box stays inside, and it is
  resized to the training resolution: reference and target differ in head position and scale.
- image mode, clip sample: two different random frames, the reference and the target.
- video mode: `num_frames` frames `frame_stride` apart from a random start, plus a reference
  frame drawn from the whole clip.

The target frames are also the motion input: `RealPortrait.training_loss` applies the motion
encoder's appearance/identity augmentation to them on the training device, so it is not repeated
here. Clips are decoded from the member's bytes by the project's one video module
(`pipeline.video_file.VideoFile`, which validation and the VAE's training use too): in the colours the
build tagged them with (BT.709 limited range, pipeline.encode), shrunk from the decoder's planes before
the colour conversion, only at the frames needed (faster than decord's own scaler on these clips:
bench/shard_decode.py). Images with PIL, cropped and resized in one call.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

from pipeline.video_file import VideoFile

Mode = Literal["image", "video"]
MAX_REDRAWS = 16


class Unfit(Exception):
    """A sample this stage does not use (not an error): wrong kind, too short, excluded split or key, held out."""


@dataclass(frozen=True)
class Framing:
    """How a stage turns samples into examples."""

    mode: Mode
    resolution: int
    num_frames: int = 1
    frame_stride: int = 1
    crop_scale: tuple[float, float] = (0.8, 1.2)
    exclude_splits: frozenset[str] = frozenset()
    color_permutation: float = 0.0  # DataConfig.color_permutation
    keys: frozenset[str] | None = None
    held_out: frozenset[str] = frozenset()  # keys of the evaluation split's samples (training.heldout)

    @property
    def span(self) -> int:
        """Frames a clip needs in video mode (first to last target frame)."""
        return (self.num_frames - 1) * self.frame_stride + 1


@dataclass
class Example:
    """uint8 RGB frames at the training resolution; latents when the shard carries them."""

    key: str
    dataset: str
    reference: np.ndarray  # [H, W, 3]
    frames: np.ndarray  # [L, H, W, 3]
    fps: float  # of the target frames; NaN in image mode (the model conditions stills as images)
    latents: np.ndarray | None = None  # [L, 4, h, w]
    reference_latents: np.ndarray | None = None  # [4, h, w]


def _npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def make_example(sample: dict[str, Any], framing: Framing, rng: np.random.Generator) -> Example:
    """Raises `Unfit` for samples the stage skips by design; any other exception means a corrupt sample."""
    meta = json.loads(sample["json"])
    if meta["split"] in framing.exclude_splits:
        raise Unfit("excluded_split")
    if meta["key"] in framing.held_out:
        raise Unfit("held_out")
    if framing.keys is not None and meta["key"] not in framing.keys:
        raise Unfit("not_selected")
    if meta["kind"] == "image":
        if framing.mode == "video":
            raise Unfit("image_in_video_mode")
        reference, target = image_pair(sample["jpg"], meta, _npy(sample["bbox.npy"]), framing, rng)
        example = Example(meta["key"], meta["dataset"], reference, target[None], math.nan)
    else:
        example = clip_example(sample, meta, framing, rng)
    if framing.color_permutation and rng.random() < framing.color_permutation:
        permute_colors(example, rng)
    return example


def permute_colors(example: Example, rng: np.random.Generator) -> None:
    """One random order of the RGB channels for the reference and every target (never the identity order)."""
    order = [0, 1, 2]
    while order == [0, 1, 2]:
        order = [int(channel) for channel in rng.permutation(3)]
    example.reference = np.ascontiguousarray(example.reference[..., order])
    example.frames = np.ascontiguousarray(example.frames[..., order])
    example.latents = example.reference_latents = None  # precomputed latents are of the original colours


def clip_example(sample: dict[str, Any], meta: dict[str, Any], framing: Framing, rng: np.random.Generator) -> Example:
    video = VideoFile(sample["mp4"], name=meta["key"])
    count = len(video)
    if framing.mode == "image":
        if count < 2:
            raise Unfit("too_short")
        reference_index, target_index = (int(i) for i in rng.choice(count, size=2, replace=False))
        targets, fps = [target_index], math.nan
    else:
        if count < framing.span:
            raise Unfit("too_short")
        start = int(rng.integers(0, count - framing.span + 1))
        targets = list(range(start, start + framing.span, framing.frame_stride))
        reference_index, fps = int(rng.integers(0, count)), float(meta["fps"]) / framing.frame_stride
    side = framing.resolution
    decoded = video.frames([reference_index, *targets], side, side)
    example = Example(meta["key"], meta["dataset"], decoded[0], decoded[1:], fps)
    if "latents.npy" in sample:
        latents = _npy(sample["latents.npy"])
        if latents.shape[-1] * 8 == framing.resolution:  # precomputed at this resolution
            example.latents = latents[targets]
            example.reference_latents = latents[reference_index]
    return example


def image_pair(
    jpg: bytes, meta: dict[str, Any], bbox: np.ndarray, framing: Framing, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Two different random crops of one context image, each resized to the resolution (reference, target).

    The target is redrawn in the rare case that it equals the reference (a context hardly larger than
    the crop), so the pair shows the head at two positions and scales.
    """
    image = Image.open(io.BytesIO(jpg)).convert("RGB")
    face = bbox[0] if np.isfinite(bbox[0]).all() else None

    def draw() -> tuple[int, int, int, int]:
        return random_crop_box(image.size[0], meta["crop_side"], face, framing.crop_scale, rng)

    reference = target = draw()
    for _ in range(MAX_REDRAWS):
        if target != reference:
            break
        target = draw()
    side = framing.resolution
    return tuple(  # type: ignore[return-value]
        np.asarray(image.resize((side, side), Image.Resampling.BICUBIC, box=box)) for box in (reference, target)
    )


def random_crop_box(
    context: int,
    crop_side: float,
    face: np.ndarray | None,
    scale: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a square crop of a `context`-pixel square image that keeps the face inside.

    The side is `crop_side` times a scale uniform over the part of `scale` that fits in the image (the
    whole image when none does); the offset is uniform over the positions that contain the face box
    (centred on the face when none does).
    """
    smallest, largest = scale[0], min(scale[1], context / crop_side)
    side = context if smallest > largest else min(context, max(1, round(crop_side * rng.uniform(smallest, largest))))
    corner = []
    for axis in range(2):
        if face is None:
            low, high = 0, context - side
        else:
            low = max(0, math.ceil(face[axis + 2]) - side)
            high = min(int(face[axis]), context - side)
            if low > high:  # the face is larger than the crop: centre it
                centre = round((face[axis] + face[axis + 2]) / 2 - side / 2)
                low = high = min(max(centre, 0), context - side)
        corner.append(int(rng.integers(low, high + 1)))
    return corner[0], corner[1], corner[0] + side, corner[1] + side
