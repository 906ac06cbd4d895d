"""The loader on real shards of `rp-data build --sample`: pairs, clips, mixing, splitting, skipping."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import webdataset as wds

from pipeline.shards import npy_bytes
from pipeline.video_file import VideoFile
from training.config import DataConfig, StageConfig
from training.data import PortraitStream, Source, open_loader, plan_sources, read_index, stage_framing
from training.examples import Framing, make_example, random_crop_box


def tar_samples(tar: Path) -> list[dict[str, Any]]:
    """Members by name, with `__key__` (ready for `write_tar`)."""
    return [
        {k: v for k, v in sample.items() if k == "__key__" or not k.startswith("__")}
        for sample in wds.WebDataset(str(tar), shardshuffle=False)
    ]


def meta_by_key(build_dir: Path) -> dict[str, dict[str, Any]]:
    return {
        json.loads(s["json"])["key"]: json.loads(s["json"])
        for entry in read_index(build_dir)
        for s in tar_samples(entry.path)
    }


def write_tar(path: Path, samples: list[dict[str, Any]]) -> Path:
    with wds.TarWriter(str(path), encoder=False) as writer:
        for sample in samples:
            writer.write(sample)
    return path


def stream(sources: list[Source], framing: Framing, *, batch: int = 2, seed: tuple[int, ...] = (0,)) -> PortraitStream:
    return PortraitStream(sources, framing, batch_size=batch, shuffle_buffer=8, epoch_batches=10**6, seed=seed)


def take(source: PortraitStream, batches: int) -> list[dict[str, Any]]:
    return list(itertools.islice(iter(source), batches))


def stage(mode: str, **values: Any) -> StageConfig:
    return StageConfig(name="s", mode=mode, steps=1, global_batch=2, resolution=64, **values)


def test_the_index_lists_what_the_committed_tars_hold(build_dir: Path) -> None:
    for entry in read_index(build_dir):
        kinds = Counter(json.loads(s["json"])["kind"] for s in tar_samples(entry.path))
        assert (entry.clips, entry.images) == (kinds["clip"], kinds["image"]), entry.path
        assert entry.keys == {json.loads(s["json"])["key"] for s in tar_samples(entry.path)}
    datasets = {entry.dataset for entry in read_index(build_dir)}
    assert datasets == {"vggface2", "celeba", "ffhq", "celebvhq", "talkinghead_1kh", "hdtf", "mead", "vfhq"}


def test_image_mode_pairs_come_from_images_and_clips(build_dir: Path) -> None:
    data = DataConfig(build_dir=build_dir)
    framing = stage_framing(data, stage("image"))
    batches = take(stream(plan_sources(read_index(build_dir), data, "image"), framing), 30)
    metas = meta_by_key(build_dir)
    kinds = Counter()
    for batch in batches:
        assert batch["frames"].shape == (2, 3, 1, 64, 64) and batch["reference"].shape == (2, 3, 64, 64)
        assert batch["frames"].dtype == batch["reference"].dtype == torch.uint8
        assert batch["fps"].isnan().all()
        for index, key in enumerate(batch["keys"]):
            assert metas[key]["split"] != "test"
            kinds[metas[key]["kind"]] += 1
            assert not (batch["reference"][index] == batch["frames"][index, :, 0]).all()  # two crops / two frames
    assert kinds["image"] > 5 and kinds["clip"] > 5
    assert sum(batch["skipped"].get("unfit:excluded_split", 0) for batch in batches) > 0


def test_random_crops_keep_the_face_and_vary_in_scale_and_offset() -> None:
    rng = np.random.default_rng(0)
    face = np.array([300.0, 280.0, 520.0, 560.0])
    boxes = [random_crop_box(900, 512, face, (0.8, 1.2), rng) for _ in range(300)]
    sides = {x1 - x0 for x0, y0, x1, y1 in boxes}
    assert all(x1 - x0 == y1 - y0 for x0, y0, x1, y1 in boxes)
    assert min(sides) < 0.85 * 512 and max(sides) > 1.15 * 512
    assert all(0 <= x0 <= face[0] and face[2] <= x1 <= 900 and 0 <= y0 <= face[1] and face[3] <= y1 <= 900
               for x0, y0, x1, y1 in boxes)  # fmt: skip
    assert len({(x0, y0) for x0, y0, _, _ in boxes}) > 100
    # a face larger than the crop: centred on it, inside the image
    assert random_crop_box(512, 512, np.array([0.0, 0.0, 500.0, 510.0]), (0.5, 0.5), rng) == (122, 127, 378, 383)


def test_image_pairs_differ_even_when_the_context_is_one_crop(build_dir: Path) -> None:
    vggface2 = tar_samples(next(entry.path for entry in read_index(build_dir) if entry.dataset == "vggface2"))
    framing = Framing(mode="image", resolution=64, crop_scale=(0.9, 1.2))  # scale >= 1 takes the whole image
    rng = np.random.default_rng(0)
    for sample in vggface2:
        assert json.loads(sample["json"])["width"] == json.loads(sample["json"])["crop_side"] == 512
        for _ in range(10):
            example = make_example(sample, framing, rng)
            assert not np.array_equal(example.reference, example.frames[0])


def test_video_mode_takes_consecutive_frames_and_a_reference_of_the_same_clip(build_dir: Path) -> None:
    tar = next(entry.path for entry in read_index(build_dir) if entry.dataset == "hdtf")
    framing = Framing(mode="video", resolution=512, num_frames=4, frame_stride=2)
    rng = np.random.default_rng(1)
    for sample in tar_samples(tar)[:3]:
        whole = VideoFile(sample["mp4"])  # every frame, in order, as the module the loader reads with
        clip = whole.frames(range(len(whole)), 512, 512)
        example = make_example(sample, framing, rng)
        start = next(i for i in range(len(clip)) if np.array_equal(clip[i], example.frames[0]))
        for offset, frame in enumerate(example.frames):
            assert np.array_equal(frame, clip[start + 2 * offset])
        assert any(np.array_equal(example.reference, frame) for frame in clip)
        assert example.fps == 12.5 and example.frames.shape == (4, 512, 512, 3)


def test_color_permutation_reorders_the_reference_and_the_targets_alike(build_dir: Path) -> None:
    """The demo's guard against memorising the sample's few faces: the same channel order everywhere in an
    example, never the original one when drawn, and about the configured share of examples."""
    tar = next(entry.path for entry in read_index(build_dir) if entry.dataset == "hdtf")
    sample = tar_samples(tar)[0]
    plain = Framing(mode="video", resolution=64, num_frames=4)
    permuted = Framing(mode="video", resolution=64, num_frames=4, color_permutation=0.5)
    changed = 0
    for seed in range(40):
        original = make_example(sample, plain, np.random.default_rng(seed))
        example = make_example(sample, permuted, np.random.default_rng(seed))
        if np.array_equal(example.frames, original.frames):
            assert np.array_equal(example.reference, original.reference)
            continue
        changed += 1
        order = next(
            order
            for order in itertools.permutations(range(3))
            if np.array_equal(example.frames, original.frames[..., list(order)])
        )
        assert order != (0, 1, 2) and np.array_equal(example.reference, original.reference[..., list(order)])
        assert example.latents is None and example.reference_latents is None
    assert 10 <= changed <= 30, changed
    assert DataConfig(build_dir=build_dir, color_permutation=0.5).color_permutation == 0.5
    assert (
        stage_framing(DataConfig(build_dir=build_dir, color_permutation=0.5), stage("video")).color_permutation == 0.5
    )


def test_video_mode_reads_clips_only_and_counts_short_ones(build_dir: Path) -> None:
    data = DataConfig(build_dir=build_dir, exclude_splits=[])
    sources = plan_sources(read_index(build_dir), data, "video")
    assert {source.dataset for source in sources} == {"celebvhq", "talkinghead_1kh", "hdtf", "mead", "vfhq"}
    batches = take(stream(sources, stage_framing(data, stage("video", num_frames=20))), 8)
    metas = meta_by_key(build_dir)
    assert all(metas[key]["frames"] >= 20 and metas[key]["kind"] == "clip" for b in batches for key in b["keys"])
    assert all(b["frames"].shape == (2, 3, 20, 64, 64) and (b["fps"] == 25).all() for b in batches)
    assert sum(b["skipped"].get("unfit:too_short", 0) for b in batches) > 0  # MEAD clips have 16 frames


def test_mixing_weights_set_each_datasets_share(build_dir: Path) -> None:
    data = DataConfig(build_dir=build_dir, weights={"vfhq": 3.0, "hdtf": 1.0}, default_weight=0.0, exclude_splits=[])
    sources = plan_sources(read_index(build_dir), data, "image")
    assert [(s.dataset, s.weight) for s in sources] == [("hdtf", 1.0), ("vfhq", 3.0)]
    datasets = Counter(
        d for b in take(stream(sources, stage_framing(data, stage("image"))), 100) for d in b["datasets"]
    )
    assert set(datasets) == {"vfhq", "hdtf"} and 0.65 < datasets["vfhq"] / 200 < 0.85


def test_a_weight_for_a_dataset_the_build_lacks_is_an_error(build_dir: Path) -> None:
    from training.config import ConfigError

    with pytest.raises(ConfigError, match=r"\['voxceleb'\] not in the build"):
        plan_sources(read_index(build_dir), DataConfig(build_dir=build_dir, weights={"voxceleb": 1.0}), "image")
    assert plan_sources(read_index(build_dir), DataConfig(build_dir=build_dir, weights={"voxceleb": 0.0}), "image")


def test_corrupt_members_and_tars_are_skipped_and_counted(build_dir: Path, tmp_path: Path) -> None:
    entries = {entry.dataset: entry.path for entry in read_index(build_dir)}
    hdtf = tar_samples(entries["hdtf"])
    hdtf[0]["mp4"] = b"not an mp4" * 50
    hdtf[1]["json"] = b"{broken"
    del hdtf[2]["mp4"]
    broken = write_tar(tmp_path / "hdtf-broken.tar", hdtf)
    truncated = tmp_path / "vfhq-truncated.tar"
    data = entries["vfhq"].read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    celeba = tar_samples(entries["celeba"])
    celeba[0]["jpg"] = celeba[0]["jpg"][:200]
    bad_jpeg = write_tar(tmp_path / "celeba-bad.tar", celeba)
    sources = [Source("hdtf", (str(broken),), 1.0), Source("vfhq", (str(truncated),), 1.0)]
    sources.append(Source("celeba", (str(bad_jpeg),), 1.0))
    batches = take(stream(sources, Framing(mode="image", resolution=64)), 40)
    skipped = sum((Counter(b["skipped"]) for b in batches), Counter())
    assert len(batches) == 40
    assert skipped["corrupt:DecodeError"] > 0  # the video module on the garbage mp4
    assert skipped["corrupt:JSONDecodeError"] > 0 and skipped["corrupt:KeyError"] > 0
    assert skipped["corrupt:OSError"] > 0  # PIL on the truncated JPEG
    assert skipped["corrupt:ReadError"] > 0  # tarfile on the truncated tar


def test_nothing_usable_is_an_error_not_a_hang(build_dir: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\0" * 10_000)
    with pytest.raises(RuntimeError, match="no usable sample"):
        take(stream([Source("x", (str(garbage),), 1.0)], Framing(mode="image", resolution=64)), 1)


def renamed(samples: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    out = []
    for sample in samples:
        meta = json.loads(sample["json"])
        key = prefix + meta["key"]
        out.append({**sample, "__key__": key, "json": json.dumps({**meta, "key": key}).encode()})
    return out


def test_every_rank_draws_batches_from_every_tar(
    build_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As many tars as ranks: each rank still reads both (tests/training/test_even_sampling.py counts rates)."""
    hdtf = tar_samples(next(e.path for e in read_index(build_dir) if e.dataset == "hdtf"))
    tars = (
        str(write_tar(tmp_path / "a.tar", renamed(hdtf, "a_"))),
        str(write_tar(tmp_path / "b.tar", renamed(hdtf, "b_"))),
    )
    framing = Framing(mode="image", resolution=64)
    monkeypatch.setenv("WORLD_SIZE", "2")
    seen = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        seen[rank] = [key for b in take(stream([Source("hdtf", tars, 1.0)], framing), 12) for key in b["keys"]]
    assert {key[:2] for key in seen["0"]} == {key[:2] for key in seen["1"]} == {"a_", "b_"}
    assert seen["0"] != seen["1"]


