"""The evaluation protocol: every setting that changes a number, validated, fingerprinted, in YAML.

Two runs are comparable only when their fingerprints match (same crop, size, frame policy, windows,
seeds); tables print the fingerprint of every row and flag rows that differ.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from manifests.schema import SpecError
from manifests.yaml_files import apply_override, read_mapping, validate
from pipeline.crops import BUILD

Protocol = Literal["self", "cross"]
METRIC_NAMES = (
    "L1",
    "PSNR",
    "SSIM",
    "LPIPS",
    "tLP",
    "FID",
    "FVD",
    "CSIM-dlib",
    "CSIM-arcface",
    "CSIM-dlib-driver",
    "CSIM-dlib-leak",
    "CSIM-arcface-driver",
    "CSIM-arcface-leak",
    "AED",
    "APD",
    "PSNR-legacy-uint8",
    "AED-legacy-abs",
)
# Kept only for comparison with tables that used them: computed when listed in `metrics`, never by default.
LEGACY_METRICS = ("PSNR-legacy-uint8", "AED-legacy-abs")
DEFAULT_METRICS = tuple(name for name in METRIC_NAMES if name not in LEGACY_METRICS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FVDConfig(_Strict):
    clip_length: int = Field(16, ge=9, description="frames per window (16 is standard; I3D needs at least 9)")
    windows_per_video: int = Field(4, ge=1, description="windows drawn from each video per seed")
    seeds: tuple[int, ...] = Field((0, 1, 2, 3, 4), min_length=1, description="one FVD per seed: mean ± std")


class EvalConfig(_Strict):
    size: int = Field(512, ge=64, description="side of the square evaluation crop (the paper's native 512)")
    crop_scale: float = Field(BUILD.crop_scale, description="crop side / face side: the build's framing, fixed")
    score_first_frame: bool = Field(
        False, description="self-reenactment: frame 0 is the source image, so it is not scored by default"
    )
    max_frames: int | None = Field(None, ge=2, description="evaluate only the first N frames of each clip")
    identity_every: int = Field(1, ge=1, description="CSIM on every k-th scored frame (dlib costs ~0.1 s a face)")
    metrics: tuple[str, ...] = Field(
        DEFAULT_METRICS, description="metrics to compute; the LEGACY_METRICS only when listed explicitly"
    )
    fvd: FVDConfig = Field(default_factory=FVDConfig)
    cross_fid_reference: Literal["test_frames"] = Field(
        "test_frames", description="cross FID's real set: every frame of every split clip (the pooled test frames)"
    )

    def fingerprint(self) -> str:
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def load_config(path: Path | None, overrides: list[str] | None = None) -> EvalConfig:
    """YAML file (optional) plus `key=value` overrides (dotted keys reach nested fields)."""
    data = {} if path is None else read_mapping(path, "evaluation config", SpecError)
    for override in overrides or []:
        apply_override(data, override, SpecError)
    sources = [str(path)] if path is not None else []
    sources += [f"--set {override}" for override in overrides or []]  # where a bad value was written
    config = validate(EvalConfig, data, " + ".join(sources) or "evaluation config", "evaluation config", SpecError)
    unknown = sorted(set(config.metrics) - set(METRIC_NAMES))
    if unknown:
        raise SpecError(f"unknown metrics {unknown}; known: {', '.join(METRIC_NAMES)}")
    return config
