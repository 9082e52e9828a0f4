"""The drift statistics of one column, pure numpy/pandas: PSI on reference-quantile bins and the two-sample KS
statistic for numeric columns (features, and numeric model outputs: score, class probabilities, prediction), PSI
over the reference categories plus an unseen bucket for categorical ones (features, and the predicted class).
`conveyor/domain/drift.py` combines them into the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from configs.settings import DriftConfig, FeatureDriftThresholds
from conveyor.domain import drift_bounds

UNSEEN = "__unseen__"
# An empty bin would make PSI infinite; this floor (a share) is the usual convention.
_EPS = 1e-4


@dataclass(frozen=True)
class FeatureDrift:
    """Drift statistics of one column (a feature, or the model's score)."""

    name: str
    kind: Literal["numeric", "categorical", "prediction"]
    psi: float
    ks: float | None
    psi_threshold: float
    ks_threshold: float | None
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_mean: float | None = None
    current_mean: float | None = None
    unseen_categories: list[str] = field(default_factory=list)
    unseen_share: float = 0.0
    reasons: list[str] = field(default_factory=list)
    # Window-sized bounds (drift_bounds.py): the effective bound is max(threshold, no-change quantile).
    psi_bound: float | None = None
    ks_bound: float | None = None
    psi_no_change: float | None = None
    ks_no_change: float | None = None
    jensen_shannon: float | None = None
    wasserstein_std: float | None = None


@dataclass(frozen=True)
class Bounds:
    """What a statistic is compared with: the configured minimum effect and the no-change quantile at this size."""

    alpha: float | None  # None: fixed thresholds only
    replicates: int
    rng: np.random.Generator | None

    def exceeded(
        self, column: str, statistic: str, value: float, threshold: float, no_change: float | None, rows: int
    ) -> str | None:
        """The reason `value` is beyond its bound, naming the rule that set the bound; None when it is not."""
        bound = threshold if no_change is None else max(threshold, no_change)
        if value <= bound:
            return None
        if no_change is None or no_change <= threshold:
            extra = "" if no_change is None else f"; no-change quantile at {rows:,} rows only {no_change:.3f}"
            return f"{column}: {statistic} {value:.3f} > {threshold} (threshold{extra})"
        return (
            f"{column}: {statistic} {value:.3f} > {no_change:.3f}, the no-change {1 - (self.alpha or 0):.4%} quantile "
            f"at {rows:,} rows (above the threshold {threshold}: the window is small)"
        )


FIXED = Bounds(None, 0, None)


# ---- statistics ---------------------------------------------------------------------------------------------
def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference quantiles (ties collapsed: integer features may have fewer bins)."""
    return _sorted_edges(np.sort(reference), bins)


def _sorted_edges(ref_sorted: np.ndarray, bins: int) -> np.ndarray:
    # Quantiles that are data values (numpy's "inverted_cdf"): integer features get edges on their own values.
    n = len(ref_sorted)
    positions = np.ceil(np.linspace(0, 1, bins + 1)[1:-1] * n).astype(np.int64) - 1
    return np.unique(ref_sorted[np.clip(positions, 0, n - 1)])


def _bin_counts(values_sorted: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # Right-closed bins (-inf, e1], (e1, e2], ..., (ek, inf): counts from a sorted array in O(bins log n).
    at_or_below = np.searchsorted(values_sorted, edges, side="right")
    return np.diff(np.concatenate([[0], at_or_below, [len(values_sorted)]]))


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    shares = counts / total if total else np.zeros_like(counts, dtype=float)
    return np.clip(shares, _EPS, None)


def psi_from_counts(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Population stability index: sum((c - r) * ln(c / r)) over bins, shares floored at 1e-4."""
    r, c = _shares(reference_counts.astype(float)), _shares(current_counts.astype(float))
    return float(np.sum((c - r) * np.log(c / r)))


def _psi_sorted(ref_sorted: np.ndarray, cur_sorted: np.ndarray, bins: int) -> float:
    edges = _sorted_edges(ref_sorted, bins)
    return psi_from_counts(_bin_counts(ref_sorted, edges), _bin_counts(cur_sorted, edges))


def _ks_sorted(a: np.ndarray, b: np.ndarray) -> float:
    # The ECDF gap can only peak at a sample point; sorted queries keep numpy's searchsorted cache-friendly.
    gap_at_a = np.arange(1, len(a) + 1) / len(a) - np.searchsorted(b, a, side="right") / len(b)
    gap_at_b = np.searchsorted(a, b, side="right") / len(a) - np.arange(1, len(b) + 1) / len(b)
    # At tied points only the last of a run holds the true ECDF value; the right-searchsorted side is exact,
    # the arange side overshoots downwards inside a run, so take it at run ends only.
    last_a = np.r_[a[1:] != a[:-1], True]
    last_b = np.r_[b[1:] != b[:-1], True]
    return float(max(np.max(np.abs(gap_at_a[last_a])), np.max(np.abs(gap_at_b[last_b]))))


def numeric_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI with bins at the reference quantiles (each bin holds ~1/bins of the reference)."""
    return _psi_sorted(np.sort(reference), np.sort(current), bins)


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    return _ks_sorted(np.sort(reference), np.sort(current))


def categorical_psi(reference: pd.Series, current: pd.Series) -> tuple[float, list[str], float]:
    """PSI over the reference's categories plus one bucket for unseen ones; returns (psi, unseen, unseen share).
    Missing values are left out (null shares are the validation gate's business)."""
    r, c, unseen, share = categorical_counts(reference, current)
    return psi_from_counts(r, c), unseen, share


def categorical_counts(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, np.ndarray, list[str], float]:
    """Counts over the reference's categories plus the unseen bucket (last), the unseen names and their share."""
    ref_counts = reference.value_counts(dropna=True)
    cur_counts = current.value_counts(dropna=True)
    ref_counts, cur_counts = ref_counts[ref_counts > 0], cur_counts[cur_counts > 0]
    known = ref_counts.index
    seen = cur_counts.index.isin(known)
    unseen = sorted(str(c) for c in cur_counts.index[~seen])
    unseen_count = int(cur_counts[~seen].sum())
    r = np.append(ref_counts.to_numpy(dtype=float), 0.0)
    c = np.append(cur_counts.reindex(known, fill_value=0).to_numpy(dtype=float), float(unseen_count))
    total = float(cur_counts.sum())
    return r, c, unseen, (unseen_count / total if total else 0.0)


def _thresholds(config: DriftConfig, override: FeatureDriftThresholds | None) -> tuple[float, float]:
    psi = override.psi if override and override.psi is not None else config.psi_threshold
    ks = override.ks if override and override.ks is not None else config.ks_threshold
    return psi, ks


def numeric_values(column: pd.Series) -> np.ndarray:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    return values[~np.isnan(values)]


def numeric_drift(
    name: str,
    reference: pd.Series,
    current: pd.Series,
    config: DriftConfig,
    kind: Literal["numeric", "prediction"] = "numeric",
    bounds: Bounds = FIXED,
    thresholds: FeatureDriftThresholds | None = None,
) -> FeatureDrift:
    """PSI and KS of a numeric column against `thresholds` (the feature's own, dataset.yaml), else `config`'s."""
    ref, cur = numeric_values(reference), numeric_values(current)
    if kind == "prediction":
        psi_limit, ks_limit = config.prediction_psi_threshold, config.ks_threshold
    else:
        psi_limit, ks_limit = _thresholds(config, thresholds)
    ref, cur = np.sort(ref), np.sort(cur)
    edges = _sorted_edges(ref, config.bins)
    ref_counts, cur_counts = _bin_counts(ref, edges), _bin_counts(cur, edges)
    psi = psi_from_counts(ref_counts, cur_counts)
    ks = _ks_sorted(ref, cur)
    psi_null = ks_null = None
    if bounds.alpha is not None and bounds.rng is not None and len(cur):
        psi_null = drift_bounds.psi_null_bound(ref_counts, len(cur), bounds.alpha, bounds.replicates, bounds.rng)
        ks_null = drift_bounds.ks_null_bound(len(ref), len(cur), bounds.alpha)
    found = [
        bounds.exceeded(name, "PSI", psi, psi_limit, psi_null, len(cur)),
        bounds.exceeded(name, "KS statistic", ks, ks_limit, ks_null, len(cur)),
    ]
    reasons = [r for r in found if r]
    return FeatureDrift(
        name=name,
        kind=kind,
        psi=psi,
        ks=ks,
        psi_threshold=psi_limit,
        ks_threshold=ks_limit,
        drifted=bool(reasons),
        reference_rows=len(ref),
        current_rows=len(cur),
        reference_mean=float(ref.mean()) if len(ref) else None,
        current_mean=float(cur.mean()) if len(cur) else None,
        reasons=reasons,
        psi_bound=psi_limit if psi_null is None else max(psi_limit, psi_null),
        ks_bound=ks_limit if ks_null is None else max(ks_limit, ks_null),
        psi_no_change=psi_null,
        ks_no_change=ks_null,
        jensen_shannon=drift_bounds.jensen_shannon(ref_counts, cur_counts),
        wasserstein_std=drift_bounds.wasserstein_in_std(ref, cur),
    )


def categorical_drift(
    name: str,
    reference: pd.Series,
    current: pd.Series,
    config: DriftConfig,
    bounds: Bounds = FIXED,
    thresholds: FeatureDriftThresholds | None = None,
) -> FeatureDrift:
    """PSI of a categorical column against `thresholds.psi` (the feature's own, dataset.yaml), else `config`'s."""
    psi_limit, _ = _thresholds(config, thresholds)
    ref_counts, cur_counts, unseen, share = categorical_counts(reference, current)
    psi = psi_from_counts(ref_counts, cur_counts)
    rows = int(cur_counts.sum())
    psi_null = None
    if bounds.alpha is not None and bounds.rng is not None and rows:
        psi_null = drift_bounds.psi_null_bound(ref_counts, rows, bounds.alpha, bounds.replicates, bounds.rng)
    fired = bounds.exceeded(name, "PSI", psi, psi_limit, psi_null, rows)
    reasons = [fired] if fired else []
    if unseen:
        # Reported, and they weigh in the PSI through the unseen bucket; on their own they are a data-quality
        # matter (the validation gate's job), so they do not flip the verdict unless the PSI does.
        reasons.append(f"{name}: {len(unseen)} categories not in the reference ({share:.1%} of rows): {unseen[:5]}")
    return FeatureDrift(
        name=name,
        kind="categorical",
        psi=psi,
        ks=None,
        psi_threshold=psi_limit,
        ks_threshold=None,
        drifted=fired is not None,
        reference_rows=len(reference),
        current_rows=len(current),
        unseen_categories=unseen,
        unseen_share=share,
        reasons=reasons,
        psi_bound=psi_limit if psi_null is None else max(psi_limit, psi_null),
        psi_no_change=psi_null,
        jensen_shannon=drift_bounds.jensen_shannon(ref_counts, cur_counts),
    )
