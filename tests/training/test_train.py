"""`deepspeed training/train.py` end to end as users run it: the launcher, 2 CPU processes, real shards of
`rp-data build --sample`, a diffusers-format VAE with random weights (the real one cannot be downloaded)."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file
from trainkit import TINY, event_files, images, launch, release_shm, run_overrides, scalars, start

from model.embeddings import RotaryEmbedding
from model.realportrait import RealPortrait
from model.vae import FrameVAE
from training.checkpoints import WEIGHTS, is_exported
from training.config import OptimizerConfig, ValidationConfig
from training.data import read_index
from training.engine import lr_factor
from training.train import IMPORT_REPORT
from training.validation import load_clips

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("stage", "global_batch"), [("stage1", 4), ("stage2", 2)])
def test_tiny_config_trains_both_stages(tiny_run: tuple[Path, str], stage: str, global_batch: int) -> None:
    output, stdout = tiny_run
    assert "[stage1] starting from a new tiny model (stdit2_weights: none, the backbone from random weights)" in stdout
    assert "global batch 4 = 2 rank(s) x 1 x 2 accumulation" in stdout
    assert f"[stage2] starting from weights of {output / 'stage1' / 'export'}: video mode" in stdout
    logs = output / "tensorboard" / stage
    losses = scalars(logs, "train/loss")
    assert sorted(losses) == [1, 2, 3, 4] and all(0 < loss < 5 for loss in losses.values())
    assert scalars(logs, "train/lr") == pytest.approx({1: 5e-4, 2: 1e-3, 3: 1e-3, 4: 1e-3})  # warm-up: 2 steps
    assert all(math.isfinite(norm) and norm > 0 for norm in scalars(logs, "train/grad_norm").values())
    assert all(rate > 0 for rate in scalars(logs, "train/samples_per_second").values())
    assert all(0 <= share <= 1 for share in scalars(logs, "train/data_wait_fraction").values())
    assert math.isfinite(scalars(logs, "val/mse")[4])
    assert 0 < scalars(logs, "val/mse_source_copy")[4] < 1  # the line a model that moves the face goes below
    # every rank's time to the validation gather is measured: what the collective timeout is checked against
    assert 0 < scalars(logs, "val/seconds_fastest_rank")[4] <= scalars(logs, "val/seconds_slowest_rank")[4]
    (grid,) = images(logs, "val/grid")
    assert Image.open(grid).size == (5 * 64, 2 * 64)  # reference + 4 frames; driving row, generated row
    (video,) = images(logs, "val/clip0")
    assert Image.open(video).n_frames == 4 and Image.open(video).size == (2 * 64, 64)  # driving | generated

    checkpoints = output / stage / "checkpoints"
    assert (checkpoints / "latest").read_text() == "step_00000004"
    assert sorted(p.name for p in checkpoints.glob("step_*")) == ["step_00000002", "step_00000004"]  # keep: 2
    last = checkpoints / "step_00000004"
    assert {"zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= {
        p.name for p in last.iterdir()
    }  # ZeRO partitions of the optimizer, one per rank
    state = json.loads((last / "trainer_state.json").read_text())
    assert (state["step"], state["samples"], state["ema_updates"]) == (4, 4 * global_batch, 4)
    report = output / stage / IMPORT_REPORT
    if stage == "stage1":  # from the preset: the import report says none, every key at its initialisation
        record = json.loads(report.read_text())
        assert record["stdit2_weights"] == "none" and record["loaded"] == [] and record["adapted"] == {}
        assert "backbone.blocks.0.attn.qkv.weight" in record["initialised"]
    else:  # continues stage 1's export: nothing imported
        assert not report.exists()
    export = output / stage / "export"
    assert is_exported(export) and is_exported(last / "ema")
    exported, final_ema = load_file(export / WEIGHTS), load_file(last / "ema" / WEIGHTS)
    assert exported.keys() == final_ema.keys() and all(torch.equal(exported[k], final_ema[k]) for k in exported)


def test_the_exported_model_loads_and_animates(tiny_run: tuple[Path, str], vae_dir: Path, build_dir: Path) -> None:
    output, _ = tiny_run
    model = RealPortrait.from_pretrained(output / "stage2" / "export", low_cpu_mem_usage=False).eval()
    first = load_file(output / "stage1" / "export" / WEIGHTS)
    assert any(not torch.equal(p, first[name]) for name, p in model.named_parameters())  # stage 2 trained on
    vae = FrameVAE.from_path(vae_dir)
    (clip,) = load_clips(build_dir, ValidationConfig(pairs=1, splits=["test"]), frames=4, stride=1, resolution=64)
    reference = torch.from_numpy(clip.reference).permute(2, 0, 1)[None].float() / 127.5 - 1
    driving = torch.from_numpy(clip.driving).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    reference_latents = vae.encode(reference[:, :, None], sample=False)[:, :, 0]
    latents = model.sample(reference_latents, driving, num_steps=3, generator=torch.Generator().manual_seed(0))
    frames = vae.decode(latents)
    assert frames.shape == (1, 3, 4, 64, 64) and frames.isfinite().all() and frames.std() > 0.01


def test_a_killed_run_resumes_from_its_last_checkpoint(build_dir: Path, vae_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    schedule = ["stages.stage1.optimizer.schedule=cosine", "stages.stage1.optimizer.min_lr_ratio=0.1"]
    overrides = [*run_overrides(output, build_dir, vae_dir), "stages.stage1.steps=40", "checkpoint.every=3", *schedule]
    overrides.append("validation.every=1000")
    process, port = start(TINY, *overrides, log=tmp_path / "killed.log")
    latest = output / "stage1" / "checkpoints" / "latest"
    try:
        deadline = time.monotonic() + 400
        while not latest.exists():
            assert process.poll() is None, (tmp_path / "killed.log").read_text()[-5000:]
            assert time.monotonic() < deadline, "no checkpoint within the deadline"
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)  # the whole job: launcher, ranks, loader workers
        process.wait()
    finally:
        release_shm(port)
    saved = int(latest.read_text().removeprefix("step_"))
    assert 3 <= saved < 40 and saved % 3 == 0 and not (output / "stage1" / "export").exists()

    (output / "stage1" / "EXPORT").touch()  # a request for the current EMA weights
    result = launch(TINY, *overrides)
    assert f"[stage1] resumed from step {saved}:" in result.stdout
    assert is_exported(output / "stage1" / "exports" / f"step_{saved + 1:08d}")
    assert not (output / "stage1" / "EXPORT").exists()
    logs = output / "tensorboard" / "stage1"
    killed, resumed = event_files(logs)
    assert set(range(1, saved + 1)) <= set(scalars(logs, "train/loss", killed))
    assert sorted(scalars(logs, "train/loss", resumed)) == list(range(saved + 1, 41))
    factor = lr_factor(OptimizerConfig(lr=1e-3, warmup_steps=2, schedule="cosine", min_lr_ratio=0.1), 40)
    for step, lr in scalars(logs, "train/lr", resumed).items():  # the schedule continues where it stopped
        assert lr == pytest.approx(1e-3 * factor(step - 1), rel=1e-5), step
    state = json.loads((output / "stage1" / "checkpoints" / "step_00000040" / "trainer_state.json").read_text())
    assert (state["step"], state["samples"], state["ema_updates"]) == (40, 160, 40)
    assert is_exported(output / "stage1" / "export") and is_exported(output / "stage2" / "export")


def test_zero3_is_selectable(build_dir: Path, vae_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "run"
    steps = ["stages.stage1.steps=2", "stages.stage2.steps=2", "validation.pairs=0"]
    checkpointing = "model.gradient_checkpointing=true"
    result = launch(TINY, *run_overrides(output, build_dir, vae_dir), "deepspeed=zero3.json", checkpointing, *steps)
    assert "image mode, 1,087,456 of 1,408,876 parameters trained" in result.stdout
    for stage in ("stage1", "stage2"):
        assert all(math.isfinite(loss) for loss in scalars(output / "tensorboard" / stage, "train/loss").values())
        assert is_exported(output / stage / "export")
    exported = load_file(output / "stage1" / "export" / WEIGHTS)
    assert exported["backbone.final_layer.linear.weight"].abs().max() > 0  # zero-initialised: moved by the EMA


def one_stage_config(path: Path, stage: dict[str, Any], **settings: Any) -> Path:
    """A config file of tiny.yaml with one stage and no validation, plus `settings` at the top level."""
    path.write_text(yaml.safe_dump({"base": str(TINY), "validation": {"pairs": 0}, "stages": [stage], **settings}))
    return path


def test_overfitting_one_clip_cuts_the_loss_fivefold(build_dir: Path, vae_dir: Path, tmp_path: Path) -> None:
    mead = next(entry for entry in read_index(build_dir) if entry.dataset == "mead")
    key = min(mead.keys)  # a 16-frame clip
    stage = {
        "name": "overfit",
        "mode": "video",
        "steps": 60,
        "global_batch": 2,
        "num_frames": 16,  # the whole clip: one target
        "resolution": 64,
        "optimizer": {"lr": 4e-3, "warmup_steps": 0},
        "condition_dropout": {"motion": 0.0, "both": 0.0},
    }
    config = one_stage_config(
        tmp_path / "overfit.yaml",
        stage,
        data={"keys": [key], "exclude_splits": []},
        vae={"sample_posterior": False},
        logging={"every": 1},
        checkpoint={"every": 1000},
    )
    output = tmp_path / "run"
    launch(config, *run_overrides(output, build_dir, vae_dir))
    losses = scalars(output / "tensorboard" / "overfit", "train/loss")
    assert sorted(losses) == list(range(1, 61))
    initial, final = losses[1], statistics.mean(losses[step] for step in range(41, 61))
    assert 0.8 < initial < 1.25  # a new model predicts zero noise: E[eps^2] = 1
    assert initial / final >= 5, (initial, final)


@pytest.mark.parametrize("zero", ["zero2.json", "zero3.json"])
def test_the_ema_follows_the_fp32_master_weights_of_a_bf16_run(
    zero: str, build_dir: Path, vae_dir: Path, tmp_path: Path
) -> None:
    """With decay 0 the EMA is the weights it is fed. In bf16, DeepSpeed's fp32 master weights start as the
    bf16 working weights and then take Adam updates (about lr = 1e-4 each) mostly below bf16's resolution: an
    EMA fed from the working weights would hold bf16 values only; fed from the master weights its values are
    off the bf16 grid, and the working copy is their rounding. 2 CPU ranks under ZeRO-2 hold half the master
    weights each, so the EMA's reads are gathered. Under ZeRO-3 the working weights are partitioned too (and
    not in the checkpoint's module file), so there the EMA's values are checked to lie off the bf16 grid."""
    stage = {
        "name": "stage1",
        "mode": "image",
        "steps": 2,
        "global_batch": 2,
        "resolution": 64,
        "optimizer": {"lr": 1.0e-4, "warmup_steps": 0},
        "ema_decay": 0.0,
    }
    config = one_stage_config(tmp_path / "bf16.yaml", stage, precision="bf16", deepspeed=zero, checkpoint={"every": 2})
    output = tmp_path / "run"
    launch(config, *run_overrides(output, build_dir, vae_dir))
    ema = load_file(output / "stage1" / "export" / WEIGHTS)
    assert ema["backbone.rope.freqs"].dtype == torch.float32
    for key in ("backbone.blocks.0.attn.qkv.weight", "backbone.blocks.3.mlp.fc1.weight"):  # trained in stage 1
        off_grid = (ema[key] != ema[key].bfloat16().float()).float().mean()
        assert off_grid > 0.5, (key, off_grid)  # fp32 values: not what the bf16 copy holds
    if zero == "zero3.json":
        return
    states = output / "stage1" / "checkpoints" / "step_00000002" / "mp_rank_00_model_states.pt"
    working = {
        key.removeprefix("model."): tensor
        for key, tensor in torch.load(states, map_location="cpu", weights_only=True)["module"].items()
    }
    assert working["backbone.blocks.0.attn.qkv.weight"].dtype == torch.bfloat16
    assert working["backbone.rope.freqs"].dtype == ema["backbone.rope.freqs"].dtype == torch.float32
    head_dim = 2 * working["backbone.rope.freqs"].numel()
    assert torch.equal(working["backbone.rope.freqs"], RotaryEmbedding(head_dim).freqs)  # not rounded to bf16
    for key, tensor in ema.items():  # every average rounds to the working copy (frozen ones too: the start)
        assert tensor.dtype == torch.float32 and torch.equal(tensor.to(working[key].dtype), working[key]), key
