"""What autograd really keeps for the backward pass: the measurement `costs.activation_elements` is checked by."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def saved_tensor_bytes(module: torch.nn.Module) -> Iterator[dict[int, int]]:
    """Within the block, fills a dict: storage address -> bytes, for each storage autograd saves.

    Keyed by storage, not tensor, because the views of one activation share memory and must count once;
    the module's parameters are left out since the model's weights are not activations.
    """
    parameters = {p.untyped_storage().data_ptr() for p in module.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield kept
