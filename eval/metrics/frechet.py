"""The Fréchet distance between Gaussians fitted to two feature sets (FID and FVD both end here).

d² = |mu_a - mu_b|² + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^½). The hard term is the trace of the matrix
square root, the sum of the square roots of the eigenvalues of S_a S_b (exact for a product of two PSD
matrices, and stable on the rank-deficient covariances small test sets give, where scipy's `sqrtm` is
slow and may return complex round-off; the tests cross-check both routes against `sqrtm`):

- When one set has fewer vectors than dimensions (100 clips of 16 frames against Inception's 2048, or the
  sample), S_a = AᵀA / (n_a - 1) with A its centred vectors, and the nonzero eigenvalues of S_a S_b are
  those of the symmetric n_a × n_a matrix A S_b Aᵀ / (n_a - 1): one `eigvalsh` of the small side, exact,
  instead of a general eigendecomposition of a 2048² product (about 0.35 s per value, paid by every run's
  summary and every table cell).
- Otherwise torch-fidelity's `fid_statistics_to_metric` (the FID backend the project depends on; 0.4 or
  later: 0.3 used `sqrtm` with a diagonal offset when it failed) on the two covariances.

`Moments` fits a Gaussian without holding the set, so FID's memory does not grow with the number of frames
(torchmetrics' FID accumulates the same); it keeps the vectors only while they are fewer than the
dimensions, where they cost no more than the covariance. Everything is float64, so FID and FVD do not
depend on the feature extractor's output dtype.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric


class Moments:
    """Count, sum and sum of outer products of feature vectors, and the vectors themselves while there
    are fewer of them than dimensions (the low-rank route)."""

    def __init__(self) -> None:
        self.count = 0
        self.total: np.ndarray | None = None
        self.outer: np.ndarray | None = None
        self.kept: list[np.ndarray] | None = []

    @classmethod
    def of(cls, features: np.ndarray) -> Moments:
        moments = cls()
        moments.add(features)
        return moments

    def add(self, features: np.ndarray) -> None:
        values = np.asarray(features, np.float64)
        if values.ndim != 2:
            raise ValueError(f"features must be (N, D), got shape {values.shape}")
        if len(values) == 0:
            return
        if self.total is None or self.outer is None:
            self.total = np.zeros(values.shape[1])
            self.outer = np.zeros((values.shape[1], values.shape[1]))
        self.count += len(values)
        self.total += values.sum(axis=0)
        self.outer += values.T @ values
        if self.kept is not None and self.count < values.shape[1]:
            self.kept.append(values)
        else:
            self.kept = None

    def gaussian(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, unbiased covariance) of every vector added."""
        if self.count < 2 or self.total is None or self.outer is None:
            raise ValueError(f"need at least 2 feature vectors, got {self.count}")
        mean = self.total / self.count
        return mean, (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)

    def small(self) -> bool:
        """Fewer vectors than dimensions: they are kept, and the low-rank route applies."""
        return self.kept is not None and self.total is not None

    def centred(self) -> np.ndarray:
        """(N, D) vectors minus their mean (a `small` set only)."""
        if self.kept is None or self.total is None:
            raise ValueError(f"{self.count} vectors are not fewer than their dimensions: none was kept")
        return np.concatenate(self.kept) - self.total / self.count


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of (N, D) features in float64, as torch-fidelity fits them (unbiased, N - 1)."""
    values = np.asarray(features, np.float64)
    if values.ndim != 2 or len(values) < 2:
        raise ValueError(f"need at least 2 feature vectors (N, D), got shape {values.shape}")
    statistics = fid_features_to_statistics(torch.from_numpy(values))
    return statistics["mu"], statistics["sigma"]


def frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """The squared Fréchet distance between N(mu_a, cov_a) and N(mu_b, cov_b), by torch-fidelity."""
    first = {"mu": np.asarray(mu_a, np.float64), "sigma": np.asarray(cov_a, np.float64)}
    second = {"mu": np.asarray(mu_b, np.float64), "sigma": np.asarray(cov_b, np.float64)}
    return float(fid_statistics_to_metric(first, second, verbose=False)[KEY_METRIC_FID])


def frechet(a: Moments, b: Moments) -> float:
    """The squared Fréchet distance between the Gaussians of two accumulated sets, by the low-rank route
    when either set is smaller than the dimension."""
    (mu_a, cov_a), (mu_b, cov_b) = a.gaussian(), b.gaussian()
    sides = [(moments, cov) for moments, cov in ((a, cov_b), (b, cov_a)) if moments.small()]
    if not sides:
        return frechet_distance(mu_a, cov_a, mu_b, cov_b)
    side, other = min(sides, key=lambda pair: pair[0].count)
    vectors = side.centred()
    eigenvalues = np.linalg.eigvalsh(vectors @ other @ vectors.T / (side.count - 1))
    root_trace = float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * root_trace)


def frechet_between(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between two (N, D) feature sets."""
    return frechet(Moments.of(features_a), Moments.of(features_b))
