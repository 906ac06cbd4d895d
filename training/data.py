"""The training loader: WebDataset shards of an `rp-data build` -> batches of uint8 frames.

Per rank and DataLoader worker (a "slot"), for each dataset: the slot draws tars uniformly from ALL
of the dataset's committed tars, with replacement (webdataset's `ResampledShards`, the maintainers'
recipe for multi-node training: no slot ever runs dry, no rank waits for another), from a seed of its
own. Slots are not given disjoint parts of the tar list: whenever the tar count is not a multiple of
the slot count that made some tars half as likely as others (20 tars over 16 slots: 8 at half rate),
and confined each slot's batches to the videos of its one or two tars. Datasets are mixed sample by
sample with the configured weights, shuffled in one buffer, turned into examples
(`training.examples`) and batched inside the worker; `with_epoch` bounds an epoch. The build is a local
folder or an fsspec URL (`s3://bucket/run`): its records are read through `pipeline.storage`, its tars
streamed through fsspec (`pipeline.tar_stream`).

Every random draw of a slot comes from a generator seeded by (run seed, stage, resume step, rank,
worker, epoch): slots draw independently, and a resumed run does not replay the samples its first
launch started with, which is as close to "continue the data position" as resampled,
buffer-shuffled streams allow.

A sample that cannot be used never stops training: corrupt members and unreadable tars are
skipped and counted by reason, samples the stage does not use (wrong kind, too short, excluded
split) are counted as `unfit:<reason>`; each batch carries the counts since the previous one.
Only a stream that yields nothing usable for `MAX_BARREN` samples and tars in a row is an error.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

from pipeline.storage import Location, Store
from pipeline.tar_stream import tar_to_samples
from training.build_record import committed_shards
from training.config import ConfigError, DataConfig, StageConfig
from training.examples import Example, Framing, Unfit, make_example
from training.heldout import heldout_keys

MAX_BARREN = 10_000


@dataclass(frozen=True)
class TarEntry:
    """One committed tar of a build, with what the build's parquet says it holds."""

    path: Location  # a local Path, or the tar's URL
    dataset: str
    clips: int
    images: int
    keys: frozenset[str]


@dataclass(frozen=True)
class Source:
    """The tars one dataset contributes to a stage, and its share of the mix."""

    dataset: str
    tars: tuple[str, ...]
    weight: float


def read_index(build_dir: Location) -> list[TarEntry]:
    """Every tar named by a stats file (the build's commit marker), with its samples from the work
    shard's parquet (written before the stats file). A clip has more than one frame. `build_dir` is a
    local folder or an fsspec URL."""
    shards = Store.at(build_dir).child("shards")
    if not shards.names("*.stats.json"):
        raise ConfigError(
            f"data.build_dir {build_dir}: no committed shards ({shards.url_of('*.stats.json')}); "
            f"build them first: rp-data build ... --out {build_dir}"
        )
    entries = []
    for stats, rows in committed_shards(build_dir, ["kind", "status", "tar", "key", "frames"]):
        rows = rows.to_pandas()
        rows = rows[(rows.kind == "sample") & (rows.status == "ok")]
        for name in stats["tars"]:
            mine = rows[rows.tar.map(lambda tar, name=name: Path(tar).name == name)]
            dataset = name.split("-", 1)[0]
            clips = int((mine.frames > 1).sum())
            entries.append(TarEntry(shards.location_of(name), dataset, clips, len(mine) - clips, frozenset(mine.key)))
    return entries


def plan_sources(entries: Sequence[TarEntry], data: DataConfig, mode: str) -> list[Source]:
    """Per dataset: its tars that hold samples this stage can use, and its mixing weight."""
    by_dataset: dict[str, list[str]] = {}
    for entry in entries:
        usable = entry.clips if mode == "video" else entry.clips + entry.images
        if usable and (data.keys is None or entry.keys & set(data.keys)):
            by_dataset.setdefault(entry.dataset, []).append(str(entry.path))
    missing = {name for name, weight in data.weights.items() if weight > 0} - {entry.dataset for entry in entries}
    if missing:
        raise ConfigError(
            f"data.weights: {sorted(missing)} not in the build {data.build_dir} "
            f"(set data.weights.<name>=0 to train without a dataset)"
        )
    sources = [
        Source(name, tuple(tars), data.weights.get(name, data.default_weight))
        for name, tars in sorted(by_dataset.items())
    ]
    sources = [source for source in sources if source.weight > 0]
    if not sources:
        raise ConfigError(
            f"data.build_dir {data.build_dir}: no tar holds samples for a {mode}-mode stage "
            f"with weights {data.weights or '(default)'}" + (f" and keys {data.keys}" if data.keys else "")
        )
    return sources


