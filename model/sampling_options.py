"""How a clip is generated (`SamplingOptions`), kept apart from the model code: `rp-animate` and `rp-eval`
show these defaults in their help and validate their arguments against them before torch's model code,
diffusers or mediapipe is imported, so a wrong value is reported in a moment rather than after the model
loads. Both commands take the same flags for the same fields (`FLAGS`), described once, here."""

from __future__ import annotations

import argparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

WINDOW = 16  # the clip length the paper's model is trained on (L = 16, `PRESETS["paper"].num_frames`)


class SamplingOptions(BaseModel):
    """The defaults are the paper's 50 steps and our guidance scales."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_steps: int = Field(50, ge=1, description="DDIM denoising steps (the paper: 50); the time grows with them")
    reference_guidance: float = Field(
        2.0,
        ge=0,
        description="classifier-free guidance scale of the reference (appearance) condition: above 1 holds the "
        "source's look more strongly; 1 turns this guidance off and saves one model pass per step",
    )
    motion_guidance: float = Field(
        1.0,
        ge=0,
        description="guidance scale of the motion condition: above 1 follows the driving motion more strongly "
        "(one more model pass per step); 1 turns this guidance off",
    )
    controlnet_scale: float = Field(
        1.0,
        ge=0,
        description="multiplies the motion ControlNet's residuals; 0 drops the motion condition, exactly as "
        "training's motion dropout does (the motion ablation)",
    )
    eta: float = Field(0.0, ge=0, le=1, description="DDIM stochasticity (0 = deterministic)")
    seed: int = Field(0, description="seed of the initial noise (and of eta's noise)")
    window: int = Field(WINDOW, ge=1, description="frames per denoising window (the training clip length)")
    overlap: int = Field(4, ge=0, description="frames shared by neighbouring windows, blended at every step")

    @model_validator(mode="after")
    def _overlap_fits(self) -> SamplingOptions:
        """Windows must advance: an overlap as long as the window would never reach the video's end."""
        if self.overlap >= self.window:
            raise ValueError(f"the overlap ({self.overlap}) must be smaller than the window ({self.window})")
        return self


FLAGS = {
    "num_steps": "--steps",
    "reference_guidance": "--reference-guidance",
    "motion_guidance": "--motion-guidance",
    "controlnet_scale": "--controlnet-scale",
    "eta": "--eta",
    "seed": "--seed",
    "window": "--window",
    "overlap": "--overlap",
}


def _dest(field: str) -> str:
    return FLAGS[field].removeprefix("--").replace("-", "_")


def add_sampling_arguments(parser: argparse.ArgumentParser, fields: tuple[str, ...] = tuple(FLAGS)) -> None:
    """One option per field, with the field's type, default and description."""
    for field in fields:
        info = SamplingOptions.model_fields[field]
        metavar = "N" if info.annotation is int else "X"
        parser.add_argument(
            FLAGS[field], type=info.annotation, default=info.default, metavar=metavar, help=info.description
        )


def sampling_options(args: argparse.Namespace, fields: tuple[str, ...] = tuple(FLAGS)) -> SamplingOptions:
    """The options of the parsed `fields`; a wrong value is a ValueError naming its flag, in one line."""
    try:
        return SamplingOptions(**{field: getattr(args, _dest(field)) for field in fields})
    except ValidationError as exc:
        error = exc.errors()[0]
        if not error["loc"]:  # the model's own check (the overlap): its message names both values
            raise ValueError(f"arguments --overlap/--window: {error['ctx']['error']}") from None
        field = str(error["loc"][0])
        raise ValueError(f"argument {FLAGS[field]}: {error['msg'].lower()}, got {error['input']}") from None
