"""When each frame of a sample recording is shown, and which frames a span of seconds holds.

A phone's frame durations wander, yet the sample's annotations name instants (CelebV-HQ's clip ranges, a
cut "at 1.6 s"). So a variable-rate recording here starts each shot exactly where a constant-rate one would
and lets the frames between cuts wander: an annotation in seconds stays true, while "frame n" stops being
"n / fps". Times are kept on the file's own clock (recording.TIME_BASE), so what the sample computes from
them is what a reader of the file sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from pipeline.sample.recording import TIME_BASE, variable_times


def constant_times(count: int, fps: float) -> tuple[float, ...]:
    return _on_clock(np.arange(count) / fps)


def shot_times(lengths: Sequence[int], fps: float, seed: int) -> tuple[float, ...]:
    """Variable-rate times of consecutive shots of `lengths` frames; shot k starts at sum(lengths[:k]) / fps."""
    steps = np.diff(variable_times(sum(lengths) + 1, fps, seed))
    start = 0
    for length in lengths:
        part = steps[start : start + length]
        part *= length / fps / part.sum()
        start += length
    return _on_clock(np.concatenate([[0.0], np.cumsum(steps[:-1])]))


def on_screen(times: Sequence[float], start: float, end: float) -> range:
    """The frames shown at some moment of [start, end): the one showing at `start` and those starting before `end`."""
    shown = np.asarray(times)
    first = max(int(np.searchsorted(shown, start + 1e-6, side="right")) - 1, 0)
    return range(first, int(np.searchsorted(shown, end - 1e-6, side="left")))


def constant_rate_picks(times: Sequence[float], start: float, end: float, fps: float) -> list[int]:
    """The frames a constant-rate re-encode of [start, end) keeps, as ffmpeg's mp4 output does: tick k at
    start + k / fps shows the frame on screen then, rounded to the nearest tick (repeated or dropped as the
    source is slower or faster)."""
    shown = np.asarray(times)
    ticks = start + np.arange(math.ceil((end - start) * fps - 1e-9)) / fps
    picks = np.searchsorted(shown, ticks + 0.5 / fps - 1e-9, side="right") - 1
    return [int(i) for i in np.clip(picks, 0, len(shown) - 1)]


def _on_clock(seconds: np.ndarray) -> tuple[float, ...]:
    ticks = 1 / float(TIME_BASE)
    return tuple(float(t) for t in np.round(seconds * ticks) / ticks)
