"""Cross-identity pairs: a seeded derangement with no shared video or identity (eval.md §3)."""

from __future__ import annotations

import itertools
import random

from split_items import clip, ytid

from pipeline.split import Clip, Pairs, cross_pairs


def assert_valid(clips: list[Clip], pairs: Pairs) -> None:
    """Checked here from first principles, not with the module's own validator."""
    by_id = {c.item_id: c for c in clips}
    assert [p.source for p in pairs.pairs] == [c.item_id for c in clips]
    assert sorted(p.driving for p in pairs.pairs) == sorted(by_id)
    for pair in pairs.pairs:
        source, driving = by_id[pair.source], by_id[pair.driving]
        assert source.item_id != driving.item_id
        assert source.youtube_id != driving.youtube_id
        assert source.identity != driving.identity


def test_derangements_for_many_sizes_and_seeds() -> None:
    for n in range(2, 41):
        clips = [clip(i, ytid(i), f"celebvhq:{ytid(i)}") for i in range(n)]
        for seed in range(3):
            pairs = cross_pairs(clips, seed)
            assert pairs.method == "drawn" and pairs.seed == seed
            assert_valid(clips, pairs)


def test_the_same_seed_gives_the_same_pairs_and_another_seed_others() -> None:
    clips = [clip(i, ytid(i), f"celebvhq:{ytid(i)}") for i in range(20)]
    assert cross_pairs(clips, 7) == cross_pairs(list(clips), 7)
    assert cross_pairs(clips, 7).pairs != cross_pairs(clips, 8).pairs


def test_shared_videos_and_identities_are_never_paired() -> None:
    # two clips per video, and identities shared across videos: most permutations are rejected
    clips = [clip(i, ytid(i // 2), f"person:{i % 3}") for i in range(12)]
    pairs = cross_pairs(clips, 0)
    assert pairs.method == "drawn" and pairs.draws > 1
    assert_valid(clips, pairs)


def test_impossible_sets_say_so_and_list_no_pairs() -> None:
    alone = [clip(0, ytid(0), "a")]
    same_person = [clip(0, ytid(0), "a"), clip(1, ytid(1), "a"), clip(2, ytid(2), "b")]  # both "a" need "b"
    for clips in ([], alone, same_person):
        pairs = cross_pairs(clips, 0)
        assert pairs.method == "impossible" and pairs.pairs == [] and "no pairs" in pairs.note


def test_matching_finds_a_pairing_when_draws_run_out() -> None:
    # 5 clips of person X and 5 of Y: every X must drive a Y and the reverse
    clips = [clip(i, ytid(i), "X" if i < 5 else "Y") for i in range(10)]
    pairs = cross_pairs(clips, 0, max_draws=0)
    assert pairs.method == "matched"
    assert_valid(clips, pairs)


def test_feasibility_agrees_with_brute_force() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        n = rng.randint(2, 6)
        clips = [clip(i, ytid(rng.randint(0, n)), f"p{rng.randint(0, 2)}") for i in range(n)]
        possible = any(
            all(
                a.youtube_id != clips[j].youtube_id and a.identity != clips[j].identity and i != j
                for i, (a, j) in enumerate(zip(clips, perm, strict=True))
            )
            for perm in itertools.permutations(range(n))
        )
        pairs = cross_pairs(clips, 0, max_draws=0)
        assert (pairs.method == "matched") == possible, clips
        if possible:
            assert_valid(clips, pairs)
