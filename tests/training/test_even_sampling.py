"""Every tar is equally likely per sample, whatever the ratio of tars to loader slots (rank x worker).

The tars are written with webdataset's own writer and read by the loader's real per-slot stream
(`PortraitStream.epoch_samples`: shard resampling and the dataset mix, before decoding), so the
counts are those training would see. A tar holds one sample with only a json member: nothing decodes
it, and reading a tar member costs as much as drawing a tar, so one sample per tar gives the most
draws for the time (20 tars x 1,600 draws each at a weight of 3/4: ±10% is 4 standard deviations).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
import webdataset as wds

from training.data import PortraitStream, Source
from training.examples import Framing

RANKS, WORKERS = 4, 4  # 16 slots


def write_tars(folder: Path, dataset: str, count: int) -> tuple[str, ...]:
    paths = []
    for index in range(count):
        path = folder / f"{dataset}-{index:05d}.tar"
        key = f"{dataset}_{index:02d}"
        with wds.TarWriter(str(path), encoder=False) as writer:
            writer.write({"__key__": key, "json": json.dumps({"key": key}).encode()})
        paths.append(str(path))
    return tuple(paths)


def slot_draws(
    sources: list[Source], monkeypatch: pytest.MonkeyPatch, draws: int, seed: int = 0
) -> dict[int, list[str]]:
    """The tar of each of the first `draws` samples of every slot, by slot."""
    monkeypatch.setenv("WORLD_SIZE", str(RANKS))
    monkeypatch.setenv("NUM_WORKERS", str(WORKERS))
    out = {}
    for rank, worker in itertools.product(range(RANKS), range(WORKERS)):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORKER", str(worker))
        stream = PortraitStream(
            sources, Framing(mode="image", resolution=64), batch_size=1, shuffle_buffer=1, epoch_batches=1, seed=[seed]
        )
        samples = stream.epoch_samples().samples
        out[rank * WORKERS + worker] = [sample["__url__"] for sample in itertools.islice(samples, draws)]
    return out


def test_twenty_tars_over_sixteen_slots_are_drawn_evenly_and_weights_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    many, few = write_tars(tmp_path, "many", 20), write_tars(tmp_path, "few", 3)
    draws = slot_draws([Source("many", many, 3.0), Source("few", few, 1.0)], monkeypatch, draws=2667)
    counts = Counter(url for urls in draws.values() for url in urls)
    assert 0.74 < sum(counts[tar] for tar in many) / counts.total() < 0.76  # the dataset weights, 3:1
    for tars in (many, few):
        uniform = sum(counts[tar] for tar in tars) / len(tars)
        assert all(0.9 < counts[tar] / uniform < 1.1 for tar in tars), {Path(t).name: counts[t] / uniform for t in tars}
    assert all(set(urls) == {*many, *few} for urls in draws.values())  # no slot is confined to a part
    assert len({tuple(urls) for urls in draws.values()}) == RANKS * WORKERS  # each slot draws on its own


def test_the_run_seed_fixes_each_slots_draws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = [Source("many", write_tars(tmp_path, "many", 20), 1.0)]
    assert slot_draws(sources, monkeypatch, draws=40) == slot_draws(sources, monkeypatch, draws=40)
    assert slot_draws(sources, monkeypatch, draws=40) != slot_draws(sources, monkeypatch, draws=40, seed=1)
