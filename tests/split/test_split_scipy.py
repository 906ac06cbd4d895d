"""The cross pairing's fallback is an assignment solved by scipy (issue 15, item 6), and the split file
is byte-identical for the same inputs and seed, in separate processes with different hash seeds."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching
from split_items import clip, ytid

from pipeline.split import SALT, Clip, Pairs, cross_pairs

RP_DATA = Path(sys.executable).with_name("rp-data")


def _allowed(a: Clip, b: Clip) -> bool:
    return a.item_id != b.item_id and a.youtube_id != b.youtube_id and a.identity != b.identity


def _check(clips: list[Clip], pairs: Pairs) -> None:
    by_id = {c.item_id: c for c in clips}
    assert [p.source for p in pairs.pairs] == [c.item_id for c in clips]
    assert sorted(p.driving for p in pairs.pairs) == sorted(by_id)
    assert all(_allowed(by_id[p.source], by_id[p.driving]) for p in pairs.pairs)


def _perfect_matching_exists(clips: list[Clip]) -> bool:
    """Hopcroft-Karp on the allowed pairs: another algorithm than the assignment solver's."""
    n = len(clips)
    graph = csr_matrix(np.array([[_allowed(a, b) for b in clips] for a in clips], dtype=np.int8))
    return bool(np.all(maximum_bipartite_matching(graph, perm_type="column") >= 0)) if n else False


def test_the_assignment_is_feasible_exactly_when_a_perfect_matching_exists() -> None:
    rng = random.Random(99)
    outcomes = set()
    for _ in range(120):
        n = rng.randint(2, 40)
        people = rng.randint(2, 6)  # few identities: large groups that only other groups can drive
        clips = [clip(i, ytid(rng.randint(0, n)), f"p{rng.randint(0, people - 1)}") for i in range(n)]
        pairs = cross_pairs(clips, seed=rng.randint(0, 9), max_draws=0)
        exists = _perfect_matching_exists(clips)
        assert (pairs.method == "matched") == exists, [(c.youtube_id, c.identity) for c in clips]
        outcomes.add(exists)
        if exists:
            _check(clips, pairs)
    assert outcomes == {True, False}  # both kinds of instance were met


def _cost(seed: int, source: Clip, driving: Clip) -> int:
    """The cost the file's note states, computed here from the note's formula."""
    key = f"{SALT}:pairs:{seed}:match:{source.item_id}:{driving.item_id}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def test_the_matching_is_the_cheapest_valid_pairing_and_follows_the_seed() -> None:
    clips = [clip(i, ytid(i), "X" if i < 3 else "Y") for i in range(6)]  # every X drives a Y and the reverse
    chosen = []
    for seed in range(6):
        pairs = cross_pairs(clips, seed, max_draws=0)
        _check(clips, pairs)
        assert "linear_sum_assignment" in pairs.note
        driver = {c.item_id: c for c in clips}
        total = sum(_cost(seed, clips[i], driver[p.driving]) for i, p in enumerate(pairs.pairs))
        best = min(
            sum(_cost(seed, clips[i], clips[j]) for i, j in enumerate(perm))
            for perm in itertools.permutations(range(6))
            if all(_allowed(clips[i], clips[j]) for i, j in enumerate(perm))
        )
        assert total == best
        assert cross_pairs(clips, seed, max_draws=0) == pairs
        chosen.append(tuple(p.driving for p in pairs.pairs))
    assert len(set(chosen)) > 1  # 36 valid pairings: the seed picks among them


MATCHED_SPLIT = """
import sys
from pathlib import Path
from pipeline.split import SAMPLE_PER_DATASET, SAMPLE_THRESHOLDS, Split, cross_pairs, split_from_roots, write_split

sample, out, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
roots = {name: sample / name for name in ("vfhq", "celebvhq")}
split, _ = split_from_roots(roots, per_dataset=SAMPLE_PER_DATASET, thresholds=SAMPLE_THRESHOLDS, seed=seed)
matched = cross_pairs(split.clips, seed, max_draws=0)
assert matched.method == "matched"
write_split(Split.model_validate({**split.model_dump(), "pairs": matched.model_dump()}), out)
"""


def _run(command: list[str], hash_seed: str) -> None:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_the_split_file_is_byte_identical_for_the_same_inputs_and_seed(sample_root: Path, tmp_path: Path) -> None:
    files = {}
    for run, hash_seed in (("a", "1"), ("b", "2")):
        files[run, "drawn"] = tmp_path / f"drawn-{run}.json"
        _run([str(RP_DATA), "split", "--sample", str(sample_root), "--out", str(files[run, "drawn"])], hash_seed)
        files[run, "matched"] = tmp_path / f"matched-{run}.json"
        _run([sys.executable, "-c", MATCHED_SPLIT, str(sample_root), str(files[run, "matched"]), "3"], hash_seed)
    for method in ("drawn", "matched"):
        first, second = files["a", method].read_bytes(), files["b", method].read_bytes()
        assert first == second and f'"method": "{method}"'.encode() in first
