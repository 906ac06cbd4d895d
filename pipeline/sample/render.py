"""Deterministic synthetic "talking head" footage made from the shipped portrait photos.

The embedded sample dataset has to look like the official datasets to every real component of the
pipeline: faces a real detector finds, head motion a tracker follows, expression changes (jaw, blinks)
the motion representation sees, and scene cuts a cut detector finds. Each face is a real photo crop
moved by a smooth similarity transform plus two local warps; its exact geometry is known per frame, so
tests compare the pipeline's detections against ground truth instead of against themselves.

Everything is seeded and single-threaded, so a rebuild of the sample is byte-for-byte identical on one
machine (the shard contract relies on that).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from pipeline.encode import encode_h264
from pipeline.sample.portraits import PORTRAITS, load_photo

# Head motion amplitudes: enough for a tracker and a crop to have something to follow, small enough
# that the face stays frontal like the talking-head datasets.
MAX_ROLL_DEG = 8.0
MAX_SHIFT = 0.06  # of the face width
MAX_ZOOM = 0.08
MAX_JAW_DROP = 0.07  # of the face width
# The blended region: an ellipse along the face's own axes, in units of the face box (width, height)
# from the box centre, about 1.8x the box so that hair, ears and some neck show and detectors get context.
MASK_SEMI_AXES = (0.9, 1.0)
MASK_CENTER_Y = -0.05
MASK_SOLID = 0.8  # fraction of the ellipse radius that is fully opaque; the rest fades out


@dataclass(frozen=True)
class Actor:
    """One face in a shot; `center` is in fractions of (width, height) of the output frame."""

    portrait: str
    center: tuple[float, float]
    face_px: float  # face box width in output pixels, before the head motion's zoom

    def __post_init__(self) -> None:
        if self.portrait not in PORTRAITS:
            raise ValueError(f"unknown portrait {self.portrait!r}; known: {', '.join(PORTRAITS)}")
        if self.face_px <= 0:
            raise ValueError(f"face_px must be positive, got {self.face_px}")


@dataclass(frozen=True)
class Shot:
    """A run of frames on one scenery; a change of `scene` between shots is a visible cut."""

    actors: tuple[Actor, ...]
    frames: int
    scene: int  # seeds the scenery alone, so one scene value looks the same in every video

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"a shot needs at least one frame, got {self.frames}")
        if self.scene < 0:
            raise ValueError(f"scene seeds are non-negative, got {self.scene}")


@dataclass(frozen=True, eq=False)
class FaceGeometry:
    """Ground truth of one face in one frame, in output pixels (x1/y1 exclusive; not clipped).

    The box is the photo's measured box scaled about its moved centre (a small roll hardly changes the
    extent of a face, which is closer to an ellipse than to its box); its bottom edge follows the jaw.
    """

    actor: int  # index into the shot's actors, so two actors sharing a portrait stay apart
    portrait: str
    box: tuple[float, float, float, float]
    points: np.ndarray  # (5, 2), read-only: eye L, eye R, nose tip, mouth L, mouth R (image sides)


# -- public API ----------------------------------------------------------------------------------------


def render_video(
    shots: Sequence[Shot], size: tuple[int, int], seed: int
) -> tuple[np.ndarray, list[list[FaceGeometry]]]:
    """All shots concatenated as (N, H, W, 3) uint8 RGB, and per frame the geometry of each visible face.

    `size` is (width, height). Each actor's motion is seeded by (seed, shot index, actor index), the
    scenery by the shot's scene alone. A face wholly outside the frame has no geometry that frame.
    """
    width, height = size
    frames = np.empty((sum(shot.frames for shot in shots), height, width, 3), np.uint8)
    geometry: list[list[FaceGeometry]] = []
    with _single_threaded_cv2():
        for shot_index, shot in enumerate(shots):
            scenery = _Scenery(shot.scene, size)
            faces = []
            for index, actor in enumerate(shot.actors):
                motion = _motion(np.random.default_rng([seed, shot_index, index]), shot.frames)
                faces.append(_Face(actor, index, size, motion, scenery.light))
            for t in range(shot.frames):
                frame = frames[len(geometry)]
                frame[:] = scenery.at(t)
                geometry.append([g for face in faces if (g := face.draw(frame, t)) is not None])
    return frames, geometry


def render_still(actors: Sequence[Actor], size: tuple[int, int], seed: int) -> tuple[np.ndarray, list[FaceGeometry]]:
    """One image for the image datasets: pose, expression and scenery all drawn from `seed`."""
    frames, geometry = render_video([Shot(tuple(actors), 1, scene=seed)], size, seed)
    return frames[0], geometry[0]


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float | Fraction, *, crf: int = 23) -> None:
    """H.264 in mp4, byte-identical for identical input (see pipeline.encode).

    The moov atom stays at the end of the file: a truncated file is then unreadable, which the sample
    uses to stage a broken download.
    """
    data = encode_h264(frames, fps, crf=crf)
    with _atomic(path) as part:
        part.write_bytes(data)


def write_audio(path: str | os.PathLike, seconds: float, seed: int, sample_rate: int = 16000) -> None:
    """A speech-like mono AAC track in an .m4a (the container MEAD ships its audio in)."""
    signal = _voice(np.random.default_rng(seed), round(seconds * sample_rate), sample_rate)
    with _atomic(path) as part, av.open(str(part), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        stream.layout = "mono"
        stream.bit_rate = 32000
        stream.codec_context.thread_count = 1
        chunk = 1024  # the AAC frame length
        for start in range(0, len(signal), chunk):
            samples = signal[None, start : start + chunk]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_jpeg(path: str | os.PathLike, image: np.ndarray, *, quality: int = 95) -> None:
    """Baseline JPEG with fixed settings (4:2:0, no metadata), so equal pixels give equal bytes."""
    with _atomic(path) as part:
        Image.fromarray(image).save(part, format="JPEG", quality=quality, subsampling="4:2:0")


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Lossless, with a fixed compression level so that equal pixels give equal bytes."""
    with _atomic(path) as part:
        Image.fromarray(image).save(part, format="PNG", compress_level=6)


