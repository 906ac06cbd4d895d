"""What a stage trains and how: the model it starts from, its trainable parameters, AdamW with warm-up,
the DeepSpeed configuration, and the loss module DeepSpeed wraps.

The DeepSpeed JSON (`configs/zero2.json`, `configs/zero3.json` or your own) holds the ZeRO stage and
its knobs; the keys that follow from the stage config (batch sizes, clipping, precision) are filled
in here, and a JSON that sets one of them is refused so that no value silently loses to another.
The optimizer and schedule are torch's (AdamW, LambdaLR) handed to `deepspeed.initialize`: DeepSpeed
steps them, clips, and saves their state in its checkpoints.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.embeddings import RotaryEmbedding
from model.opensora_import import ImportReport
from model.realportrait import RealPortrait
from training.config import STDIT2_SOURCE, ConfigError, OptimizerConfig, StageConfig, TrainConfig
from training.ema import EMA

OWNED_KEYS = (
    "train_batch_size",
    "train_micro_batch_size_per_gpu",
    "gradient_accumulation_steps",
    "gradient_clipping",
    "bf16",
    "fp16",
    "optimizer",
    "scheduler",
)


def batch_split(stage: StageConfig, world: int) -> tuple[int, int]:
    """(micro batch per rank, gradient accumulation steps) giving the stage's global batch."""
    micro = stage.micro_batch or stage.global_batch // world
    if micro < 1 or stage.global_batch % (micro * world):
        raise ConfigError(
            f"stage {stage.name}: global_batch {stage.global_batch} cannot be split into {world} rank(s) x "
            f"micro_batch {micro} x whole accumulation steps; set stages.{stage.name}.micro_batch"
        )
    return micro, stage.global_batch // (micro * world)


def deepspeed_config(
    path: Path, stage: StageConfig, *, world: int, bf16: bool, compiled: bool = False
) -> dict[str, Any]:
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"deepspeed: cannot read the DeepSpeed config {path}: {exc}") from exc
    if compiled and config.get("zero_optimization", {}).get("stage", 0) == 3:
        raise ConfigError(
            f"compile: true cannot run with {path} (ZeRO stage 3): its parameter-gathering hooks fire inside the "
            "compiled blocks; use a ZeRO-2 config (training/configs/zero2.json) or compile: false"
        )
    owned = sorted(set(config) & set(OWNED_KEYS))
    if owned:
        raise ConfigError(f"{path}: sets {owned}, which the training config owns (stage batch, clipping, precision)")
    micro, accumulation = batch_split(stage, world)
    return {
        **config,
        "train_batch_size": stage.global_batch,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": stage.optimizer.grad_clip,
        "bf16": {"enabled": bf16},
    }


def resolve_init(output_dir: Path, value: str) -> Path:
    """A stage name means that stage's export in this run; anything else is a save_pretrained folder."""
    stage_export = output_dir / value / "export"
    path = stage_export if "/" not in value and not Path(value).exists() else Path(value)
    if not (path / "config.json").exists():
        raise ConfigError(
            f"init_from {value!r}: no exported model at {path} (config.json + safetensors); "
            "run the earlier stage first or name a save_pretrained folder"
        )
    return path


@dataclass(frozen=True)
class StartingModel:
    """A stage's model before training, where its weights come from, and what the STDiT2 import did (None
    when the stage continues an export); `import_record` is what the run folder keeps of it."""

    model: RealPortrait
    origin: str
    import_record: dict[str, Any] | None


def require_stdit2_weights(config: TrainConfig) -> None:
    """A stage that starts from the preset needs the STDiT2 file named by the config (unless `none`)."""
    path = config.model.stdit2_path
    if path is None or all(stage.init_from is not None for stage in config.stages):
        return
    if not path.is_file():
        raise ConfigError(
            f"model.stdit2_weights: {path} not found. It must be {STDIT2_SOURCE}. Download it and put it at {path}, "
            "pass model.stdit2_weights=/your/copy, or model.stdit2_weights=none to train from random weights"
        )


def build_model(config: TrainConfig, stage: StageConfig) -> StartingModel:
    """The stage's starting model, with its guidance dropout and gradient checkpointing set."""
    record: dict[str, Any] | None = None
    if stage.init_from is not None:
        path = resolve_init(config.output_dir, stage.init_from)
        model = RealPortrait.from_pretrained(path, low_cpu_mem_usage=False)
        origin = f"weights of {path}"
    else:
        model = RealPortrait.from_preset(config.model.preset, **config.model.overrides)
        weights = config.model.stdit2_path
        if weights is None:
            origin = f"a new {config.model.preset} model (stdit2_weights: none, the backbone from random weights)"
            record = {"stdit2_weights": "none", **asdict(ImportReport(initialised=sorted(model.state_dict())))}
        else:
            report = model.import_opensora_stdit2(weights)
            origin = (
                f"a new {config.model.preset} model with the STDiT2 weights of {weights} ({len(report.loaded)} "
                f"loaded, {len(report.adapted)} adapted, {len(report.initialised)} initialised)"
            )
            record = {"stdit2_weights": str(weights), **asdict(report)}
    model.register_to_config(**stage.condition_dropout.model_rates())
    if config.model.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return StartingModel(model.train(), origin, record)


