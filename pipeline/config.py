"""The build configuration: every knob of `rp-data build`, validated, with a fingerprint.

A build directory records the fingerprint of the config, pipeline version and everything else that
shapes its output bytes (pipeline/fingerprint.py); a rerun with another fingerprint would mix shards
made under different rules, so it is refused unless the user asks for it. Per-dataset defaults come
from the registry spec; the config can override them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from manifests.schema import PipelineDefaults, SpecError
from manifests.yaml_files import apply_override, read_mapping, validate
from pipeline.sources.records import TooLarge

# bump when a change alters any output byte: it is part of the fingerprint
# 2: two-pass decode (crops from the YUV planes), timestamps, rotation, gated tracking;
# 2.1: overlapping intervals of one video are built once (pipeline/sources/overlaps.py);
# 2.2: an image's annotated box picks its subject among several faces (pipeline/faces/base.labelled_face)
# 2.3: colours by the stream's matrix and range (pipeline/colour.py), clips written BT.709 and tagged so,
#      segments closed at late scene cuts, hostile values and media past the limits refused
PIPELINE_VERSION = "2.3.0"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilterConfig(_Strict):
    """Quality thresholds; each failed one is recorded as the sample's reason."""

    prominent_ratio: float = Field(0.25, gt=0, le=1, description="a second face this large (by area) competes")
    max_multi_face_fraction: float = Field(0.3, ge=0, le=1, description="of sampled frames with 2+ prominent faces")
    max_abs_yaw: float = Field(65.0, gt=0, le=180, description="degrees, median over the clip")
    max_abs_pitch: float = Field(45.0, gt=0, le=180)
    max_lost_fraction: float = Field(0.2, ge=0, le=1, description="frames where the landmarker lost the face")
    on_scene_cut: Literal["split", "drop"] = Field(
        "split", description="a cut inside an official range: split there, or drop the whole item"
    )


@dataclass(frozen=True)
class MediaLimits:
    """The largest media a build opens. A file past them is refused from its header, before a frame is
    demuxed or decoded: an enormous frame or an hours-long file would otherwise take its worker down
    (out of memory, or out of time) on every attempt before the item is set aside."""

    max_pixels: int
    max_seconds: float

    def check(self, path: Path, width: int, height: int, seconds: float | None = None) -> None:
        """Raises TooLarge naming the file and the limit it passes; unknown sizes (0, None) pass."""
        if width * height > self.max_pixels:
            raise TooLarge(f"{path}: {width}x{height} is {width * height} pixels, above max_pixels={self.max_pixels}")
        if seconds is not None and seconds > self.max_seconds:
            raise TooLarge(f"{path}: {seconds:.1f} s long, above max_seconds={self.max_seconds:g}")


class BuildConfig(_Strict):
    pipeline_version: str = PIPELINE_VERSION
    face_backend: Literal["mediapipe", "insightface"] = "mediapipe"
    face_model_dir: Path | None = Field(None, description="local insightface model pack (insightface backend)")
    output_size: int = Field(512, ge=64, description="side of the square clip (the paper: 512)")
    crop_scale: float = Field(2.2, ge=1.2, description="crop side / face box side (no alignment, as the paper)")
    detect_every: int = Field(5, ge=1, description="run the detector on every k-th frame, interpolate between")
    detect_max_side: int = Field(640, ge=128, description="frames are shrunk to this for detection")
    track_max_missed: int = Field(
        2, ge=0, description="sampled frames in a row the tracked face may be missed and still be bridged"
    )
    scene_threshold: float = Field(27.0, gt=0, description="PySceneDetect ContentDetector threshold")
    scene_width: int = Field(160, ge=32, description="frames are shrunk to this width for scene detection")
    crf: int = Field(18, ge=0, le=51, description="libx264 constant rate factor of the clips")
    jpeg_quality: int = Field(95, ge=50, le=100)
    videos_per_shard: int = Field(50, ge=1, description="source videos per work shard")
    images_per_shard: int = Field(2000, ge=1, description="source images per work shard")
    shard_max_bytes: int = Field(1_000_000_000, ge=1_000_000, description="a tar is closed past this size")
    shard_max_samples: int = Field(10_000, ge=1)
    max_pixels: int = Field(
        7680 * 4320, ge=1, description="a frame or image with more pixels (8K UHD) is refused as too_large"
    )
    max_seconds: float = Field(4 * 3600.0, gt=0, description="a longer video is refused as too_large")
    filters: FilterConfig = Field(default_factory=FilterConfig)
    defaults: dict[str, PipelineDefaults] = Field(
        default_factory=dict, description="per-dataset overrides of the registry's pipeline defaults"
    )

    @property
    def limits(self) -> MediaLimits:
        return MediaLimits(self.max_pixels, self.max_seconds)

    def fingerprint(self, inputs: Mapping[str, object] | None = None) -> str:
        """sha256 of the canonical JSON of every setting and of `inputs`: what else shapes the output
        (a build passes `pipeline.fingerprint.build_inputs`: registry defaults in effect, library
        versions, face-model hashes). Stable over runs and over machines with the same inputs."""
        payload = {"config": self.model_dump(mode="json"), "inputs": dict(inputs or {})}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_config(path: Path | None, overrides: list[str] | None = None) -> BuildConfig:
    """YAML config (optional) plus `key=value` overrides (dotted keys reach nested fields)."""
    data = {} if path is None else read_mapping(path, "build config", SpecError)
    for override in overrides or []:
        apply_override(data, override, SpecError)
    return validate(BuildConfig, data, str(path or "build config"), "build config", SpecError)