# -- motion --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Motion:
    """Per-frame head pose and expression of one actor; arrays of length `frames`."""

    roll: np.ndarray  # radians, added to the photo's own roll
    shift: np.ndarray  # (frames, 2), in face widths
    zoom: np.ndarray  # scale factor around 1
    jaw: np.ndarray  # jaw drop, in face widths
    blink: np.ndarray  # 0 = open .. 1 = closed


def _waves(rng: np.random.Generator, t: np.ndarray, periods: tuple[float, float], count: int = 3) -> np.ndarray:
    """A sum of sinusoids in [-1, 1]: smooth, never periodic-looking, bounded by construction."""
    period = rng.uniform(*periods, count)
    phase = rng.uniform(0, 2 * np.pi, count)
    weight = rng.uniform(0.5, 1.0, count)
    weight /= weight.sum()
    return (weight[:, None] * np.sin(2 * np.pi * t[None] / period[:, None] + phase[:, None])).sum(0)


def _motion(rng: np.random.Generator, frames: int) -> _Motion:
    t = np.arange(frames, dtype=np.float64)
    roll = np.deg2rad(MAX_ROLL_DEG) * _waves(rng, t, (40, 140))
    shift = MAX_SHIFT * np.stack([_waves(rng, t, (50, 160)), _waves(rng, t, (50, 160))], axis=1)
    zoom = 1 + MAX_ZOOM * _waves(rng, t, (60, 200))
    # speech: syllables (a few per second at 25 fps) gated by a slow phrase/pause rhythm
    syllables = 0.5 + 0.5 * _waves(rng, t, (5, 12))
    phrases = np.clip(0.6 + _waves(rng, t, (40, 90), count=2), 0, 1)
    jaw = MAX_JAW_DROP * syllables * phrases
    blink = np.zeros(frames)
    start = int(rng.integers(8, 50))
    while start < frames:
        profile = np.array([0.5, 1.0, 1.0, 0.6, 0.25])  # eyes close fast and open slower
        stop = min(frames, start + len(profile))
        blink[start:stop] = profile[: stop - start]
        start += int(rng.integers(40, 110))
    return _Motion(roll, shift, zoom, jaw, blink)