class SkipCounter:
    """Counts what the stream skips; a webdataset exception handler (True = carry on)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.barren = 0

    def __call__(self, error: Exception) -> bool:
        self.counts[f"unfit:{error}" if isinstance(error, Unfit) else f"corrupt:{type(error).__name__}"] += 1
        self._barren()
        return True

    def opened(self, shard: dict[str, Any]) -> dict[str, Any]:
        """A tar about to be read: counts as a read, so tars that hold nothing (empty, zeros) end too."""
        self._barren()
        return shard

    def _barren(self) -> None:
        self.barren += 1
        if self.barren >= MAX_BARREN:
            raise RuntimeError(
                f"no usable sample in the last {MAX_BARREN} samples and tars read; skipped: {dict(self.counts)}"
            )

    def used(self, example: Example) -> Example:
        self.barren = 0
        return example

    def attach(self, batch: dict[str, Any]) -> dict[str, Any]:
        batch["skipped"] = dict(self.counts)
        self.counts.clear()
        return batch


def collate(examples: list[Example]) -> dict[str, Any]:
    """uint8 frames [B, 3, L, H, W], reference [B, 3, H, W], fps [B] (NaN: still image); latents when
    every example carries them at one shape."""
    frames = torch.from_numpy(np.stack([e.frames for e in examples])).permute(0, 4, 1, 2, 3).contiguous()
    batch: dict[str, Any] = {
        "frames": frames,
        "reference": torch.from_numpy(np.stack([e.reference for e in examples])).permute(0, 3, 1, 2).contiguous(),
        "fps": torch.tensor([e.fps for e in examples], dtype=torch.float32),
        "keys": [e.key for e in examples],
        "datasets": [e.dataset for e in examples],
    }
    latents = [e.latents for e in examples]
    if all(item is not None for item in latents) and len({item.shape for item in latents}) == 1:  # type: ignore[union-attr]
        batch["latents"] = torch.from_numpy(np.stack(latents)).float().transpose(1, 2).contiguous()  # type: ignore[arg-type]
        batch["reference_latents"] = torch.from_numpy(np.stack([e.reference_latents for e in examples])).float()  # type: ignore[misc]
    return batch


def _mix(
    streams: list[Iterator[dict[str, Any]]], weights: np.ndarray, rng: np.random.Generator
) -> Iterator[dict[str, Any]]:
    """Sample by sample from the dataset streams (all endless: resampled) with probability ~ weight."""
    while True:
        yield next(streams[int(rng.choice(len(streams), p=weights))])


class SlotEpoch(NamedTuple):
    """One epoch of one slot: its undecoded samples in mix order, the generator of the slot's other
    draws (shuffle, frames, crops), and the counter of what it skips."""

    samples: Iterator[dict[str, Any]]
    rng: np.random.Generator
    counter: SkipCounter


class PortraitStream(IterableDataset):
    """Endless (epoch-bounded) batches for one rank; see the module docstring."""

    def __init__(
        self,
        sources: Sequence[Source],
        framing: Framing,
        *,
        batch_size: int,
        shuffle_buffer: int,
        epoch_batches: int,
        seed: Sequence[int],
    ) -> None:
        super().__init__()
        self.sources = list(sources)
        self.framing = framing
        self.batch_size = batch_size
        self.shuffle_buffer = shuffle_buffer
        self.epoch_batches = epoch_batches
        self.seed = list(seed)
        self.epoch = -1

    def _samples(self, source: Source, rng: np.random.Generator, counter: SkipCounter) -> wds.DataPipeline:
        """One dataset's endless stream: each tar drawn uniformly from all of the dataset's tars. The
        shard seed comes from the slot's generator, so `worker_seed` need not tell slots apart."""
        return wds.DataPipeline(
            wds.ResampledShards(
                list(source.tars), seed=int(rng.integers(2**31)), worker_seed=lambda: 0, deterministic=True
            ),
            wds.map(counter.opened),
            tar_to_samples(handler=counter),  # through fsspec: a build at a URL streams as a local one
        )

    def epoch_samples(self) -> SlotEpoch:
        """The next epoch of the slot this runs in (rank from the environment or torch.distributed,
        worker from the DataLoader): the samples `__iter__` shuffles, decodes and batches."""
        rank, _, worker, _ = wds.utils.pytorch_worker_info()
        self.epoch += 1
        rng = np.random.default_rng([*self.seed, rank, worker, self.epoch])
        counter = SkipCounter()
        weights = np.array([source.weight for source in self.sources], dtype=np.float64)
        streams = [iter(self._samples(source, rng, counter)) for source in self.sources]
        return SlotEpoch(_mix(streams, weights / weights.sum(), rng), rng, counter)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        workers = wds.utils.pytorch_worker_info()[3]
        samples, rng, counter = self.epoch_samples()
        pipeline = wds.DataPipeline(
            lambda: samples,
            wds.shuffle(
                self.shuffle_buffer, initial=min(self.shuffle_buffer, 16), rng=random.Random(int(rng.integers(2**63)))
            ),
            wds.map(lambda sample: counter.used(make_example(sample, self.framing, rng)), handler=counter),
            wds.batched(self.batch_size, collation_fn=collate, partial=False),
            wds.map(counter.attach),
        ).with_epoch(nbatches=math.ceil(self.epoch_batches / workers))
        yield from pipeline


def stage_framing(data: DataConfig, stage: StageConfig) -> Framing:
    """How the stage frames samples, and which it skips: excluded `split` labels and, by key, the samples of
    `data.heldout_split` in this build (matched on the build's manifests, `training.heldout`)."""
    return Framing(
        mode=stage.mode,
        resolution=stage.resolution,
        num_frames=stage.frames_per_sample,
        frame_stride=stage.frame_stride,
        crop_scale=data.crop_scale,
        exclude_splits=frozenset(data.exclude_splits),
        color_permutation=data.color_permutation,
        keys=None if data.keys is None else frozenset(data.keys),
        held_out=heldout_keys(data),
    )


def open_loader(
    data: DataConfig, stage: StageConfig, *, micro_batch: int, seed: Sequence[int], pin_memory: bool
) -> DataLoader:
    """The DataLoader of one rank for one stage (batches are formed in the workers)."""
    stream = PortraitStream(
        plan_sources(read_index(data.build_dir), data, stage.mode),
        stage_framing(data, stage),
        batch_size=micro_batch,
        shuffle_buffer=data.shuffle_buffer,
        epoch_batches=data.epoch_batches,
        seed=seed,
    )
    workers = data.num_workers
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers else None,
        pin_memory=pin_memory,
    )


def endless(loader: DataLoader) -> Iterator[dict[str, Any]]:
    """Epoch after epoch (each epoch re-seeds the slots' shard draws)."""
    while True:
        yield from loader
