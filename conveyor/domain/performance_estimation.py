"""Performance estimated without labels: confidence-based performance estimation (CBPE) for a binary classifier.

If the model's probabilities are calibrated, each row's probability is the chance its label is 1, so the
*expected* confusion matrix of a window follows from its scores alone: expected accuracy, F1 and ROC AUC. When the
model is not calibrated, an isotonic map fitted on a labelled reference (the champion's held-out test rows)
calibrates it first; the reference's expected calibration error is reported either way.

What it can see: a change in the score distribution (covariate shift moving rows towards or away from the
uncertain region). What it cannot: concept drift that leaves the features, hence the scores, where they were
(P(y | x) changed): the estimate stays put and only the realized metric, once labels arrive, shows the decay.

Pure numpy/scikit-learn; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Reliability bins for the expected calibration error (equal-width on [0, 1]).
_ECE_BINS = 10


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from raw score to probability (isotonic, fitted on labelled reference rows), or identity."""

    x: np.ndarray = field(repr=False)  # increasing raw-score knots; empty: identity
    y: np.ndarray = field(repr=False)
    reference_rows: int
    calibration_error: float | None  # ECE of the raw scores on the reference; None without labels
    applied: bool

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=float)
        if not self.applied:
            return np.clip(scores, 0.0, 1.0)
        return np.interp(scores, self.x, self.y)


@dataclass(frozen=True)
class EstimatedPerformance:
    """The window's expected metrics from its scores alone, with their sampling standard errors."""

    rows: int
    roc_auc: float
    accuracy: float
    f1: float
    roc_auc_se: float
    accuracy_se: float
    f1_se: float
    threshold: float
    calibration_error: float | None
    calibrated: bool
    expected_roc_auc: float | None
    max_drop: float
    z: float
    decayed: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def roc_auc_band(self) -> tuple[float, float]:
        return self.roc_auc - self.z * self.roc_auc_se, self.roc_auc + self.z * self.roc_auc_se


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = _ECE_BINS) -> float:
    """Row-weighted mean |observed positive rate - mean probability| over equal-width probability bins."""
    labels, probabilities = np.asarray(labels, dtype=float), np.asarray(probabilities, dtype=float)
    which = np.clip((probabilities * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    observed = np.bincount(which, weights=labels, minlength=bins)
    predicted = np.bincount(which, weights=probabilities, minlength=bins)
    filled = counts > 0
    return float(np.sum(np.abs(observed[filled] - predicted[filled])) / max(len(labels), 1))


def fit_calibrator(scores: np.ndarray | None, labels: np.ndarray | None, tolerance: float) -> Calibrator:
    """Isotonic calibration on labelled reference rows when their raw ECE exceeds `tolerance`; identity when the
    scores are calibrated already, or when there are no labels (then the scores are trusted as probabilities)."""
    if scores is None or labels is None or len(scores) == 0 or len(np.unique(labels)) < 2:
        return Calibrator(np.empty(0), np.empty(0), 0 if scores is None else len(scores), None, False)
    from sklearn.isotonic import IsotonicRegression

    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=int)
    error = expected_calibration_error(labels, scores)
    if error <= tolerance:
        return Calibrator(np.empty(0), np.empty(0), len(scores), error, False)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels)
    return Calibrator(
        np.asarray(iso.X_thresholds_, dtype=float), np.asarray(iso.y_thresholds_, dtype=float), len(scores), error, True
    )


