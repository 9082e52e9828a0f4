"""Alert bounds sized to the window: how large a drift statistic gets when nothing changed, at these row counts.

A fixed PSI or KS threshold means different things at 1,000 and at 1,000,000 rows: the statistic of two samples of
the same distribution shrinks with the row counts. So each feature's bound is the larger of the configured
minimum effect (`drift.psi_threshold`, `drift.ks_threshold`) and the statistic's no-change quantile at this window's
size and the reference's size:

- PSI (numeric bins and categories alike): both the reference and the current counts are resampled from the
  reference's own bin shares (multinomial, `drift.bootstrap_replicates` times). Under no change PSI is close to
  (1/n + 1/N) * chi2(bins - 1), so the resampled mean sets the scale and the chi-square tail the quantile: a
  bound at 1 - alpha without the 1/alpha replicates a purely empirical quantile would need.
- KS: the Kolmogorov distribution at the effective size nN / (n + N), with Stephens' finite-size correction
  (conservative when the feature has ties).

alpha is `drift.false_alarm_rate` shared out over every statistic of the window (Bonferroni), so the
false-alarm rate is per window, not per feature. Jensen-Shannon distance and the Wasserstein distance in
reference standard deviations are reported next to PSI and KS; they do not gate.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

# Same floor as drift.py's PSI: an empty bin would make the statistic infinite.
_EPS = 1e-4


def _psi_rows(reference_counts: np.ndarray, current_counts: np.ndarray) -> np.ndarray:
    """PSI of each row of two (replicates x bins) count arrays, shares floored as in `drift.psi_from_counts`."""
    r = np.clip(reference_counts / reference_counts.sum(axis=1, keepdims=True), _EPS, None)
    c = np.clip(current_counts / np.maximum(current_counts.sum(axis=1, keepdims=True), 1), _EPS, None)
    return np.sum((c - r) * np.log(c / r), axis=1)


def psi_null_bound(
    reference_counts: np.ndarray, current_rows: int, alpha: float, replicates: int, rng: np.random.Generator
) -> float:
    """PSI that a window of `current_rows` rows from the reference's own distribution exceeds with chance alpha."""
    counts = np.asarray(reference_counts, dtype=float)
    shares = counts / counts.sum()
    kept = shares > 0
    shares, bins = shares[kept] / shares[kept].sum(), int(kept.sum())
    if bins < 2 or current_rows < 1:
        return 0.0
    reference_rows = int(counts.sum())
    null = _psi_rows(
        rng.multinomial(reference_rows, shares, size=replicates).astype(float),
        rng.multinomial(current_rows, shares, size=replicates).astype(float),
    )
    df = bins - 1
    return float(np.mean(null) * stats.chi2.ppf(1 - alpha, df) / df)


def ks_null_bound(reference_rows: int, current_rows: int, alpha: float) -> float:
    """KS statistic that two samples of these sizes from one continuous distribution exceed with chance alpha."""
    root = np.sqrt(max(reference_rows * current_rows / max(reference_rows + current_rows, 1), 1.0))
    # Stephens' finite-size correction of the asymptotic Kolmogorov quantile (Numerical Recipes' kstwo).
    return float(stats.kstwobign.ppf(1 - alpha) / (root + 0.12 + 0.11 / root))


def jensen_shannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2: 0 identical, 1 disjoint) between two binned distributions."""
    r = np.asarray(reference_counts, dtype=float)
    c = np.asarray(current_counts, dtype=float)
    if r.sum() == 0 or c.sum() == 0:
        return float("nan")
    r, c = r / r.sum(), c / c.sum()
    m = (r + c) / 2

    def _kl(p: np.ndarray) -> float:
        nz = p > 0
        return float(np.sum(p[nz] * np.log2(p[nz] / m[nz])))

    return float(np.sqrt(max((_kl(r) + _kl(c)) / 2, 0.0)))


def wasserstein_in_std(reference_sorted: np.ndarray, current_sorted: np.ndarray, points: int = 1000) -> float:
    """Wasserstein-1 distance between the two samples over the reference's standard deviation: the mean gap
    between their quantile functions, on `points` evenly spaced probabilities."""
    if len(reference_sorted) == 0 or len(current_sorted) == 0:
        return float("nan")
    u = (np.arange(points) + 0.5) / points
    gap = np.abs(_quantiles(reference_sorted, u) - _quantiles(current_sorted, u)).mean()
    scale = float(np.std(reference_sorted))
    return float(gap / scale) if scale > 0 else float(gap)


def _quantiles(values_sorted: np.ndarray, u: np.ndarray) -> np.ndarray:
    return values_sorted[np.minimum((u * len(values_sorted)).astype(np.int64), len(values_sorted) - 1)]


def alpha_per_statistic(false_alarm_rate: float, statistics: int) -> float:
    """Bonferroni: each of the window's statistics gets an equal share of the window's false-alarm rate."""
    return false_alarm_rate / max(statistics, 1)
