"""Paired bootstrap confidence intervals of the tasks' metrics, vectorized over resamples.

A resample is a vector of row counts (how often each test row was drawn), so every metric is a *weighted* metric
evaluated on a (resamples x rows) weight matrix at once. The scores never change between resamples, so ROC AUC and
average precision sort each model's scores once and only re-sum the weights per resample. Challenger and champion
get the very same weights: the interval of their difference is paired, which is what makes it narrow enough to
decide on (their errors on the same rows are strongly correlated).

What a model's "scores" are depends on the task: binary, P(positive) (n,) against 0/1 labels; multiclass, the
probability matrix (n, classes) against class indices 0..k-1; regression, the prediction (n,) against the target.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# (labels, scores, weights of shape (b, n)) -> metric per weight row, shape (b,)
WeightedMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
_EPS = 1e-7  # the clipping classification_metrics applies before log loss


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    weighted: WeightedMetric


def _roc_auc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney form: P(score of a positive > score of a negative), ties count one half (= sklearn's).

    Each positive needs the resample's weight of the negatives below it: one cumulative sum over the negatives in
    score order, read at that positive's place among them (`searchsorted`, done once; the half-way point between
    the strictly-below and the at-or-below positions when scores tie)."""
    positive = y == 1
    negative_order = np.argsort(scores[~positive], kind="stable")
    negative_scores = scores[~positive][negative_order]
    below = np.searchsorted(negative_scores, scores[positive], side="left")
    at_or_below = np.searchsorted(negative_scores, scores[positive], side="right")
    negatives = weights[:, np.flatnonzero(~positive)[negative_order]]
    cumulative = np.zeros((len(weights), negatives.shape[1] + 1))
    np.cumsum(negatives, axis=1, out=cumulative[:, 1:])
    credit = cumulative[:, below]
    if (at_or_below != below).any():  # tied scores: a tied negative counts one half
        credit = 0.5 * (credit + cumulative[:, at_or_below])
    positives = weights[:, positive]
    pairs = positives.sum(axis=1) * cumulative[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.einsum("ij,ij->i", positives, credit) / pairs)


def _average_precision(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum over positives of (its recall gain) x (the precision at its score's threshold), as sklearn's
    average_precision_score; with tied scores the threshold takes the whole run of ties (its last row)."""
    order = np.argsort(-scores, kind="stable")
    ordered, labels = scores[order], y[order] == 1
    last_of_run = np.r_[np.flatnonzero(ordered[1:] != ordered[:-1]), len(ordered) - 1]
    run_end = last_of_run[np.searchsorted(last_of_run, np.arange(len(ordered)))]  # per row: its run's last row
    positions = np.flatnonzero(labels)
    if len(positions) == 0:  # no positives: precision-recall is undefined
        return np.full(len(weights), np.nan)
    predicted = np.cumsum(weights[:, order], axis=1)[:, run_end[positions]]
    positives = weights[:, order[positions]]
    true_positives = np.cumsum(positives, axis=1)
    if len(last_of_run) == len(ordered):  # no ties: each positive is the end of its own run
        through_end = true_positives
    else:  # positives up to a run's end, read off their own cumulative sum
        through_end = true_positives[:, np.searchsorted(positions, run_end[positions], side="right") - 1]
    precision = np.divide(through_end, predicted, out=np.zeros(predicted.shape), where=predicted > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.einsum("ij,ij->i", positives, precision) / true_positives[:, -1])


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(weights @ values / weights.sum(axis=1))


def _brier(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _weighted_mean((np.clip(scores, _EPS, 1 - _EPS) - y) ** 2, weights)


def _log_loss(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Binary on P(positive); multiclass (scores of shape (n, k)) on the probability of each row's own class,
    the rows renormalised after clipping (as sklearn's log_loss)."""
    if scores.ndim == 2:
        p = np.clip(scores, _EPS, 1 - _EPS)
        p = p / p.sum(axis=1, keepdims=True)
        return _weighted_mean(-np.log(p[np.arange(len(y)), y.astype(int)]), weights)
    p = np.clip(scores, _EPS, 1 - _EPS)
    return _weighted_mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)), weights)


