"""bench/model.py's per-GPU memory beyond the ZeRO states: the EMA's fp32 copy and DeepSpeed's buckets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.training_memory import bucket_bytes, ema_bytes, read_zero_section
from training.ema import GATHER_BUCKET_ELEMENTS

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


def test_ema_is_a_whole_fp32_copy_and_its_gather_adds_one_bucket() -> None:
    ema = ema_bytes(model_parameters=1_200, largest_parameter=300)
    assert ema.held == 4 * 1_200  # the whole fp32 model on every rank, frozen parameters included
    assert ema.gather_bucket == 4 * 1_200  # a model smaller than one bucket is gathered in one
    big = ema_bytes(model_parameters=10 * GATHER_BUCKET_ELEMENTS, largest_parameter=2 * GATHER_BUCKET_ELEMENTS)
    assert big.gather_bucket == 4 * 2 * GATHER_BUCKET_ELEMENTS  # a parameter larger than a bucket is gathered alone
    assert ema_bytes(10 * GATHER_BUCKET_ELEMENTS, 10).gather_bucket == 4 * GATHER_BUCKET_ELEMENTS
    with pytest.raises(ValueError, match="exceeds the model"):
        ema_bytes(100, 200)


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