def select_trainable(model: nn.Module, stage: StageConfig) -> list[str]:
    """Sets requires_grad from the stage's patterns; returns the trainable names. Parameters that were
    never trainable (e.g. fixed rotary frequencies) stay frozen; a pattern matching nothing is an error."""
    names = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    for field in ("trainable", "frozen"):
        for pattern in getattr(stage, field):
            if not fnmatch.filter(names, pattern):
                raise ConfigError(f"stages.{stage.name}.{field}: pattern {pattern!r} matches no parameter")
    chosen = [
        name
        for name in names
        if any(fnmatch.fnmatchcase(name, p) for p in stage.trainable)
        and not any(fnmatch.fnmatchcase(name, p) for p in stage.frozen)
    ]
    if not chosen:
        raise ConfigError(f"stages.{stage.name}: the trainable/frozen patterns leave no parameter to train")
    keep = set(chosen)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in keep)
    return chosen


def lr_factor(optimizer: OptimizerConfig, total_steps: int) -> Callable[[int], float]:
    """LambdaLR factor for optimizer step s (0-based): linear warm-up over `warmup_steps` (the first
    step already moves), then constant or a cosine down to `min_lr_ratio`."""

    def factor(step: int) -> float:
        if step < optimizer.warmup_steps:
            return (step + 1) / optimizer.warmup_steps
        if optimizer.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - optimizer.warmup_steps) / max(1, total_steps - optimizer.warmup_steps))
        return optimizer.min_lr_ratio + (1 - optimizer.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def make_optimizer(model: nn.Module, stage: StageConfig) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    settings = stage.optimizer
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=settings.lr,
        betas=settings.betas,
        eps=settings.eps,
        weight_decay=settings.weight_decay,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(settings, stage.steps))


def rotary_restorer(model: nn.Module) -> Callable[[], None]:
    """Call before `deepspeed.initialize`; the returned function, called after it, puts the exact fp32 rotary
    frequencies back. DeepSpeed's bf16 engine casts every parameter one by one (frozen ones too), bypassing
    the cast hook by which `RotaryEmbedding` keeps `freqs` in fp32 under `model.to(torch.bfloat16)`."""
    saved = [
        (module, module.freqs.detach().clone()) for module in model.modules() if isinstance(module, RotaryEmbedding)
    ]

    def restore() -> None:
        for module, exact in saved:
            module.freqs.data = exact.to(module.freqs.device)

    return restore


def compile_networks(model: RealPortrait) -> None:
    """Compiles, in place, the modules that hold nearly all of the backbone's and the ControlNet's compute: their
    transformer blocks and the backbone's final layer. Block by block rather than whole, so that one graph,
    compiled once, serves every block of a stack, gradient checkpointing still wraps each block, and the host
    branches of `STDiT2.denoise` stay outside the compiled graphs. Parameter names are unchanged (no
    `_orig_mod.` wrapper), so checkpoints and the EMA see the same model."""
    for module in (*model.backbone.blocks, *model.controlnet.blocks, model.backbone.final_layer):
        module.compile()


def ema_for_stage(model: RealPortrait, names: list[str], stage: StageConfig, device: torch.device) -> EMA:
    """The stage's EMA, its decay warm-up ending after the stage's `ema_warmup` fraction of steps."""
    return EMA(model, names, stage.ema_decay, device, warmup_updates=round(stage.ema_warmup * stage.steps))


class Objective(nn.Module):
    """The module DeepSpeed runs: its forward is `RealPortrait.training_loss` (augmentation, timestep and
    noise draws, guidance dropout), so DeepSpeed's hooks (ZeRO-3 gathering) see every call.

    With `autocast` (bf16 training) the loss runs under torch.autocast on the inputs' device: DeepSpeed's bf16
    engine casts the weights but not the inputs, and autocast keeps reductions such as layer norms in fp32."""

    def __init__(self, model: RealPortrait, autocast: torch.dtype | None = None) -> None:
        super().__init__()
        self.model = model
        self.autocast = autocast

    def forward(
        self,
        latents: torch.Tensor,
        reference_latents: torch.Tensor,
        driving: torch.Tensor,
        fps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        with torch.autocast(latents.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            return self.model.training_loss(latents, reference_latents, driving, fps=fps)