def expected_roc_auc(scores: np.ndarray, probabilities: np.ndarray) -> float:
    """ROC AUC of the ranking by `scores` if each row is positive with its `probabilities`: the expected TPR/FPR
    curve, cumulated over distinct scores from the top (ties form one step, as in the realized ROC)."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    s, p = np.asarray(scores, dtype=float)[order], np.asarray(probabilities, dtype=float)[order]
    ends = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]
    tp, fp = np.cumsum(p)[ends], np.cumsum(1.0 - p)[ends]
    if tp[-1] <= 0 or fp[-1] <= 0:
        return float("nan")
    tpr, fpr = np.r_[0.0, tp / tp[-1]], np.r_[0.0, fp / fp[-1]]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def expected_accuracy_f1(probabilities: np.ndarray, threshold: float, scores: np.ndarray) -> tuple[float, float]:
    """Expected accuracy and F1 of the decisions `scores >= threshold` under the probabilities."""
    p = np.asarray(probabilities, dtype=float)
    decided = np.asarray(scores, dtype=float) >= threshold
    tp, fp = float(p[decided].sum()), float((1.0 - p[decided]).sum())
    fn, tn = float(p[~decided].sum()), float((1.0 - p[~decided]).sum())
    accuracy = (tp + tn) / max(len(p), 1)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else float("nan")
    return accuracy, f1


def realized_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC AUC, accuracy and F1 on labelled rows: what the estimate is compared with once labels arrive.
    (The expected-value formulas with the labels as probabilities: the same tie handling, no sklearn overhead
    inside the bootstrap.)"""
    y, s = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    decided = s >= threshold
    tp = float(y[decided].sum())
    fp, fn = float(decided.sum()) - tp, float(y[~decided].sum())
    both = 0 < y.sum() < len(y)
    return {
        "roc_auc": expected_roc_auc(s, y) if both else float("nan"),
        "accuracy": float(np.mean(decided == (y > 0.5))) if len(y) else float("nan"),
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else 0.0,
    }


def sampling_errors(
    labels: np.ndarray, scores: np.ndarray, rows: int, threshold: float, replicates: int, seed: int
) -> dict[str, float]:
    """Standard error of each metric on a window of `rows` rows: the spread of the realized metric over bootstrap
    samples of the labelled reference, drawn at min(rows, reference size) and scaled by sqrt(drawn / rows)."""
    y, s = np.asarray(labels, dtype=int), np.asarray(scores, dtype=float)
    drawn = max(min(rows, len(y)), 2)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(replicates):
        pick = rng.integers(0, len(y), drawn)
        if len(np.unique(y[pick])) == 2:
            samples.append(realized_metrics(y[pick], s[pick], threshold))
    scale = np.sqrt(drawn / max(rows, 1))
    return {
        k: float(np.std([m[k] for m in samples], ddof=1) * scale) if len(samples) > 1 else float("nan")
        for k in ("roc_auc", "accuracy", "f1")
    }


def estimate_performance(
    scores: np.ndarray,
    calibrator: Calibrator,
    errors: dict[str, float],
    *,
    threshold: float,
    expected_roc_auc_value: float | None,
    max_drop: float,
    z: float,
) -> EstimatedPerformance:
    """CBPE on one window. Decayed when even the upper end of the estimate's band (estimate + z * SE) is below
    the expected ROC AUC minus `max_drop`: a drop the sampling noise of this window size cannot explain."""
    s = np.asarray(scores, dtype=float)
    s = s[~np.isnan(s)]
    p = calibrator(s)
    auc = expected_roc_auc(s, p)
    accuracy, f1 = expected_accuracy_f1(p, threshold, s)
    se = errors.get("roc_auc", float("nan"))
    se_value = 0.0 if np.isnan(se) else se
    decayed, reasons = False, []
    if expected_roc_auc_value is not None and not np.isnan(auc):
        floor = expected_roc_auc_value - max_drop
        decayed = auc + z * se_value < floor
        if decayed:
            reasons.append(
                f"estimated performance decay (CBPE, no labels): ROC AUC {auc:.3f} +/- {z * se_value:.3f} "
                f"< test {expected_roc_auc_value:.3f} - drift.max_metric_drop {max_drop} on {len(s)} rows"
            )
    return EstimatedPerformance(
        rows=len(s),
        roc_auc=auc,
        accuracy=accuracy,
        f1=f1,
        roc_auc_se=se_value,
        accuracy_se=errors.get("accuracy", float("nan")),
        f1_se=errors.get("f1", float("nan")),
        threshold=threshold,
        calibration_error=calibrator.calibration_error,
        calibrated=calibrator.applied,
        expected_roc_auc=expected_roc_auc_value,
        max_drop=max_drop,
        z=z,
        decayed=decayed,
        reasons=reasons,
    )