# -- scenery -------------------------------------------------------------------------------------------


class _Scenery:
    """A smooth seeded backdrop that drifts slowly, as a handheld camera would.

    Consecutive scene values get hues far apart (golden-ratio steps), opposite brightness (odd scenes
    are dark, and light the faces dimmer) and independent layouts, so a cut between them changes most
    pixels' hue, saturation and value at once; values further apart usually, not always, differ as much.
    """

    def __init__(self, scene: int, size: tuple[int, int]):
        width, height = size
        rng = np.random.default_rng([0x5CE7E, scene])
        self.margin = max(4, round(0.04 * max(size)))
        self.image = _backdrop(rng, scene, width + 2 * self.margin, height + 2 * self.margin)
        self.size = size
        self.period = rng.uniform(80, 200, 2)
        self.phase = rng.uniform(0, 2 * np.pi, 2)
        # the scene's light on the faces: dimmer in dark scenes, a slight colour cast
        self.light = (0.85 if scene % 2 else 1.0) * rng.uniform(0.92, 1.08, 3)

    def at(self, t: int) -> np.ndarray:
        drift = 1 + 0.9 * np.sin(2 * np.pi * t / self.period + self.phase)
        dx, dy = np.rint(self.margin * drift).astype(int)
        width, height = self.size
        return self.image[dy : dy + height, dx : dx + width]


def _backdrop(rng: np.random.Generator, scene: int, width: int, height: int) -> np.ndarray:
    def smooth(cells: int) -> np.ndarray:
        grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
        return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * (xx / width - 0.5) + np.sin(angle) * (yy / height - 0.5)).astype(np.float32)
    hue = (360 * ((scene * 0.6180339887) % 1.0) + 25 * smooth(3)) % 360
    saturation = np.clip(rng.uniform(0.35, 0.7) + 0.15 * smooth(4), 0, 1)
    value = (0.3 if scene % 2 else 0.72) + rng.uniform(-0.05, 0.05) + 0.2 * gradient
    value += 0.12 * smooth(5) + 0.04 * smooth(24)
    # a few soft-edged panels (walls, windows, shelves) give the cut detector and the encoder structure
    for _ in range(int(rng.integers(2, 5))):
        x0, x1 = np.sort(rng.uniform(0, width, 2))
        y0, y1 = np.sort(rng.uniform(0, height, 2))
        panel = np.zeros((height, width), np.float32)
        panel[int(y0) : int(y1), int(x0) : int(x1)] = rng.uniform(-0.2, 0.2)
        value += cv2.GaussianBlur(panel, (0, 0), 0.01 * max(width, height) + 1)
    hsv = np.dstack([hue, saturation, np.clip(value, 0.05, 0.95)]).astype(np.float32)
    return np.rint(255 * cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)).astype(np.uint8)


# -- faces ---------------------------------------------------------------------------------------------


