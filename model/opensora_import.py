"""Import of an Open-Sora 1.1 STDiT2 checkpoint into RealPortrait's backbone and ControlNet copy.

The backbone uses the checkpoint's key names, so most tensors load one to one under `backbone.`. The
ControlNet's latent embedding and blocks are copies of the backbone's, so they load from the same
checkpoint tensors. One tensor is adapted: the released output layer predicts 8 channels per patch
position (epsilon and a learned variance, `pred_sigma=True`); RealPortrait predicts epsilon only, so the
epsilon rows are kept. Everything the checkpoint cannot provide (motion encoder, motion embedding,
zero projections) keeps its initialisation and is listed in the report.

Files are read with safetensors, or with `torch.load(weights_only=True)` for `.pt`/`.pth`/`.bin`;
nothing is unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file

if TYPE_CHECKING:
    from model.realportrait import RealPortrait

CHECKPOINT_HINT = (
    "download the Open-Sora 1.1 STDiT2 weights (Hugging Face hpcai-tech/OpenSora-STDiT-v2-stage3, "
    "model.safetensors) and pass the local file path"
)
# Prefixes that training wrappers (DDP, DeepSpeed) put in front of every key.
WRAPPER_PREFIXES = ("module.",)


@dataclass
class ImportReport:
    """What an import did, key by key (model keys unless stated)."""

    loaded: list[str] = field(default_factory=list)  # filled from the checkpoint
    adapted: dict[str, str] = field(default_factory=dict)  # filled from a changed checkpoint tensor: how
    unused: list[str] = field(default_factory=list)  # checkpoint keys that went nowhere
    initialised: list[str] = field(default_factory=list)  # new modules, left at their initialisation

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from the checkpoint"]
        lines += [f"  adapted {key}: {how}" for key, how in self.adapted.items()]
        lines.append(f"left out {len(self.unused)} checkpoint tensors" + (": " if self.unused else ""))
        lines += [f"  {key}" for key in self.unused]
        modules = sorted({key.rsplit(".", 1)[0] for key in self.initialised})
        lines.append(f"initialised {len(self.initialised)} new tensors in {len(modules)} modules:")
        lines += [f"  {module}" for module in modules]
        return "\n".join(lines)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors or weights-only torch file, wrapper prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Open-Sora STDiT2 checkpoint not found at {path}: {CHECKPOINT_HINT}")
    if path.suffix == ".safetensors":
        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for prefix in WRAPPER_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: tensor for key, tensor in state.items()}
    return state


def epsilon_rows(tensor: torch.Tensor, out_channels: int) -> torch.Tensor:
    """Keep the first `out_channels` of each patch position's 2 * out_channels outputs.

    The final linear's rows are ordered (patch position, channel) with the channel fastest, and
    Open-Sora's learned-sigma output puts epsilon in channels 0..C-1 and the variance in C..2C-1.
    """
    per_position = tensor.reshape(-1, 2 * out_channels, *tensor.shape[1:])
    return per_position[:, :out_channels].reshape(-1, *tensor.shape[1:]).clone()


def import_opensora_stdit2(model: RealPortrait, checkpoint: str | Path | Mapping[str, torch.Tensor]) -> ImportReport:
    """Load `checkpoint` (a path or a state dict with Open-Sora key names) into `model`."""
    source = read_checkpoint(checkpoint) if isinstance(checkpoint, str | Path) else dict(checkpoint)
    own = model.state_dict()
    out_channels = model.backbone.out_channels
    report = ImportReport()
    new_state: dict[str, torch.Tensor] = {}

    for key, tensor in source.items():
        target = f"backbone.{key}"
        if target not in own:
            report.unused.append(key)
            continue
        expected = own[target].shape
        if key.startswith("final_layer.linear.") and tensor.shape[0] == 2 * expected[0]:
            tensor = epsilon_rows(tensor, out_channels)
            report.adapted[target] = f"kept the epsilon half ({expected[0]} of {2 * expected[0]} rows)"
        if tensor.shape != expected:
            raise ValueError(
                f"{key}: checkpoint shape {tuple(tensor.shape)} does not fit {tuple(expected)}; "
                "is the RealPortrait config the STDiT2-XL/2 one?"
            )
        new_state[target] = tensor

    for key in own:
        if key.startswith("controlnet.x_embedder.") or key.startswith("controlnet.blocks."):
            backbone_key = "backbone." + key.removeprefix("controlnet.")
            if backbone_key in new_state:
                new_state[key] = new_state[backbone_key]

    result = model.load_state_dict(new_state, strict=False)
    if result.unexpected_keys:
        raise RuntimeError(f"unexpected keys while importing: {result.unexpected_keys}")
    report.loaded = sorted(new_state)
    report.initialised = sorted(result.missing_keys)
    return report