def test_the_seed_fixes_the_stream_and_a_resume_step_changes_it(build_dir: Path) -> None:
    data = DataConfig(build_dir=build_dir)
    sources = plan_sources(read_index(build_dir), data, "image")
    framing = stage_framing(data, stage("image"))

    def keys(seed: tuple[int, ...]) -> list[str]:
        return [key for b in take(stream(sources, framing, seed=seed), 8) for key in b["keys"]]

    assert keys((0, 0, 0)) == keys((0, 0, 0))
    assert keys((0, 0, 0)) != keys((0, 0, 120))


def test_precomputed_latents_are_taken_for_the_chosen_frames(build_dir: Path, tmp_path: Path) -> None:
    mead = tar_samples(next(e.path for e in read_index(build_dir) if e.dataset == "mead"))
    for sample in mead:  # latent t holds the value t, so the batch shows which frames were taken
        frames = json.loads(sample["json"])["frames"]
        sample["latents.npy"] = npy_bytes(
            np.broadcast_to(np.arange(frames, dtype=np.float16)[:, None, None, None], (frames, 4, 8, 8)).copy()
        )
    tar = str(write_tar(tmp_path / "mead-latents.tar", mead))
    framing = Framing(mode="video", resolution=64, num_frames=4, frame_stride=1)
    for batch in take(stream([Source("mead", (tar,), 1.0)], framing), 4):
        latents, reference = batch["latents"], batch["reference_latents"]
        assert latents.shape == (2, 4, 4, 8, 8) and reference.shape == (2, 4, 8, 8)
        for item in latents[:, 0, :, 0, 0]:
            assert (item.diff() == 1).all() and 0 <= item[0] <= 12
        assert ((reference >= 0) & (reference <= 15)).all()
    other = Framing(mode="video", resolution=128, num_frames=4)  # latents of another resolution are not used
    assert "latents" not in take(stream([Source("mead", (tar,), 1.0)], other), 1)[0]


def test_worker_processes_and_the_epoch_length(build_dir: Path) -> None:
    data = DataConfig(build_dir=build_dir, num_workers=2, epoch_batches=3, shuffle_buffer=4)
    loader = open_loader(data, stage("video", num_frames=4), micro_batch=2, seed=[0], pin_memory=False)
    epochs = [list(loader) for _ in range(2)]
    assert [len(epoch) for epoch in epochs] == [4, 4]  # ceil(3 / 2) batches from each of 2 workers
    assert all(batch["frames"].shape == (2, 3, 4, 64, 64) for epoch in epochs for batch in epoch)
    first, second = ([key for batch in epoch for key in batch["keys"]] for epoch in epochs)
    assert first != second  # a new epoch draws again
