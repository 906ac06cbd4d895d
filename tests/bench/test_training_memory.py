"""bench/model.py's per-GPU memory beyond the ZeRO states: the partitioned EMA and DeepSpeed's buckets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.training_memory import bucket_bytes, ema_bytes, read_zero_section

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


def test_ema_holds_its_partition_and_gathers_the_whole_model_only_to_save() -> None:
    ema = ema_bytes(trainable=1_000, model_parameters=1_200, gpus=4)
    assert ema.partition == 4 * 1_000 / 4  # fp32, a quarter of the trained parameters on each of 4 ranks
    assert ema.gathered == 4 * 1_200  # the whole fp32 model, frozen parameters included
    assert ema_bytes(1_000, 1_200, 1).partition == 4_000  # one rank holds it all
    with pytest.raises(ValueError, match="gpus"):
        ema_bytes(1_000, 1_200, 0)


def test_shipped_zero2_config_double_buffers_its_reduce_bucket() -> None:
    buckets = bucket_bytes(read_zero_section(CONFIGS / "zero2.json"))
    # reduce_bucket_size 2e8 bf16 gradients, twice (overlap_comm); the all-gather is in place: no buffer
    assert buckets.stage == 2
    assert [name for name, _ in buckets.buffers] == ["reduce bucket", "second reduce bucket (overlap_comm)"]
    assert buckets.total == 2 * 200_000_000 * 2


def test_shipped_zero3_config_counts_reduce_and_prefetch_buckets() -> None:
    buckets = bucket_bytes(read_zero_section(CONFIGS / "zero3.json"))
    assert buckets.total == 200_000_000 * 2 + 50_000_000 * 2


def test_buckets_follow_the_config_and_deepspeed_defaults() -> None:
    no_overlap = bucket_bytes({"stage": 2, "reduce_bucket_size": 1_000, "overlap_comm": False})
    assert no_overlap.total == 1_000 * 2
    assert bucket_bytes({"stage": 2, "reduce_bucket_size": 1_000, "overlap_comm": True}, working_bytes=4).total == 8_000
    assert bucket_bytes({"stage": 2, "contiguous_gradients": False}).total == 0
    assert bucket_bytes({"stage": 2}).total == 500_000_000 * 2  # DeepSpeed's default reduce_bucket_size
    assert bucket_bytes({"stage": 0}).total == 0


def test_a_config_without_a_zero_section_is_named(tmp_path: Path) -> None:
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"train_batch_size": 4}))
    with pytest.raises(ValueError, match=r"plain\.json: no readable `zero_optimization`"):
        read_zero_section(path)
