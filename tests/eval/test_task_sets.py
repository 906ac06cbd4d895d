"""The same task set for every row of a table, and clips streamed through a bounded cache.

Two runs of the source copy on the sample split, one of which fails its second task (a real method
raising, as a broken one does): on the tasks both scored, the two rows must be identical, FID and FVD
included, and the failed task must leave both rows and be named in the footer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evalkit import FAST, SAMPLE_SPLIT

from eval.baselines import SourceCopy
from eval.clips import ClipStore, ClipUnusable
from eval.config import load_config
from eval.run import evaluate
from eval.scorers import load_scorers
from eval.tables import markdown, read_run, tables_for, write_tables
from eval.task_sets import load_features, task_features_path
from eval.tasks import split_tasks
from pipeline.faces import open_detector
from pipeline.split import load_split

pytestmark = pytest.mark.slow


class CopyFailingOnce(SourceCopy):
    """The source copy, except that its `fail_at`-th call raises, as a method that crashes on one input."""

    name = "copy-failing-once"

    def __init__(self, fail_at: int):
        self.calls, self.fail_at = 0, fail_at

    def generate(self, source: np.ndarray, driving: np.ndarray, fps: float | None = None) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("out of memory on this clip")
        return super().generate(source, driving, fps)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, sample_root: Path, metric_weights: Path) -> tuple[Path, Path]:
    # 16-frame clips, as the paper's test clips: without frame 0 a self-reenactment task holds no
    # 16-frame FVD window, so FVD's windows include it (`eval.run.task_features`)
    config = load_config(None, [*FAST, "max_frames=16", "metrics=[L1,PSNR,FID,FVD]"])
    scorers = load_scorers(config, metric_weights, explicit=True, allow_unpinned=True)
    split = load_split(SAMPLE_SPLIT)
    roots = {name: sample_root / name for name in ("vfhq", "celebvhq")}
    root = tmp_path_factory.mktemp("task_sets")
    detector = open_detector()
    tasks = split_tasks(split)
    for name, method in (("copy", SourceCopy()), ("flaky", CopyFailingOnce(fail_at=2))):
        evaluate(method, split, SAMPLE_SPLIT, roots, tasks, scorers, detector, root / name, label=name, gt_cache=root)
    return root / "copy", root / "flaky"


def test_a_task_one_row_failed_leaves_every_row_and_is_named(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    copy, flaky = (read_run(folder) for folder in two_runs)
    failed = flaky.tasks[flaky.tasks["status"] != "ok"]
    assert len(failed) == 1 and failed.iloc[0]["reason"] == "generation_failed"
    lost = failed.iloc[0]["task_id"]
    assert failed.iloc[0]["protocol"] == "self" and (copy.tasks["status"] == "ok").all()

    table1, table2, _ = tables_for([copy, flaky])
    assert table1.task_sets["self"].task_ids == [t for t in copy.tasks["task_id"][:3] if t != lost]
    assert table1.task_sets["self"].dropped == {lost: ["flaky: generation_failed"]}
    # the same method on the same tasks: every cell of the two rows agrees, FID and FVD included
    for (_, metric), mine, theirs in zip(table1.columns, *table1.grid, strict=True):
        assert mine.value is not None and mine.value == pytest.approx(theirs.value, rel=1e-9), metric
        assert mine.complete and theirs.complete
    # ... and differs from the copy's own summary over all three tasks (the lost task really left)
    own = copy.summary.set_index(["protocol", "metric"])
    for index, (_, metric) in enumerate(table1.columns):
        assert table1.grid[0][index].value != pytest.approx(own.loc[("self", metric), "value"], rel=1e-6), metric
    kept = copy.tasks[(copy.tasks["protocol"] == "self") & (copy.tasks["task_id"] != lost)]
    assert table1.grid[0][table1.columns.index(("self", "L1"))].value == pytest.approx(kept["L1"].mean())

    assert write_tables(list(two_runs), tmp_path)
    text = (tmp_path / "table1.md").read_text()
    assert f"left out: {lost} (flaky: generation_failed)" in text
    assert "every row is computed on the same 2 of 3 tasks" in text
    assert "| copy (control) |" in text and text.count("0 of 3") >= 1 and "1 of 3" in text
    assert "real features from copy's run, the same for every row" in text
    cross = markdown(table2)
    assert "cross tasks: every row is computed on the same 3 of 3 tasks" in cross and "left out" not in cross


def test_fvd_is_defined_on_16_frame_clips(two_runs: tuple[Path, Path]) -> None:
    copy = read_run(two_runs[0])
    assert (copy.tasks["fvd_frames"] == 16).all()
    assert (copy.tasks.loc[copy.tasks["protocol"] == "self", "scored_frames"] == 15).all()
    fvd = copy.summary[copy.summary["metric"] == "FVD"].set_index("protocol")
    for protocol in ("self", "cross"):
        assert fvd.loc[protocol, "status"] == "ok" and np.isfinite(fvd.loc[protocol, "value"]), protocol
        assert fvd.loc[protocol, "value"] > 0  # the source copy does not move: not the real videos


def test_the_ground_truth_is_computed_for_the_first_method_only(two_runs: tuple[Path, Path]) -> None:
    """Both runs share one cache: the first computes the real side of every clip, the second reads it all
    (and the test above shows that both rows then agree to the last digit)."""
    first, second = (json.loads((folder / "run.json").read_text())["ground_truth"] for folder in two_runs)
    assert first["computed"]["inception"] == 3 and first["computed"]["i3d"] >= 3
    assert not second["computed"] and second["reused"]["inception"] >= 3 and second["reused"]["i3d"] >= 2


def test_features_are_kept_per_task_not_frames(two_runs: tuple[Path, Path]) -> None:
    copy = two_runs[0]
    tasks = pd.read_parquet(copy / "tasks.parquet")
    for row in tasks.itertuples():
        arrays = load_features(task_features_path(copy, row.protocol, row.task_id))
        assert arrays["inception_fake"].shape == (row.scored_frames, 2048)
        assert ("inception_real" in arrays) == (row.protocol == "self")
        assert arrays["i3d_fake"].shape == arrays["i3d_real"].shape == (len(arrays["i3d_starts"]), 400)
        assert arrays["inception_fake"].dtype == np.float32
    clips = sorted(p.stem for p in (copy / "features" / "clips").glob("*.npz"))
    assert len(clips) == 3  # cross FID's real set: every usable clip of the split


def test_the_clip_store_holds_at_most_its_capacity(sample_root: Path) -> None:
    split = load_split(SAMPLE_SPLIT)
    first: list[str] = []
    store = ClipStore(
        list(split.clips),
        {"vfhq": sample_root / "vfhq"},  # no root for celebvhq: those clips are unusable, with the reason
        128,
        open_detector(),
        18,
        capacity=1,
        on_first_load=lambda clip: first.append(clip.item_id),
    )
    vfhq = [c.item_id for c in split.clips if c.dataset == "vfhq"]
    celebvhq = [c.item_id for c in split.clips if c.dataset == "celebvhq"]
    assert store.get(vfhq[0]).frames.shape == (18, 128, 128, 3)
    with pytest.raises(ClipUnusable, match="no root given for dataset 'celebvhq'"):
        store.get(celebvhq[0])
    assert list(store.cache) == vfhq  # a clip that failed takes no room
    store.visit_rest()
    assert len(store.cache) <= 1 and first == vfhq
    assert set(store.problems) == set(celebvhq)
