"""The worker thread discipline: OpenCV to one thread, BLAS/OpenMP variables set unless the user chose."""

from __future__ import annotations

import os

import cv2
import pytest

from pipeline.faces import THREAD_ENV, limit_threads


def test_limit_threads_sets_opencv_and_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's own choice is kept
    previous = cv2.getNumThreads()
    try:
        cv2.setNumThreads(4)
        limit_threads()
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(previous)
    assert os.environ["OMP_NUM_THREADS"] == "2"
    assert all(os.environ[name] == "1" for name in THREAD_ENV if name != "OMP_NUM_THREADS")
    assert {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"} <= set(THREAD_ENV)