# ---- multiclass: per-class counts of each resample, from one (b, n) x (n, k) product each -------------------
def _class_counts(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Weighted (true positives, predicted, actual) per class, each of shape (b, k); predicted = argmax."""
    k = scores.shape[1]
    truth = np.eye(k)[y.astype(int)]
    picked = np.eye(k)[scores.argmax(axis=1)]
    return weights @ (truth * picked), weights @ picked, weights @ truth


def _macro_f1(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """F1 per class averaged over every class (a class neither true nor predicted in a resample scores 0, as
    sklearn's f1_score with labels=classes and zero_division=0)."""
    hits, predicted, actual = _class_counts(y, scores, weights)
    both = predicted + actual
    f1 = np.divide(2 * hits, both, out=np.zeros_like(hits), where=both > 0)
    return np.asarray(f1.mean(axis=1))


def _balanced_accuracy(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Recall averaged over the classes present in the resample (sklearn's balanced_accuracy_score)."""
    hits, _, actual = _class_counts(y, scores, weights)
    present = actual > 0
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=present)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(recall.sum(axis=1) / present.sum(axis=1))


# ---- regression: weighted sums of the errors ----------------------------------------------------------------
def _rmse(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.sqrt(_weighted_mean((scores - y) ** 2, weights))


def _mae(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _weighted_mean(np.abs(scores - y), weights)


def _r2(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """1 - SSE / SST with the resample's own target mean: sum w (y - mean_w)^2 = sum w y^2 - (sum w y)^2 / sum w."""
    total = weights.sum(axis=1)
    sse = weights @ ((scores - y) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        sst = weights @ (y**2) - (weights @ y) ** 2 / total
        return np.asarray(np.where(sst > 1e-12 * np.maximum(total, 1), 1 - sse / sst, np.nan))


METRICS: dict[str, Metric] = {
    "roc_auc": Metric("roc_auc", True, _roc_auc),
    "pr_auc": Metric("pr_auc", True, _average_precision),
    "brier": Metric("brier", False, _brier),
    "log_loss": Metric("log_loss", False, _log_loss),
    "macro_f1": Metric("macro_f1", True, _macro_f1),
    "balanced_accuracy": Metric("balanced_accuracy", True, _balanced_accuracy),
    "rmse": Metric("rmse", False, _rmse),
    "mae": Metric("mae", False, _mae),
    "r2": Metric("r2", True, _r2),
}


def metric(name: str) -> Metric:
    if name not in METRICS:
        raise ValueError(f"metric {name!r} has no bootstrap implementation (known: {sorted(METRICS)})")
    return METRICS[name]


def resample_counts(n: int, resamples: int, seed: int, chunk: int = 100) -> Iterator[np.ndarray]:
    """Bootstrap resamples of n rows as count matrices (chunk x n, float), `chunk` resamples at a time so memory
    stays at a few chunk x n arrays whatever the number of resamples. Same (n, resamples, seed): same counts."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < resamples:
        b = min(chunk, resamples - done)
        drawn = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        yield np.bincount(drawn.ravel(), minlength=b * n).reshape(b, n)
        done += b


@dataclass(frozen=True)
class Interval:
    """A point estimate on the full test set and its percentile bootstrap interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    resamples: int
    undefined: int = 0  # resamples where the metric was undefined (one class drawn), left out of the interval

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}

    def text(self, signed: bool = False) -> str:
        fmt = "{:+.4f}" if signed else "{:.4f}"
        bounds = f"[{fmt.format(self.low)}, {fmt.format(self.high)}]"
        return f"{fmt.format(self.estimate)}, {self.confidence:.0%} CI {bounds}"


def interval(estimate: float, distribution: np.ndarray, confidence: float) -> Interval:
    defined = distribution[np.isfinite(distribution)]
    if len(defined) == 0:
        nan = float("nan")
        return Interval(float(estimate), nan, nan, confidence, len(distribution), len(distribution))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return Interval(
        float(estimate), float(low), float(high), confidence, len(distribution), len(distribution) - len(defined)
    )


@dataclass(frozen=True)
class BootstrapResult:
    """Per model and metric: the full-set value and the resampled values (the same resamples for every model)."""

    estimates: dict[str, dict[str, float]]
    distributions: dict[str, dict[str, np.ndarray]]
    confidence: float

    def interval(self, model: str, metric_name: str) -> Interval:
        return interval(self.estimates[model][metric_name], self.distributions[model][metric_name], self.confidence)

    def gain(self, challenger: str, champion: str, metric_name: str) -> Interval:
        """Challenger minus champion, signed so that positive is better (champion - challenger for a loss)."""
        sign = 1.0 if metric(metric_name).higher_is_better else -1.0
        estimate = sign * (self.estimates[challenger][metric_name] - self.estimates[champion][metric_name])
        paired = sign * (self.distributions[challenger][metric_name] - self.distributions[champion][metric_name])
        return interval(estimate, paired, self.confidence)


def bootstrap(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    metric_names: Sequence[str],
    resamples: int,
    confidence: float,
    seed: int,
) -> BootstrapResult:
    """Every metric of every model on the same `resamples` resamples of the rows (paired)."""
    labels = np.asarray(y).astype(float)
    arrays = {model: np.asarray(s, dtype=float) for model, s in scores.items()}
    for model, s in arrays.items():
        if s.shape[0] != labels.shape[0]:
            raise ValueError(f"scores of {model!r}: {s.shape[0]} rows, labels: {labels.shape[0]} rows")
    metrics = [metric(name) for name in metric_names]
    ones = np.ones((1, len(labels)))
    estimates = {m: {k.name: float(k.weighted(labels, s, ones)[0]) for k in metrics} for m, s in arrays.items()}
    parts: dict[str, dict[str, list[np.ndarray]]] = {m: {k.name: [] for k in metrics} for m in arrays}
    for counts in resample_counts(len(labels), resamples, seed):
        for model, s in arrays.items():
            for k in metrics:
                parts[model][k.name].append(k.weighted(labels, s, counts))
    distributions = {m: {k: np.concatenate(v) for k, v in by.items()} for m, by in parts.items()}
    return BootstrapResult(estimates, distributions, confidence)
