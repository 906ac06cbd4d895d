"""Launched by test_ema_partitions.py under the deepspeed launcher (2 CPU ranks): the trainer's own stage run
(`training.train.StageRun`, tiny preset, bf16, ZeRO-2 or ZeRO-3), every torch.distributed collective counted.

Per step it counts the collectives of the training step, of the EMA update, and of the update the EMA used to
make (every trained parameter's fp32 master weights read whole with `safe_get_full_fp32_param`), which also
feeds a reference average. After 2 steps it saves a checkpoint; under ZeRO-2 a second stage run resumes from
it, trains 2 more steps beside a reference continued from the saved average, and saves again. Rank 0 compares both saved
averages with their references and writes the figures to --result as JSON.

    deepspeed --num_gpus 2 tests/training/ema_partition_run.py --build B --vae V --out DIR --result R.json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[0] = str(REPO)  # this checkout's packages, not whatever tests/training/ would shadow

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.distributed.distributed_c10d as c10d  # noqa: E402

COLLECTIVES = (
    "all_reduce",
    "all_reduce_coalesced",
    "all_gather",
    "all_gather_coalesced",
    "all_gather_into_tensor",
    "_all_gather_base",
    "all_gather_object",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "_reduce_scatter_base",
    "all_to_all",
    "all_to_all_single",
    "broadcast",
    "broadcast_object_list",
    "reduce",
    "gather",
    "gather_object",
    "scatter",
    "scatter_object_list",
    "barrier",
    "monitored_barrier",
    "send",
    "recv",
    "isend",
    "irecv",
    "batch_isend_irecv",
)


class CollectiveCounter:
    """Counts calls of torch.distributed's collectives, patched where DeepSpeed and torch look them up (the
    `torch.distributed` namespace, which DeepSpeed reads at call time or, for its all-gather and reduce-scatter
    functions, once at `init_distributed`, and `distributed_c10d`'s own globals). A collective made of others
    (all_gather_object is an all_gather) counts once."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._depth = 0
        for name in COLLECTIVES:
            original = getattr(c10d, name, None)
            if original is None:
                continue
            wrapped = self._wrap(name, original)
            setattr(c10d, name, wrapped)
            if getattr(dist, name, None) is original:
                setattr(dist, name, wrapped)

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def counted(*args: Any, **kwargs: Any) -> Any:
            if self._depth == 0:
                self.calls.append(name)
            self._depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                self._depth -= 1

        return counted

    @contextlib.contextmanager
    def counting(self, into: list[int]) -> Iterator[None]:
        """Appends to `into` the number of collectives made inside the block."""
        before = len(self.calls)
        yield
        into.append(len(self.calls) - before)


COUNTER = CollectiveCounter()  # before DeepSpeed binds its collective functions

from deepspeed.utils import safe_get_full_fp32_param  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from model.vae import FrameVAE  # noqa: E402
from training.checkpoints import EMA_DIR, WEIGHTS  # noqa: E402
from training.config import load_config  # noqa: E402
from training.data import endless  # noqa: E402
from training.ema import warmed_up_decay  # noqa: E402
from training.train import Context, StageRun, init_process_group, release_shm_buffer  # noqa: E402

TINY = REPO / "training" / "configs" / "tiny.yaml"


@torch.no_grad()
def reference_update(reference: dict[str, torch.Tensor], run: StageRun, updates: int) -> None:
    """The update the EMA used to make: each trained parameter's whole fp32 master copy (a collective each)."""
    stage = run.stage
    weight = 1 - warmed_up_decay(stage.ema_decay, updates, round(stage.ema_warmup * stage.steps))
    parameters = dict(run.model.named_parameters())
    for name, average in reference.items():
        average.lerp_(safe_get_full_fp32_param(parameters[name]).float(), weight)


