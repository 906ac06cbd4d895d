"""The sample's timing rules, on timelines whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.sample.recording import TIME_BASE
from pipeline.sample.timeline import constant_rate_picks, constant_times, on_screen, shot_times


def test_a_constant_rate_reencode_keeps_drops_or_repeats_frames_by_time() -> None:
    assert constant_rate_picks(constant_times(20, 50), 0.0, 0.2, 25) == [0, 2, 4, 6, 8]  # twice as fast: every other
    assert constant_rate_picks(constant_times(20, 12.5), 0.0, 0.4, 25) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert constant_rate_picks(constant_times(100, 25), 1.2, 1.4, 25) == [30, 31, 32, 33, 34]
    # a late frame: the one shown at a tick is the one on screen half a tick later at most
    assert constant_rate_picks([0.0, 0.05, 0.1], 0.0, 0.12, 25) == [0, 1, 1]


def test_on_screen_holds_the_frame_showing_at_the_start_and_those_starting_before_the_end() -> None:
    times = [0.0, 0.5, 0.8, 1.3, 2.0]
    assert on_screen(times, 0.6, 1.3) == range(1, 3)  # 0.5 shows at 0.6; 1.3 starts at the end, excluded
    assert on_screen(times, 0.5, 2.5) == range(1, 5)
    assert on_screen(constant_times(100, 25), 0.0, 1.56) == range(0, 39)


def test_shot_times_wander_but_start_each_shot_on_the_constant_rate_grid() -> None:
    times = np.array(shot_times([40, 30, 30], 25, seed=3))
    assert len(times) == 100 and np.all(np.diff(times) > 0)
    assert times[[0, 40, 70]] == pytest.approx([0.0, 1.6, 2.8], abs=1e-9)
    steps = np.diff(times) * 25
    assert steps.min() < 0.8 and steps.max() > 1.2
    ticks = times / float(TIME_BASE)
    assert np.abs(ticks - np.round(ticks)).max() < 1e-6  # on the file's clock: what the sample computes, a reader reads
    assert shot_times([40, 30, 30], 25, seed=3) == tuple(times) != shot_times([40, 30, 30], 25, seed=4)
