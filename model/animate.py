"""Animate one portrait with a driving video from a trained checkpoint (`rp-animate`, `rp-eval --method ours`).

Why it works this way:
- The face crops come from the pipeline's own code (its detector, `image_context` for a still image,
  `stable_crop` over the driving video's detections, `crop_resize`), with the build's `crop_scale`, so
  the model sees at inference the framing it was trained on: a fixed square per video, no alignment.
- The model is trained on 16-frame clips; a longer driving video is denoised in overlapping windows of
  that length. The windows are blended *at every denoising step* (each step's prediction is a weighted
  average of the windows that cover a frame, with linear ramps across each overlap) and the DDIM update
  is applied once to the whole latent video, so neighbouring windows agree on the shared frames at
  every noise level and no seam shows. Decoding windows separately and cross-fading pixels would not
  do this: two independently sampled windows differ in their details, and a fade shows the switch.
- Guidance is the model's own composition (`RealPortrait.sample`): eps = eps(none) + r (eps(ref) -
  eps(none)) + m (eps(ref, motion) - eps(ref)); scales of 1 skip the passes they do not need.
- Memory does not grow with the driving video's length beyond its frames and latents: the motion
  encoder reads one window at a time (its first activations are ~16 MB per 512 px frame, so a whole
  300-frame video at once would need ~20 GB), re-encoded at every step rather than kept (about 1 % of a
  step's cost at paper size) from the video's uint8 frames, copied to the device once, and the VAE
  decodes a few frames at a time straight into the uint8 result.
- The driving video is read by presentation time (`pipeline.crops.read_driving`): frame j is the driver
  at time j / fps, fps its mean rate, so a phone's variable-rate video drives the animation with its true
  timing, and the output, written at that constant rate, lasts as long as the driving video. That rate is
  the fps condition, as training conditions each clip on its own frame rate; the model, VAE and motion
  encoder run together on one device under one autocast (`model.precision`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from model.diffusion import ddim_sample
from model.export_folder import require_export, resolve_vae
from model.motion import render_landmarks
from model.precision import Precision, running_on
from model.realportrait import RealPortrait, SamplingCache
from model.sampling_options import SamplingOptions
from model.vae import FrameVAE
from model.views import ViewOptions, contact_sheet, side_by_side
from pipeline.crops import BUILD, Box, NoFaceError, crop_resize, read_driving, resize_square
from pipeline.decode import read_image
from pipeline.encode import encode_h264
from pipeline.faces import FaceDetector, LandmarkTracker, open_detector, open_landmarker, prominent
from pipeline.process import image_context

CROP_SCALE = BUILD.crop_scale  # crop side / face side: the build's framing
SMALL_IMAGE = 256  # stills smaller than this are enlarged 2x for the detector, as the build does

MotionWindow = Callable[[int, int], torch.Tensor]  # (start, stop) -> motion features [1, C, stop - start, h, w]


# -- face crops (the pipeline's code; the driving video's in `pipeline.crops.read_driving`) ---------


def source_crop_box(image: np.ndarray, detector: FaceDetector) -> Box:
    """The square (x0, y0, x1, y1) around the still's largest face, `CROP_SCALE` times its size.

    `image_context` with a context of 1 is exactly the crop training takes from a still; a photo smaller
    than SMALL_IMAGE is enlarged for the detector only, as the build does.
    """
    height, width = image.shape[:2]
    upscale = 2.0 if max(height, width) < SMALL_IMAGE else 1.0
    probe = cv2.resize(image, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC) if upscale > 1 else image
    faces = prominent(detector.detect(probe))
    if not faces:
        raise NoFaceError("no face was found in the source image")
    face = max(faces, key=lambda f: f.area)
    face = type(face)(tuple(v / upscale for v in face.box), face.score)
    x0, y0, side, _ = image_context(face, width, height, CROP_SCALE, 1.0)
    return x0, y0, x0 + side, y0 + side


# -- windows ---------------------------------------------------------------------------------------


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """First frames of the windows covering `length` frames; the last window ends at the last frame."""
    if length <= window:
        return [0]
    if overlap >= window:
        raise ValueError(f"the overlap ({overlap}) must be smaller than the window ({window})")
    starts = list(range(0, length - window + 1, window - overlap))
    if starts[-1] + window < length:
        starts.append(length - window)
    return starts


def window_weights(start: int, size: int, length: int, overlap: int) -> torch.Tensor:
    """[size] blending weights: linear ramps over the frames a window shares with its neighbours.

    Ramps run (1, 2, ..., n) / (n + 1) so every weight is positive and two ramps over the same n frames
    add up to one. A window at the video's start (end) has no ramp there.
    """
    weights = torch.ones(size)
    ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
    if overlap and start > 0:
        weights[:overlap] = ramp[: min(overlap, size)]
    if overlap and start + size < length:
        weights[-overlap:] = torch.minimum(weights[-overlap:], ramp.flip(0))
    return weights


def guided_prediction(
    model: RealPortrait,
    x: torch.Tensor,
    timesteps: torch.Tensor,
    reference: torch.Tensor,
    motion: torch.Tensor,
    options: SamplingOptions,
    fps: torch.Tensor,
    cache: SamplingCache | None = None,
) -> torch.Tensor:
    """The model's guided prediction for one window (`RealPortrait.guided_prediction` with these options)."""
    return model.guided_prediction(
        x,
        timesteps,
        reference,
        motion,
        reference_guidance=options.reference_guidance,
        motion_guidance=options.motion_guidance,
        controlnet_scale=options.controlnet_scale,
        fps=fps,
        cache=cache,
    )