def train_beside_reference(run: StageRun, steps: int, counts: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """`steps` steps of the stage run as `StageRun.run` makes them, a reference average fed beside its EMA."""
    reference = {name: p.detach().clone() for name, p in run.ema.gathered().named_parameters() if name in run.ema.names}
    batches = endless(run.loader)
    for _ in range(steps):
        with COUNTER.counting(counts["train_step"]):
            run.train_step(batches)
        updates = run.ema.updates
        with COUNTER.counting(counts["ema_update"]):
            run.ema.update(run.model)
        with COUNTER.counting(counts["full_parameter_ema_update"]):
            reference_update(reference, run, updates)
        run.state.update(step=run.engine.global_steps)
    with COUNTER.counting(counts["checkpoint_save"]):
        run.checkpoints.save(run.engine, run.ema, run.state)
    return reference


def compare(saved: Path, reference: dict[str, torch.Tensor], start: dict[str, torch.Tensor]) -> dict[str, float]:
    """The saved average against the reference: the largest difference (absolute, and relative to the largest
    value), and how far both moved from the start (a comparison of unmoved weights proves nothing)."""
    weights = load_file(saved)
    diff = max((weights[n] - r).abs().max().item() for n, r in reference.items())
    scale = max(r.abs().max().item() for r in reference.values())
    moved = max((weights[n] - start[n]).abs().max().item() for n in reference)
    frozen_kept = all(torch.equal(weights[n], start[n]) for n in start if n not in reference)
    return {"max_abs_diff": diff, "max_abs_value": scale, "moved": moved, "frozen_kept": float(frozen_kept)}


def measure(zero: str, args: argparse.Namespace, context: Context) -> dict[str, Any]:
    overrides = [
        f"output_dir={args.out / zero}",
        f"data.build_dir={args.build}",
        f"vae.path={args.vae}",
        f"deepspeed={zero}.json",
        "precision=bf16",
        "validation.pairs=0",
        "checkpoint.every=2",
        "stages.stage1.steps=4",
        "stages.stage1.ema_decay=0.9",
        "stages.stage1.ema_warmup=0.5",  # decays 0, 0.82, then 0.9: the warm-up and the target both averaged
    ]
    config = load_config(TINY, overrides)
    stage = config.stages[0]
    counts: dict[str, list[int]] = {
        name: [] for name in ("train_step", "ema_update", "full_parameter_ema_update", "checkpoint_save")
    }
    run = StageRun(config, 0, stage, context)
    start = {name: p.detach().clone() for name, p in run.ema.gathered().named_parameters()}
    reference = train_beside_reference(run, 2, counts)
    run.close()
    checkpoints = args.out / zero / stage.name / "checkpoints"
    result: dict[str, Any] = {"counts": counts}
    if context.rank == 0:
        result["saved"] = compare(checkpoints / "step_00000002" / EMA_DIR / WEIGHTS, reference, start)
    if zero == "zero3":  # DeepSpeed cannot load this trainer's ZeRO-3 module states (rotary freqs): no resume
        return result
    resumed = StageRun(config, 0, stage, context)
    result["resumed_at"] = resumed.engine.global_steps
    continued = train_beside_reference(resumed, 2, counts)
    resumed.close()
    if context.rank == 0:
        result["resumed"] = compare(checkpoints / "step_00000004" / EMA_DIR / WEIGHTS, continued, start)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--build", "--vae", "--out", "--result"):
        parser.add_argument(name, type=Path, required=True)
    parser.add_argument("--local_rank", type=int, default=-1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rank, world = init_process_group(30)
    vae = FrameVAE.from_path(args.vae, chunk_size=16).to(torch.device("cpu"), torch.bfloat16)
    context = Context(rank, world, torch.device("cpu"), True, vae)
    results = {zero: measure(zero, args, context) for zero in ("zero2", "zero3")}
    if rank == 0:
        args.result.write_text(json.dumps(results, indent=1))
    dist.barrier()
    dist.destroy_process_group()
    release_shm_buffer(rank)


if __name__ == "__main__":
    main()
