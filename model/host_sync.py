"""A guard that records every host synchronisation a block of torch code asks for, on any device.

Why: a GPU runs ahead of the Python that feeds it only while nothing makes the host wait for a result.
`.item()`, `bool(tensor)` (an `if` on a tensor), `.tolist()`, `.numpy()`, `int()`/`float()` of a tensor,
linear algebra that checks its result (`linalg.inv`), copies of device values to the CPU, blocking copies
from the CPU to the device, and operations whose output size depends on the values (`nonzero`,
boolean-mask indexing, `unique`, ...) all stall the device queue, and they also break CUDA graphs and
`torch.compile`. On CUDA, `torch.cuda.set_sync_debug_mode` catches the syncs the driver sees; this
guard sees the requests themselves, so it also counts them on the CPU, where tests run and where no
request actually waits.

Used as `with HostSyncGuard() as guard: ...; guard.syncs` (the recorded requests, each with the line of
code that made it), or `HostSyncGuard(strict=True)` to raise at the first one.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

REPOSITORY = Path(__file__).resolve().parents[1]

# Requests that always make the host wait for the device's value.
READS_A_VALUE: dict[Callable[..., Any], str] = {
    torch.Tensor.item: "Tensor.item",
    torch.Tensor.tolist: "Tensor.tolist",
    torch.Tensor.numpy: "Tensor.numpy",
    torch.Tensor.__bool__: "bool(tensor)",
    torch.Tensor.__int__: "int(tensor)",
    torch.Tensor.__float__: "float(tensor)",
    torch.Tensor.__index__: "tensor as an index",
    torch.Tensor.__complex__: "complex(tensor)",
    torch.Tensor.cpu: "Tensor.cpu",
    torch.Tensor.is_nonzero: "Tensor.is_nonzero",
    torch.is_nonzero: "torch.is_nonzero",
    torch.equal: "torch.equal",
    torch.allclose: "torch.allclose",
    torch.Tensor.allclose: "Tensor.allclose",
    torch.Tensor.equal: "Tensor.equal",
    # linear algebra that checks its result for errors (a singular matrix) on the host; the `_ex` forms do not
    torch.linalg.inv: "torch.linalg.inv (error check)",
    torch.inverse: "torch.inverse (error check)",
    torch.Tensor.inverse: "Tensor.inverse (error check)",
    torch.linalg.solve: "torch.linalg.solve (error check)",
    torch.linalg.cholesky: "torch.linalg.cholesky (error check)",
    torch.linalg.lu_factor: "torch.linalg.lu_factor (error check)",
    torch.linalg.eigh: "torch.linalg.eigh (error check)",
}
# Operations whose output size depends on the values: the host reads a count before it can allocate.
VALUE_SIZED: dict[Callable[..., Any], str] = {
    torch.nonzero: "torch.nonzero",
    torch.Tensor.nonzero: "Tensor.nonzero",
    torch.argwhere: "torch.argwhere",
    torch.masked_select: "torch.masked_select",
    torch.Tensor.masked_select: "Tensor.masked_select",
    torch.unique: "torch.unique",
    torch.Tensor.unique: "Tensor.unique",
    torch.unique_consecutive: "torch.unique_consecutive",
    torch.bincount: "torch.bincount",
}


@dataclass(frozen=True)
class HostSync:
    """One recorded request: what it was and the innermost line of this repository's code that made it."""

    what: str
    where: str

    def __str__(self) -> str:
        return f"{self.what} at {self.where}"


class HostSyncError(RuntimeError):
    """A host sync inside a block guarded with `strict=True`."""


def _caller() -> str:
    """The innermost frame in this repository outside this module (else the innermost frame at all)."""
    frames = traceback.extract_stack()[:-3]
    for frame in reversed(frames):
        path = Path(frame.filename).resolve()
        if path != Path(__file__).resolve() and REPOSITORY in path.parents:
            return f"{path.relative_to(REPOSITORY)}:{frame.lineno}"
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _target_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.device | None:
    """The device a `Tensor.to(...)` call moves to, if it names one."""
    for value in (kwargs.get("device"), *args[1:]):
        if isinstance(value, (torch.device, str)):
            return torch.device(value)
        if isinstance(value, torch.Tensor):
            return value.device
    return None


def _from_host_data(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """`torch.tensor(data, device=d)` with Python data and a device: the data is copied from host memory."""
    device = kwargs.get("device")
    return device is not None and torch.device(device).type != "cpu" and not isinstance(args[0], torch.Tensor)


def _has_bool_index(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(part, torch.Tensor) and part.dtype == torch.bool for part in parts)


class HostSyncGuard(TorchFunctionMode):
    """Records (or, `strict`, refuses) the host syncs of the torch calls made inside its `with` block.

    Moves between the host and a device count when they cross: a copy of a device tensor to the CPU
    always, a copy of a CPU tensor to a device unless it is `non_blocking` (a blocking copy waits for the
    queue). When the code computes on the CPU nothing crosses, so such moves are invisible there: the
    `meta` device (which refuses every read of a value) and CUDA's sync debug mode cover them.
    """

    def __init__(self, *, strict: bool = False) -> None:
        super().__init__()
        self.strict = strict
        self.syncs: list[HostSync] = []

    def _record(self, what: str) -> None:
        sync = HostSync(what, _caller())
        self.syncs.append(sync)
        if self.strict:
            raise HostSyncError(f"host sync inside a guarded block: {sync}")

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        what = READS_A_VALUE.get(func) or VALUE_SIZED.get(func)
        if what is not None:
            self._record(what)
        elif func is torch.Tensor.__getitem__ and len(args) > 1 and _has_bool_index(args[1]):
            self._record("boolean-mask indexing")
        elif func is torch.repeat_interleave or func is torch.Tensor.repeat_interleave:
            repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
            if isinstance(repeats, torch.Tensor) and kwargs.get("output_size") is None:
                self._record("repeat_interleave with tensor repeats and no output_size")
        elif func is torch.Tensor.to and args and isinstance(args[0], torch.Tensor):
            self._check_move(args[0].device, _target_device(args, kwargs), bool(kwargs.get("non_blocking")))
        elif func is torch.Tensor.copy_ and len(args) > 1 and isinstance(args[1], torch.Tensor):
            non_blocking = args[2] if len(args) > 2 else kwargs.get("non_blocking")
            self._check_move(args[1].device, args[0].device, bool(non_blocking))
        elif func in (torch.tensor, torch.as_tensor) and _from_host_data(args, kwargs):
            self._record(f"{func.__name__}(data, device=...) (a blocking copy from host memory)")
        return func(*args, **kwargs)

    def _check_move(self, source: torch.device, target: torch.device | None, non_blocking: bool) -> None:
        if target is None or source.type == target.type:
            return
        if target.type == "cpu" and source.type != "meta":
            self._record(f"copy from {source.type} to the CPU")
        elif source.type == "cpu" and target.type != "meta" and not non_blocking:
            self._record(f"blocking copy from the CPU to {target.type}")