@cache
def _mask_raster(size: int = 128) -> np.ndarray:
    """Alpha over the unit disc's bounding square: opaque core, smoothstep fall-off to the rim."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    radius = np.hypot(axis[None, :], axis[:, None])
    ramp = np.clip((1 - radius) / (1 - MASK_SOLID), 0, 1)
    raster = ramp * ramp * (3 - 2 * ramp)
    raster.setflags(write=False)
    return raster


def _soften_outside(rgb: np.ndarray, photo: np.ndarray, photo_to_sprite: np.ndarray, blur: float) -> np.ndarray:
    """Past the photo's edge, replicated edge pixels make streaks (the 112 px Hanks photo is cropped
    tight); blending in a heavy blur there turns them into an out-of-focus continuation instead."""
    height, width = rgb.shape[:2]
    reach = _apply(cv2.invertAffineTransform(photo_to_sprite), np.array([[0, 0], [width, height]]))
    if reach.min() >= 0 and np.all(reach.max(0) <= photo.shape[1::-1]):
        return rgb
    inside = cv2.warpAffine(np.ones(photo.shape[:2], np.float32), photo_to_sprite, (width, height))
    inside = np.clip(2 * cv2.GaussianBlur(inside, (0, 0), 0.3 * blur) - 1, 0, 1)
    return cv2.blendLinear(rgb, cv2.GaussianBlur(rgb, (0, 0), blur), inside, 1 - inside)


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 affine that applies `inner`, then `outer`."""
    linear = outer[:, :2]
    return np.hstack([linear @ inner[:, :2], (linear @ inner[:, 2] + outer[:, 2])[:, None]])


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ affine[:, :2].T + affine[:, 2]


class _Face:
    """One actor: the face frame of its photo, its motion, and the sprite composited every frame.

    The photo crop is resampled once to the actor's size (cubic when enlarging) with the soft mask as
    its alpha channel, so each frame needs only one near-unit-scale linear warp of four channels.
    """

    def __init__(self, actor: Actor, index: int, size: tuple[int, int], motion: _Motion, light: np.ndarray):
        portrait = PORTRAITS[actor.portrait]
        self.actor, self.index, self.motion = actor, index, motion
        self.frame_size = size
        self.points = np.asarray(portrait.points, np.float64)
        x0, y0, x1, y1 = portrait.box
        self.box_center = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        self.box_size = np.array([x1 - x0, y1 - y0], np.float64)
        eyes = self.points[1] - self.points[0]
        self.x_axis = eyes / np.linalg.norm(eyes)  # the face's own horizontal, in the photo
        self.y_axis = np.array([-self.x_axis[1], self.x_axis[0]])
        self.base_scale = actor.face_px / self.box_size[0]
        self.target = np.array([actor.center[0] * size[0], actor.center[1] * size[1]])

        # unit-disc raster -> photo pixels: the mask ellipse laid along the face's own axes
        raster = _mask_raster().shape[0]
        semi = np.array(MASK_SEMI_AXES) * self.box_size
        axes = np.stack([self.x_axis * semi[0], self.y_axis * semi[1]], axis=1) * (2 / raster)
        origin = self.box_center + self.y_axis * MASK_CENTER_Y * self.box_size[1] - axes.sum(1) * raster / 2
        mask_to_photo = np.hstack([axes, origin[:, None]])
        square = np.array([[0, 0], [raster, 0], [0, raster], [raster, raster]])
        self.mask_corners = _apply(mask_to_photo, square)  # photo pixels

        # the sprite: photo pixels resampled to the actor's size once, the mask as alpha
        photo, scale = load_photo(actor.portrait), self.base_scale
        low = np.floor(self.mask_corners.min(0)) - 2
        sprite_size = tuple(int(v) for v in np.ceil((self.mask_corners.max(0) + 2 - low) * scale))
        photo_to_sprite = np.array([[scale, 0, -scale * low[0]], [0, scale, -scale * low[1]]])
        enlarge = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_LINEAR
        rgb = cv2.warpAffine(photo, photo_to_sprite, sprite_size, flags=enlarge, borderMode=cv2.BORDER_REPLICATE)
        rgb = _soften_outside(rgb, photo, photo_to_sprite, blur=0.12 * actor.face_px)
        rgb = np.clip(np.rint(rgb * light), 0, 255).astype(np.uint8)
        alpha = cv2.warpAffine(_mask_raster(), _compose(photo_to_sprite, mask_to_photo), sprite_size)
        self.sprite = np.dstack([rgb, np.rint(255 * alpha).astype(np.uint8)])
        self.sprite_to_photo = cv2.invertAffineTransform(photo_to_sprite)

    def photo_to_frame(self, t: int) -> np.ndarray:
        m = self.motion
        scale = self.base_scale * m.zoom[t]
        c, s = np.cos(m.roll[t]), np.sin(m.roll[t])
        linear = scale * np.array([[c, -s], [s, c]])
        moved = self.target + m.shift[t] * self.actor.face_px
        return np.hstack([linear, (moved - linear @ self.box_center)[:, None]])

    def draw(self, frame: np.ndarray, t: int) -> FaceGeometry | None:
        """Composites the face for frame `t` in place; returns its geometry, or None when off-frame."""
        affine = self.photo_to_frame(t)
        warp = _Warp(self, affine, t)
        points = warp.forward(_apply(affine, self.points))
        center = _apply(affine, self.box_center[None])[0]
        half = self.box_size * self.base_scale * self.motion.zoom[t] / 2
        chin = _apply(affine, np.array([[self.box_center[0], self.box_center[1] + self.box_size[1] / 2]]))
        jaw = warp.forward(chin)[0, 1] - chin[0, 1]
        x0, y0 = (center - half).tolist()
        x1, y1 = (center + half + [0, jaw]).tolist()
        width, height = self.frame_size
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            return None
        self._composite(frame, affine, warp)
        points.setflags(write=False)
        return FaceGeometry(self.index, self.actor.portrait, (x0, y0, x1, y1), points)

    def _composite(self, frame: np.ndarray, affine: np.ndarray, warp: _Warp) -> None:
        corners = _apply(affine, self.mask_corners)
        height, width = frame.shape[:2]
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int), [width, height])
        if x1 <= x0 or y1 <= y0:
            return
        sprite_to_roi = _compose(affine, self.sprite_to_photo) - [[0, 0, x0], [0, 0, y0]]
        rgba = cv2.warpAffine(self.sprite, sprite_to_roi, (int(x1 - x0), int(y1 - y0)))
        warp.apply(rgba, (int(x0), int(y0)))
        alpha = cv2.extractChannel(rgba, 3).astype(np.float32) * np.float32(1 / 255)
        region = frame[y0:y1, x0:x1]
        region[:] = cv2.blendLinear(cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB), region, alpha, 1 - alpha)