def sample_windows(
    model: RealPortrait,
    reference: torch.Tensor,
    motion: MotionWindow,
    length: int,
    options: SamplingOptions,
    on_window: Callable[[int, int], None] | None = None,
    fps: float | None = None,
) -> torch.Tensor:
    """Latents [1, 4, T, h, w] for a driving video of any length T (see the module docstring).

    `motion(start, stop)` gives the motion features of frames [start, stop); it is asked once per window
    and step, so only one window's features exist at a time. `fps` is the driving video's frame rate
    (None: the model's default). `on_window(done, total)` is called after every window evaluation.
    """
    device = reference.device
    starts = window_starts(length, options.window, options.overlap)
    size = min(options.window, length)
    weights = [window_weights(start, size, length, options.overlap).to(device) for start in starts]
    total = torch.zeros(length, device=device)
    for start, weight in zip(starts, weights, strict=True):
        total[start : start + size] += weight
    generator = torch.Generator(device=device).manual_seed(options.seed)
    shape = (1, model.config.latent_channels, length, *reference.shape[-2:])
    noise = torch.randn(shape, device=device, generator=generator)
    fps_condition = model.fps_condition(fps, size, 1, device)
    cache = model.sampling_cache(reference)  # the reference and the null condition, once for all steps and windows
    calls = [0, options.num_steps * len(starts)]

    def denoise(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        blended = torch.zeros_like(x)
        for start, weight in zip(starts, weights, strict=True):
            part = slice(start, start + size)
            features = motion(start, start + size)
            prediction = guided_prediction(
                model, x[:, :, part], timesteps, reference, features, options, fps_condition, cache
            )
            blended[:, :, part] += prediction * weight.view(1, 1, -1, 1, 1)
            calls[0] += 1
            if on_window is not None:
                on_window(*calls)
        return blended / total.view(1, 1, -1, 1, 1)

    return ddim_sample(
        denoise,
        noise,
        model.schedule,
        prediction_type=model.config.prediction_type,
        num_steps=options.num_steps,
        eta=options.eta,
        generator=generator,
    )


# -- the animator ----------------------------------------------------------------------------------


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> [1, 3, T, H, W] float in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


def to_device_uint8(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> [1, 3, T, H, W] uint8 on `device`, in one copy (from pinned memory on CUDA)."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None]
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """[1, 3, T, H, W] in [-1, 1] -> (T, H, W, 3) uint8."""
    pixels = ((frames[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round()
    return pixels.to(torch.uint8).cpu().numpy()


@dataclass
class Animator:
    """A loaded checkpoint and VAE on one device; `generate` turns face crops into a clip at the model's size."""

    model: RealPortrait
    vae: FrameVAE
    landmarker: LandmarkTracker | None = None  # only for checkpoints whose motion input is landmarks
    precision: Precision = field(default_factory=Precision.resolve)  # CUDA bf16 when present, else CPU fp32

    def __post_init__(self) -> None:
        """The model (motion encoder included) and the VAE move together, so no tensor crosses devices."""
        self.model.to(self.precision.device).eval()
        self.vae.to(self.precision.device)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        vae: str | Path | None = None,
        *,
        chunk_size: int = 4,
        precision: Precision | None = None,
    ) -> Animator:
        """Load `RealPortrait.save_pretrained` output (config.json + safetensors) and the SD1.5 VAE: `vae`, else
        the one the export carries (`model.export_folder`).

        `precision` defaults to `Precision.resolve()`: CUDA in bf16 when present, else the CPU in fp32.
        """
        checkpoint = require_export(Path(checkpoint))
        vae_path = resolve_vae(checkpoint, Path(vae) if vae else None)
        model = RealPortrait.from_pretrained(checkpoint, low_cpu_mem_usage=False)
        frame_vae = FrameVAE.from_path(vae_path, chunk_size=chunk_size)
        frame_vae.check_matches(model.config.vae_scale_factor, vae_path)
        landmarker = open_landmarker() if model.config.motion_input == "landmarks" else None
        return cls(model, frame_vae, landmarker, precision or Precision.resolve())

    @property
    def size(self) -> int:
        """The model's native square resolution: `input_sq_size` (512 for the paper, 128 for tiny)."""
        return int(self.model.config.input_sq_size)

    def motion_windows(self, driving: np.ndarray) -> MotionWindow:
        """`(start, stop) -> motion features` of square driving crops (T, S, S, 3) uint8, encoded on request.

        The crops are resized to the model's size and copied to the device once, as uint8 (a quarter of
        their float size: 0.75 MB a 512 px frame); each request converts its window there and encodes it,
        so the motion encoder's activations are those of one window whatever T, and no step waits for a
        copy from host memory. Landmark checkpoints track the whole video once (the tracker smooths over
        time), move the points to the device once and render each window's heatmaps there.
        """
        device = self.precision.device
        if self.landmarker is None:
            frames = to_device_uint8(resize_square(driving, self.size), device)
            return lambda start, stop: self.model.encode_motion(frames[:, :, start:stop].float() / 127.5 - 1)
        scale = self.size / driving.shape[1]
        points = torch.from_numpy(np.nan_to_num(self.landmarker.track(driving), nan=-1.0)).float()
        points = torch.where(points >= 0, points * scale, points).to(device)
        return lambda start, stop: self.model.encode_motion(
            render_landmarks(points[None, start:stop], (self.size, self.size))
        )

    def generate(
        self,
        source: np.ndarray,
        driving: np.ndarray,
        options: SamplingOptions | None = None,
        on_window: Callable[[int, int], None] | None = None,
        fps: float | None = None,
    ) -> np.ndarray:
        """(T, N, N, 3) uint8 from a source face crop (S, S, 3) and driving crops (T, S', S', 3), N = `size`.

        The crops are square (any side); they are resized to the model's resolution. `fps` is the driving
        video's frame rate, the model's fps condition (None: the model's default for clips).
        """
        options = options or SamplingOptions()
        device = self.precision.device
        with running_on(self.precision):
            source_tensor = to_tensor(resize_square(source[None], self.size)).to(device)
            reference = self.vae.encode(source_tensor, sample=False)[:, :, 0]
            motion = self.motion_windows(driving)
            latents = sample_windows(self.model, reference, motion, len(driving), options, on_window, fps)
            result = np.empty((len(driving), self.size, self.size, 3), np.uint8)
            done = 0
            for frames in self.vae.decode_chunks(latents):
                result[done : done + frames.shape[2]] = to_uint8(frames)
                done += frames.shape[2]
        return result


# -- files -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnimateResult:
    frames: int
    fps: float
    size: int
    source_box: Box
    driving_box: Box
    driving_frames_without_face: int  # among the sampled frames the detector ran on


def animate_files(
    animator: Animator,
    source: str | Path,
    driving: str | Path,
    out: str | Path,
    *,
    options: SamplingOptions | None = None,
    side_by_side_out: str | Path | None = None,
    contact_sheet_out: str | Path | None = None,
    views: ViewOptions | None = None,
    max_frames: int | None = None,
    on_window: Callable[[int, int], None] | None = None,
    detector: FaceDetector | None = None,
) -> AnimateResult:
    """Crop the source face and the driving faces, generate, and write an H.264 mp4 of the driving's length;
    with `side_by_side_out` also the labelled source | driving | result video, with `contact_sheet_out` the
    contact sheet PNG (`model.views`, drawn as `views` says)."""
    image = read_image(Path(source))
    detector = detector or open_detector()
    source_box = source_crop_box(image, detector)
    driving_faces = read_driving(Path(driving), detector, animator.size, max_frames)
    fps = driving_faces.fps
    source_face = crop_resize(image[None], source_box, animator.size)[0]
    result = animator.generate(source_face, driving_faces.frames, options, on_window, fps)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_bytes(encode_h264(result, fps))
    views = views or ViewOptions()
    panel = views.panel or animator.size
    if side_by_side_out is not None:
        Path(side_by_side_out).parent.mkdir(parents=True, exist_ok=True)
        sbs = side_by_side(source_face, driving_faces.frames, result, panel, views.labels)
        Path(side_by_side_out).write_bytes(encode_h264(sbs, fps))
    if contact_sheet_out is not None:
        Path(contact_sheet_out).parent.mkdir(parents=True, exist_ok=True)
        sheet = contact_sheet(source_face, driving_faces.frames, result, panel, views.labels, views.sheet_frames)
        Image.fromarray(sheet).save(contact_sheet_out, format="PNG")
    box, missed = driving_faces.box, driving_faces.sampled_without_face
    return AnimateResult(len(result), fps, animator.size, source_box, box, missed)
