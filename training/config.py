"""The training configuration: one YAML file per run, validated by pydantic, with `key=value` overrides.

A run has shared settings (shards, VAE, model, checkpoints, logging, validation) and a list of stages
that run one after another in the same output folder; a stage that finished (its export exists) is
skipped on the next launch, so `stage2.yaml` can start from what `stage1.yaml` left.

Files may start from another: `base: other.yaml` (relative to the file) is read first and the file's
own keys are merged over it (mappings merge, everything else replaces). Several files may be given: each
is merged over the ones before it, so one file of a user's own paths (shards, weights, split, output
folder; `training/configs/paths.example.yaml`) serves both stages: `--config stage1.yaml --config
paths.yaml`, then `--config stage2.yaml --config paths.yaml`. Overrides use dotted keys; a list element
is reached by index or, for stages, by name: `stages.stage1.steps=10`.

Relative paths: `base` is relative to the file that names it; `deepspeed` is looked up beside the
config file, then in `training/configs/` (so `deepspeed=zero3.json` works from the command line);
every other path is relative to the working directory the run is launched from. A build folder
(`data.build_dir`, `validation.build_dir`) may also be an fsspec URL such as `s3://bucket/run`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from manifests.yaml_files import apply_override, read_mapping, validate
from pipeline.storage import Location, is_url, location

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _build_location(value: Any) -> Location:
    """A build folder: a local path as a Path, an fsspec URL as the string it is (a Path would make
    `s3://b/run` `s3:/b/run`). A URL whose protocol fsspec does not know, or whose package is not installed,
    is refused here, before any process starts, rather than when the first rank lists the build."""
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a build folder or an fsspec URL such as s3://bucket/run, got {value!r}")
    if is_url(value):
        import fsspec

        protocol = value.split("://", 1)[0]
        try:
            fsspec.get_filesystem_class(protocol)
        except (ValueError, ImportError) as error:
            raise ValueError(f"{value}: fsspec cannot open {protocol}:// URLs: {error}") from error
    return location(value)


# an `rp-data build --out` folder: a local path or an fsspec URL
BuildLocation = Annotated[Location, BeforeValidator(_build_location)]
BUILD_HELP = "an `rp-data build --out` folder or an fsspec URL such as s3://bucket/run"


class DataConfig(_Strict):
    build_dir: BuildLocation = Field(description=f"{BUILD_HELP} (shards/ with *.stats.json commit markers)")
    weights: dict[str, float] = Field(
        default_factory=dict, description="per-dataset mixing weight; 0 leaves a dataset out"
    )
    default_weight: float = Field(1.0, ge=0, description="weight of datasets that `weights` does not name")
    exclude_splits: list[str] = Field(default_factory=lambda: ["test"], description="json `split` values never trained")
    heldout_split: Path | None = Field(
        None,
        description="the evaluation split file (rp-data split): its clips, their videos and identities are never "
        "trained, whatever the samples' `split` labels say (CelebV-HQ's are `unsplit`); recorded with every export",
    )
    heldout_policy: Literal["filter", "refuse"] = Field(
        "filter", description="samples of heldout_split in the build: skip them (filter) or refuse the build"
    )
    keys: list[str] | None = Field(None, description="train on these sample keys only (debugging, overfitting)")
    shuffle_buffer: int = Field(256, ge=1, description="samples held by each worker's shuffle buffer")
    num_workers: int = Field(4, ge=0, description="DataLoader worker processes per rank")
    epoch_batches: int = Field(1000, ge=1, description="batches per rank in one webdataset epoch (with_epoch)")
    crop_scale: tuple[float, float] = Field(
        (0.8, 1.2), description="image samples: crop side / the json crop_side, drawn per crop (random-crop aug.)"
    )
    color_permutation: float = Field(
        0.0,
        ge=0,
        le=1,
        description="ours: share of examples whose colour channels are permuted, the same way in the reference and "
        "the targets. On a build of few faces a model can lower its loss by memorising them instead of copying "
        "the reference; permuted colours can only be read from the reference. 0 for real data",
    )

    @model_validator(mode="after")
    def _ordered_scale(self) -> DataConfig:
        low, high = self.crop_scale
        if not 0 < low <= high:
            raise ValueError(f"crop_scale must be 0 < low <= high, got {self.crop_scale}")
        return self


class VAEConfig(_Strict):
    path: Path = Field(description="SD1.5 VAE: a diffusers folder (stabilityai/sd-vae-ft-ema) or a .safetensors file")
    chunk_size: int = Field(8, ge=1, description="frames per VAE call (bounds its activation memory)")
    sample_posterior: bool = Field(True, description="draw latents from the posterior (False: its mean)")


# The released file stage 1 starts from. Named in every refusal, since `stdit2_weights: null` used to mean
# "train the 767M backbone from random weights" without a word.
STDIT2_SOURCE = (
    "the Open-Sora 1.1 STDiT2-XL/2 weights: model.safetensors of the Hugging Face model "
    "hpcai-tech/OpenSora-STDiT-v2-stage3"
)
STDIT2_REQUIRED = (
    f"stdit2_weights is required: the local path of {STDIT2_SOURCE} (download it once and give its path), "
    "or `stdit2_weights: none` to train the backbone from random weights"
)


class ModelConfig(_Strict):
    preset: Literal["paper", "small", "tiny"] = "paper"
    overrides: dict[str, Any] = Field(default_factory=dict, description="RealPortrait keyword arguments")
    stdit2_weights: Literal["none"] | Path = Field(
        description="Open-Sora 1.1 STDiT2 checkpoint to start the backbone from; `none`: random weights"
    )
    gradient_checkpointing: bool = True

    @model_validator(mode="before")
    @classmethod
    def _weights_given(cls, data: Any) -> Any:
        """Missing or null is refused with the file to fetch: training from scratch must be asked for."""
        if isinstance(data, dict) and data.get("stdit2_weights") is None:
            raise ValueError(STDIT2_REQUIRED)
        return data

    @property
    def stdit2_path(self) -> Path | None:
        """The checkpoint to import, or None for an explicit `none`."""
        return None if self.stdit2_weights == "none" else Path(self.stdit2_weights)


class OptimizerConfig(_Strict):
    lr: float = Field(2e-5, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    eps: float = Field(1e-8, gt=0)
    warmup_steps: int = Field(1000, ge=0, description="linear warm-up from 0 to lr")
    schedule: Literal["constant", "cosine"] = Field("constant", description="after warm-up")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine: the final lr as a fraction of lr")
    grad_clip: float = Field(1.0, gt=0, description="global gradient-norm clipping")


class ConditionDropout(_Strict):
    """Which conditions a training sample keeps, drawn jointly (exclusive shares; the rest keeps both).

    Guidance samples with (reference and motion), (reference only) and (neither), so each of those must
    be trained on a share of its own; independent dropouts of 10% each would leave "neither" at 1%.
    """

    motion: float = Field(0.1, ge=0, le=1, description="share that drops motion only: the reference-only pass")
    both: float = Field(0.1, ge=0, le=1, description="share that drops reference and motion: the unconditional pass")
    reference: float = Field(0.0, ge=0, le=1, description="share that drops the reference only (unused by guidance)")

    @model_validator(mode="after")
    def _a_distribution(self) -> ConditionDropout:
        if self.motion + self.both + self.reference > 1:
            raise ValueError(
                f"condition_dropout shares sum to {self.motion + self.both + self.reference:g}, more than 1"
            )
        return self

    def model_rates(self) -> dict[str, float]:
        """The matching `RealPortrait` config entries."""
        return {"drop_motion_rate": self.motion, "drop_both_rate": self.both, "drop_reference_rate": self.reference}


class StageConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    mode: Literal["image", "video"] = Field(description="image: (reference, target) pairs, L=1; video: L frames")
    steps: int = Field(ge=1, description="optimizer steps")
    global_batch: int = Field(ge=1, description="samples per optimizer step over all ranks")
    micro_batch: int | None = Field(None, ge=1, description="per rank per forward; default global_batch / ranks")
    num_frames: int = Field(16, ge=1, description="video mode: L consecutive target frames")
    frame_stride: int = Field(1, ge=1, description="video mode: take every k-th frame")
    resolution: int = Field(512, ge=64, description="frame side in pixels (a multiple of 64)")
    init_from: str | None = Field(
        None, description="a previous stage's name (its export in this output_dir) or a save_pretrained folder"
    )
    trainable: list[str] = Field(default_factory=lambda: ["*"], description="fnmatch patterns of parameter names")
    frozen: list[str] = Field(default_factory=list, description="patterns removed from `trainable`")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    ema_decay: float = Field(0.9999, ge=0, lt=1)
    ema_warmup: float = Field(
        0.1, ge=0, le=1, description="fraction of the stage's steps after which the EMA decay has reached ema_decay"
    )
    condition_dropout: ConditionDropout = Field(default_factory=lambda: ConditionDropout())

    @model_validator(mode="after")
    def _shapes(self) -> StageConfig:
        if self.resolution % 64:
            raise ValueError(
                f"resolution must be a multiple of 64 (VAE factor 8 x patch 2 x ...), got {self.resolution}"
            )
        if self.micro_batch is not None and self.global_batch % self.micro_batch:
            raise ValueError(f"global_batch {self.global_batch} is not a multiple of micro_batch {self.micro_batch}")
        return self

    @property
    def frames_per_sample(self) -> int:
        """Target frames of one sample: 1 in image mode."""
        return 1 if self.mode == "image" else self.num_frames


class CheckpointConfig(_Strict):
    every: int = Field(1000, ge=1, description="DeepSpeed checkpoint every N steps (and at the end of a stage)")
    keep: int = Field(3, ge=1, description="checkpoints kept per stage (older ones are deleted)")


class LoggingConfig(_Strict):
    every: int = Field(10, ge=1, description="TensorBoard scalars and the console line every N steps")


class ValidationConfig(_Strict):
    every: int = Field(1000, ge=1, description="validation samples every N steps (and at the end of a stage)")
    pairs: int = Field(2, ge=0, description="fixed validation clips (0 disables validation)")
    splits: list[str] = Field(default_factory=lambda: ["val", "test"], description="json splits they come from")
    build_dir: BuildLocation | None = Field(
        None, description=f"another build for validation ({BUILD_HELP}); default data.build_dir"
    )
    frames: int = Field(8, ge=1, description="driving frames per clip (image mode animates them one by one)")
    num_steps: int = Field(50, ge=1, description="DDIM steps of the validation sample")
    reference_guidance: float = 2.0
    motion_guidance: float = 1.0
    budget: int = Field(
        1600,
        ge=1,
        description="most clips x frames x num_steps one validation may cost (split over the ranks); the default "
        "(4 x 8 x 50) adds under 5% to training at the paper's settings (bench/model.py)",
    )

    @model_validator(mode="after")
    def _within_budget(self) -> ValidationConfig:
        cost = self.pairs * self.frames * self.num_steps
        if cost > self.budget:
            raise ValueError(
                f"pairs x frames x num_steps = {self.pairs} x {self.frames} x {self.num_steps} = {cost} exceeds "
                f"budget {self.budget}: validation would stall training; lower one of them or raise the budget"
            )
        return self


class TrainConfig(_Strict):
    output_dir: Path
    seed: int = 0
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    deepspeed: Path = Field(CONFIG_DIR / "zero2.json", description="DeepSpeed JSON: ZeRO stage and its knobs")
    compile: bool = Field(
        False,
        description="torch.compile every transformer block of the backbone and the ControlNet, and the final layer "
        "(regional compilation: one compiled graph serves every block); not with ZeRO-3, whose parameter hooks "
        "run inside each block",
    )
    collective_timeout_minutes: float = Field(
        30, gt=0, description="how long a rank waits in a collective (all-reduce, barrier) before the job fails"
    )
    data: DataConfig
    vae: VAEConfig
    model: ModelConfig
    stages: list[StageConfig] = Field(min_length=1)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)

    @model_validator(mode="before")
    @classmethod
    def _model_section(cls, data: Any) -> Any:
        """A config without a `model` section gets the refusal that names the STDiT2 file, not 'field required'."""
        if isinstance(data, dict) and "model" not in data:
            return {**data, "model": {}}
        return data

    @model_validator(mode="after")
    def _unique_stages(self) -> TrainConfig:
        names = [stage.name for stage in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        return self


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's mapping with its `base` chain merged under it."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: field 'base' makes a cycle: {' -> '.join(map(str, (*seen, path)))}")
    raw = read_mapping(path, "training config", ConfigError)
    base = raw.pop("base", None)
    return raw if base is None else _merge(_read(path.parent / base, (*seen, path)), raw)


def _locate_deepspeed(data: dict[str, Any], config_dir: Path) -> None:
    """A relative DeepSpeed JSON path: beside the config file if there, else the shipped one."""
    value = data.get("deepspeed")
    if value is None or Path(value).is_absolute():
        return
    beside = config_dir / value
    data["deepspeed"] = str(beside if beside.exists() or not (CONFIG_DIR / value).exists() else CONFIG_DIR / value)


def load_config(paths: str | Path | Sequence[str | Path], overrides: list[str] | None = None) -> TrainConfig:
    """Read each file with its `base` chain, merge them in order, apply `key=value` overrides, validate.
    Errors name the files and the field; a relative `deepspeed` is looked up beside the first file."""
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    data: dict[str, Any] = {}
    for path in files:
        data = _merge(data, _read(path))
    for override in overrides or []:
        apply_override(data, override, ConfigError)
    _locate_deepspeed(data, files[0].resolve().parent)
    return validate(TrainConfig, data, " + ".join(map(str, files)), "training config", ConfigError)
