"""Multivariate drift: how badly a PCA of the reference reconstructs the current window's rows.

Per-feature statistics cannot see a change in how features relate (each marginal unchanged, the correlation
broken). A PCA fitted on the reference's encoded features captures those relations; rows that no longer follow
them reconstruct worse. The statistic is the window's mean reconstruction error; its alert band is the reference's
own chunk-to-chunk variation at the window's row count.

- encoding: numeric features standardised with the reference's mean and std (missing -> the mean), categorical
  ones one-hot over the reference's categories (an unseen category -> all zeros);
- PCA: fitted on half of the reference; the components kept explain `drift.pca_variance` of its variance;
- statistic: the mean error with each row's error capped at the reference's 99th percentile: a handful of
  extreme rows (the errors are heavily right-skewed) would otherwise swing a small window's mean;
- band: mean +/- z * (chunk std at the window's size) of the errors on the *other* half, so the band is measured
  on rows the PCA has not seen, as the current window's are. z is the two-sided normal quantile of
  `drift.false_alarm_rate`. The band is at least `drift.pca_min_change` (a share of the reference's error) wide
  on each side: the minimum effect, as the PSI/KS thresholds are for single features (large windows would
  otherwise flag the slow ageing of the customer base).

Pure numpy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from configs.settings import DatasetConfig, DriftConfig

_ERROR_CAP_QUANTILE = 0.99


@dataclass(frozen=True)
class MultivariateDrift:
    """The window's mean reconstruction error vs the reference's band at this row count."""

    rows: int
    reconstruction_error: float
    reference_error: float
    lower: float
    upper: float
    components: int
    encoded_columns: int
    drifted: bool
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReconstructionProfile:
    """A fitted encoder + PCA and the reference's held-out row errors: everything a window is judged against."""

    numeric: list[str]
    means: np.ndarray = field(repr=False)
    stds: np.ndarray = field(repr=False)
    categories: dict[str, list[str]] = field(repr=False)
    center: np.ndarray = field(repr=False)
    components: np.ndarray = field(repr=False)  # (kept, encoded columns), orthonormal rows
    holdout_errors: np.ndarray = field(repr=False)

    @classmethod
    def fit(cls, reference: pd.DataFrame, dataset: DatasetConfig, config: DriftConfig) -> ReconstructionProfile:
        rng = np.random.default_rng(config.seed)
        order = rng.permutation(len(reference))
        fit_rows, holdout_rows = order[: len(order) // 2], order[len(order) // 2 :]
        fit_part = reference.iloc[fit_rows]
        numeric = [n for n in dataset.feature_names if n in dataset.numeric_features]
        values = _numeric_matrix(fit_part, numeric)
        means, stds = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        stds[stds == 0] = 1.0
        categories = {
            n: sorted(str(c) for c in fit_part[n].dropna().unique())
            for n in dataset.feature_names
            if n not in dataset.numeric_features
        }
        empty = np.empty(0)
        encoder = cls(numeric, means, stds, categories, empty, np.empty((0, 0)), empty)
        encoded = encoder.encode(fit_part)
        center = encoded.mean(axis=0)
        _, singular, vt = np.linalg.svd(encoded - center, full_matrices=False)
        explained = np.cumsum(singular**2) / np.sum(singular**2)
        kept = int(np.searchsorted(explained, config.pca_variance) + 1)
        fitted = cls(numeric, means, stds, categories, center, vt[:kept], empty)
        return cls(numeric, means, stds, categories, center, vt[:kept], fitted.row_errors(reference.iloc[holdout_rows]))

    @property
    def error_cap(self) -> float:
        return float(np.quantile(self.holdout_errors, _ERROR_CAP_QUANTILE))

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Standardised numeric columns, then one-hot blocks, as float32 (rows x encoded columns)."""
        rows = len(frame)
        width = len(self.numeric) + sum(len(c) for c in self.categories.values())
        out = np.zeros((rows, width), dtype=np.float32)
        out[:, : len(self.numeric)] = np.nan_to_num(
            (_numeric_matrix(frame, self.numeric) - self.means) / self.stds, nan=0.0
        )
        at = len(self.numeric)
        for name, cats in self.categories.items():
            column = frame[name]
            # Categories are kept as strings; converting an already-text column to str again is the slow part.
            codes = pd.Categorical(column if column.dtype == object else column.astype(str), categories=cats).codes
            seen = codes >= 0
            out[np.flatnonzero(seen), at + codes[seen]] = 1.0
            at += len(cats)
        return out

    def row_errors(self, frame: pd.DataFrame) -> np.ndarray:
        """Euclidean distance of each encoded row from its reconstruction: |x|^2 - |x V|^2 for centred x."""
        x = self.encode(frame) - self.center.astype(np.float32)
        projected = x @ self.components.T.astype(np.float32)
        squared = np.einsum("ij,ij->i", x, x) - np.einsum("ij,ij->i", projected, projected)
        return np.sqrt(np.clip(squared, 0.0, None))

    def judge(self, current: pd.DataFrame, config: DriftConfig) -> MultivariateDrift:
        cap = self.error_cap
        errors = np.minimum(self.row_errors(current), cap)
        rows, held = len(errors), np.minimum(self.holdout_errors, cap)
        mean = float(errors.mean()) if rows else float("nan")
        reference_mean = float(held.mean())
        spread = chunk_std(held, rows, config.bootstrap_replicates, config.seed)
        z = float(stats.norm.ppf(1 - config.false_alarm_rate / 2))
        half_width = max(z * spread, config.pca_min_change * reference_mean)
        lower, upper = reference_mean - half_width, reference_mean + half_width
        drifted = rows > 0 and not lower <= mean <= upper
        reasons = (
            [
                f"multivariate drift: mean PCA reconstruction error {mean:.3f} outside the reference's band "
                f"[{lower:.3f}, {upper:.3f}] at {rows:,} rows ({self.components.shape[0]} components, "
                f"drift.pca_variance {config.pca_variance})"
            ]
            if drifted
            else []
        )
        return MultivariateDrift(
            rows, mean, reference_mean, lower, upper, self.components.shape[0], len(self.center), drifted, reasons
        )


def _numeric_matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The columns as float; text that is not a number becomes NaN (only columns that need it are parsed)."""
    parsed = {
        c: frame[c] if pd.api.types.is_numeric_dtype(frame[c]) else pd.to_numeric(frame[c], errors="coerce")
        for c in columns
    }
    return np.column_stack([parsed[c].to_numpy(dtype=float) for c in columns]) if columns else np.empty((len(frame), 0))


def chunk_std(errors: np.ndarray, rows: int, replicates: int, seed: int) -> float:
    """Standard deviation of the mean error over reference chunks of `rows` rows, plus the uncertainty of the
    reference's own mean. Chunks larger than half the reference are measured at that size and scaled by
    sqrt(size / rows)."""
    size = max(1, min(rows, len(errors) // 2))
    rng = np.random.default_rng(seed)
    means = np.array([errors[rng.choice(len(errors), size, replace=False)].mean() for _ in range(replicates)])
    at_rows = float(np.std(means, ddof=1)) * np.sqrt(size / max(rows, 1))
    return float(np.hypot(at_rows, np.std(errors) / np.sqrt(len(errors))))
