"""Performance of a multiclass version estimated without labels: confidence-based estimation (CBPE) from its class
probabilities, the multiclass counterpart of `performance_estimation.py` (binary).

If the probabilities are calibrated, row i belongs to class c with probability p_ic, so each class's expected
confusion counts follow from the window's outputs alone: TP_c = sum of p_ic over the rows predicted c,
FP_c = sum of (1 - p_ic) over them, FN_c = sum of p_ic over the rows predicted otherwise. Expected macro F1 is the
mean over classes of 2 TP_c / (2 TP_c + FP_c + FN_c); expected accuracy the mean probability of the predicted class.

Standard errors: the spread of the REALIZED metrics over labels drawn from those same probabilities
(`replicates` draws, seeded): how far the metric the labels will show may fall from the estimate by chance alone
at this window's size. The probabilities are taken as they are (no calibration map is fitted for multiclass),
and like binary CBPE it cannot see concept drift that leaves the probabilities where they were.

Pure numpy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EstimatedClassPerformance:
    """A multiclass window's expected macro F1 and accuracy from its probabilities, with standard errors."""

    rows: int
    macro_f1: float
    accuracy: float
    macro_f1_se: float
    accuracy_se: float
    expected_macro_f1: float | None  # the version's test macro F1
    max_drop: float
    z: float
    decayed: bool
    reasons: list[str] = field(default_factory=list)
    metric: str = "macro_f1"
    calibrated: bool = False  # probabilities used as they are

    @property
    def band(self) -> tuple[float, float]:
        return self.macro_f1 - self.z * self.macro_f1_se, self.macro_f1 + self.z * self.macro_f1_se


def _macro_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp, dtype=float), where=denominator > 0)
    return float(f1.mean())


def expected_class_metrics(proba: np.ndarray) -> tuple[float, float]:
    """(expected macro F1, expected accuracy) of the argmax decisions under the probabilities (rows, classes)."""
    p = np.asarray(proba, dtype=float)
    picked = p.argmax(axis=1)
    chosen = np.eye(p.shape[1], dtype=bool)[picked]
    tp = (p * chosen).sum(axis=0)
    fp = ((1 - p) * chosen).sum(axis=0)
    fn = (p * ~chosen).sum(axis=0)
    return _macro_f1(tp, fp, fn), float(p[np.arange(len(p)), picked].mean()) if len(p) else float("nan")


def realized_class_metrics(labels: np.ndarray, picked: np.ndarray, classes: int) -> tuple[float, float]:
    """(macro F1, accuracy) of predicted class indexes `picked` against label indexes `labels`."""
    tp = np.bincount(picked[labels == picked], minlength=classes).astype(float)
    predicted = np.bincount(picked, minlength=classes).astype(float)
    actual = np.bincount(labels, minlength=classes).astype(float)
    return _macro_f1(tp, predicted - tp, actual - tp), float(np.mean(labels == picked)) if len(labels) else 0.0


def sampling_errors(proba: np.ndarray, replicates: int, seed: int) -> tuple[float, float]:
    """Standard errors of the realized macro F1 and accuracy over labels drawn from the probabilities."""
    p = np.asarray(proba, dtype=float)
    if len(p) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    picked = p.argmax(axis=1)
    draws = []
    for _ in range(replicates):
        labels = (rng.random((len(p), 1)) > cumulative).sum(axis=1).clip(0, p.shape[1] - 1)
        draws.append(realized_class_metrics(labels, picked, p.shape[1]))
    spread = np.std(np.asarray(draws), axis=0, ddof=1)
    return float(spread[0]), float(spread[1])


def estimate_class_performance(
    proba: np.ndarray,
    *,
    expected_macro_f1: float | None,
    max_drop: float,
    z: float,
    replicates: int,
    seed: int,
) -> EstimatedClassPerformance:
    """CBPE on one multiclass window. Decayed when even estimate + z * SE is below the test macro F1 minus
    `max_drop` (`drift.max_metric_drop`, an absolute drop): a drop this window's sampling noise cannot explain."""
    p = np.asarray(proba, dtype=float)
    p = p[~np.isnan(p).any(axis=1)]
    macro_f1, accuracy = expected_class_metrics(p)
    f1_se, accuracy_se = sampling_errors(p, replicates, seed)
    se = 0.0 if np.isnan(f1_se) else f1_se
    decayed, reasons = False, []
    if expected_macro_f1 is not None and np.isfinite(expected_macro_f1) and np.isfinite(macro_f1):
        decayed = macro_f1 + z * se < expected_macro_f1 - max_drop
        if decayed:
            reasons.append(
                f"estimated performance decay (CBPE, no labels): macro F1 {macro_f1:.3f} +/- {z * se:.3f} "
                f"< test {expected_macro_f1:.3f} - drift.max_metric_drop {max_drop} on {len(p)} rows"
            )
    return EstimatedClassPerformance(
        len(p), macro_f1, accuracy, se, accuracy_se, expected_macro_f1, max_drop, z, decayed, reasons
    )