class _Warp:
    """The non-rigid part: the jaw drops (a stretch below the mouth) and the eyelids close (a squash).

    Both are displacement fields along the face's vertical, in frame pixels; pixels sample the source at
    p - D(p), so a point at q moves to the p solving p - D(p) = q (found by fixed-point iteration, the
    fields being small and smooth).
    """

    def __init__(self, face: _Face, affine: np.ndarray, t: int):
        linear = affine[:, :2]
        self.unit = float(np.sqrt(abs(np.linalg.det(linear)))) * face.box_size[0]  # face width, pixels
        self.x_axis = linear @ face.x_axis / np.linalg.norm(linear @ face.x_axis)
        self.y_axis = linear @ face.y_axis / np.linalg.norm(linear @ face.y_axis)
        points = _apply(affine, face.points)
        self.eyes = points[:2]
        self.mouth = points[3:].mean(0)
        self.jaw = face.motion.jaw[t]
        self.blink = face.motion.blink[t]

    def field(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Displacement magnitude along the face's vertical, in pixels, at frame points (x, y).

        Widths are in face widths: the jaw region is about as wide as the chin and reaches below it,
        the eyelid region about one eye; a full blink squashes the eye to under half its height.
        """
        total = np.zeros(np.broadcast(x, y).shape, np.float32)
        if self.jaw > 0:
            a, b = self._local(x, y, self.mouth)
            ramp = _smoothstep(b, 0.0, 0.15) * (1 - _smoothstep(b, 0.45, 0.9))
            total += self.jaw * self.unit * ramp * np.exp(-(a * a) / (2 * 0.24**2))
        if self.blink > 0:
            for eye in self.eyes:
                a, b = self._local(x, y, eye)
                weight = np.exp(-(a * a) / (2 * 0.1**2) - (b * b) / (2 * 0.06**2))
                total -= 1.6 * self.blink * b * self.unit * weight
        return total

    def _local(self, x: np.ndarray, y: np.ndarray, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - origin[0], y - origin[1]
        a = (dx * self.x_axis[0] + dy * self.x_axis[1]) / self.unit
        b = (dx * self.y_axis[0] + dy * self.y_axis[1]) / self.unit
        return a, b

    def forward(self, points: np.ndarray) -> np.ndarray:
        """Where frame points (n, 2) of the rigidly moved face end up after the local warps."""
        moved = points.copy()
        for _ in range(4):
            moved = points + self.field(moved[:, 0], moved[:, 1])[:, None] * self.y_axis
        return moved

    def window(self) -> np.ndarray:
        """Frame-pixel corners of the region where the fields are not negligible."""
        corners = []
        if self.jaw > 0:
            corners += [self._corner(self.mouth, a, b) for a in (-0.75, 0.75) for b in (-0.05, 0.9)]
        if self.blink > 0:
            spans = [(a, b) for a in (-0.35, 0.35) for b in (-0.25, 0.25)]
            corners += [self._corner(eye, a, b) for eye in self.eyes for a, b in spans]
        return np.array(corners).reshape(-1, 2)

    def _corner(self, origin: np.ndarray, a: float, b: float) -> np.ndarray:
        return origin + self.unit * (a * self.x_axis + b * self.y_axis)

    def apply(self, image: np.ndarray, origin: tuple[int, int]) -> None:
        """Warps a region-of-interest image in place; `origin` is its top-left frame pixel."""
        corners = self.window()
        if not len(corners):
            return
        height, width = image.shape[:2]
        x0, y0 = np.maximum(np.floor(corners.min(0) - origin).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(0) - origin).astype(int), [width, height])
        if x1 <= x0 or y1 <= y0:
            return
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        shift = self.field(xs + origin[0], ys + origin[1])
        map_x = xs - shift * np.float32(self.y_axis[0])
        map_y = ys - shift * np.float32(self.y_axis[1])
        image[y0:y1, x0:x1] = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _smoothstep(x: np.ndarray, edge0: float, edge1: float) -> np.ndarray:
    s = np.clip((x - edge0) / (edge1 - edge0), 0, 1)
    return s * s * (3 - 2 * s)


# -- audio ---------------------------------------------------------------------------------------------


def _voice(rng: np.random.Generator, samples: int, sample_rate: int) -> np.ndarray:
    """Harmonics of a wandering pitch, gated into syllables and phrases, over faint breath noise."""
    t = np.arange(samples) / sample_rate
    pitch = rng.uniform(100, 220) * (1 + 0.06 * np.sin(2 * np.pi * rng.uniform(0.3, 0.8) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 9))
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 2 * np.pi)), 0, 1)
    phrases = np.clip(0.5 + np.sin(2 * np.pi * rng.uniform(0.15, 0.3) * t + rng.uniform(0, 2 * np.pi)), 0, 1)
    signal = tone * syllables * phrases + 0.02 * rng.standard_normal(samples)
    return (0.4 * signal / max(1e-9, float(np.abs(signal).max()))).astype(np.float32)


# -- plumbing ------------------------------------------------------------------------------------------


@contextmanager
def _single_threaded_cv2() -> Iterator[None]:
    """One OpenCV thread keeps the output identical run to run and leaves the cores to the workers."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


@contextmanager
def _atomic(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary name next to `path`; the file appears under `path` only once complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    try:
        yield part
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
