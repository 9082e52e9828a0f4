"""The vectorized bootstrap: each weighted metric equals scikit-learn's with the same sample weights, resamples are
seeded, and the paired interval of a difference covers the true difference about as often as it claims."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)

from conveyor.domain import bootstrap as B

SKLEARN = {
    "roc_auc": lambda y, p, w: roc_auc_score(y, p, sample_weight=w),
    "pr_auc": lambda y, p, w: average_precision_score(y, p, sample_weight=w),
    "brier": lambda y, p, w: brier_score_loss(y, np.clip(p, 1e-7, 1 - 1e-7), sample_weight=w),
    "log_loss": lambda y, p, w: log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), sample_weight=w),
}


@pytest.mark.parametrize("name", sorted(SKLEARN))
@pytest.mark.parametrize("ties", [False, True])
def test_weighted_metrics_equal_sklearn_with_sample_weights(name: str, ties: bool) -> None:
    rng = np.random.default_rng(1)
    n = 3000
    y = rng.integers(0, 2, n)
    scores = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)
    if ties:
        scores = np.round(scores, 2)  # runs of equal scores: a tie counts one half in ROC AUC
    weights = rng.integers(0, 4, size=(5, n)).astype(float)  # counts as a resample gives them, zeros included
    got = B.metric(name).weighted(y, scores, weights)
    expected = [SKLEARN[name](y, scores, w) for w in weights]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_resamples_are_seeded_and_draw_n_rows_each() -> None:
    first = np.concatenate(list(B.resample_counts(500, 250, seed=3)))
    again = np.concatenate(list(B.resample_counts(500, 250, seed=3, chunk=7)))  # chunking changes nothing
    other = np.concatenate(list(B.resample_counts(500, 250, seed=4)))
    assert first.shape == (250, 500) and (first.sum(axis=1) == 500).all()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_bootstrap_reports_point_estimates_on_the_full_rows_and_pairs_the_models() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 2000)
    a = y + rng.normal(0, 1, 2000)
    result = B.bootstrap(y, {"a": a, "b": a.copy()}, ["roc_auc", "brier"], 300, 0.9, seed=0)
    assert result.estimates["a"]["roc_auc"] == pytest.approx(roc_auc_score(y, a))
    same = result.gain("a", "b", "roc_auc")  # identical models on identical resamples: exactly zero
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    single = result.interval("a", "roc_auc")
    assert single.low < single.estimate < single.high and single.resamples == 300


def test_a_resample_with_one_class_is_left_out_and_counted() -> None:
    y = np.array([1] + [0] * 9)  # one positive: many resamples draw none of it
    result = B.bootstrap(y, {"m": np.linspace(0, 1, 10)}, ["roc_auc"], 200, 0.95, seed=0)
    ci = result.interval("m", "roc_auc")
    assert 0 < ci.undefined < 200 and np.isfinite(ci.low)


def test_unknown_metric_and_mismatched_rows_are_named() -> None:
    with pytest.raises(ValueError, match="metric 'f1' has no bootstrap implementation"):
        B.metric("f1")
    with pytest.raises(ValueError, match="scores of 'm': 3 rows, labels: 4 rows"):
        B.bootstrap(np.array([0, 1, 0, 1]), {"m": np.zeros(3)}, ["roc_auc"], 100, 0.9, seed=0)


def _binormal(
    rng: np.random.Generator, n: int, noise: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores = 1.2 * label + shared N(0, 1) + own N(0, noise_k^2): class-conditional normals whose ROC AUC is known,
    Phi(1.2 / sqrt(2 (1 + noise_k^2))), and whose errors are correlated (as a challenger's and a champion's are)."""
    y = (rng.random(n) < 0.3).astype(int)
    shared = 1.2 * y + rng.normal(0, 1, n)
    return y, shared + rng.normal(0, noise[0], n), shared + rng.normal(0, noise[1], n)


def test_paired_interval_covers_the_known_difference_about_as_often_as_claimed() -> None:
    noise = (0.5, 0.8)
    true_gain = float(np.diff([norm.cdf(1.2 / np.sqrt(2 * (1 + s**2))) for s in noise[::-1]])[0])
    rng = np.random.default_rng(11)
    trials, covered = 100, 0
    for trial in range(trials):
        y, challenger, champion = _binormal(rng, 2000, noise)
        result = B.bootstrap(y, {"new": challenger, "old": champion}, ["roc_auc"], 400, 0.90, seed=trial)
        gain = result.gain("new", "old", "roc_auc")
        covered += gain.low <= true_gain <= gain.high
    assert true_gain > 0.02  # the challenger really is better: the interval must find it and cover the size
    assert 0.82 <= covered / trials <= 0.97, f"90% intervals covered the true gain in {covered} of {trials} trials"


def _multiclass(n: int = 2000, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


MULTICLASS_SKLEARN = {
    "macro_f1": lambda y, p, w: f1_score(y, p.argmax(axis=1), average="macro", labels=[0, 1, 2], sample_weight=w),
    "balanced_accuracy": lambda y, p, w: balanced_accuracy_score(y, p.argmax(axis=1), sample_weight=w),
    "log_loss": lambda y, p, w: log_loss(y, p, labels=[0, 1, 2], sample_weight=w),
}
REGRESSION_SKLEARN = {
    "rmse": lambda y, p, w: np.sqrt(mean_squared_error(y, p, sample_weight=w)),
    "mae": lambda y, p, w: mean_absolute_error(y, p, sample_weight=w),
    "r2": lambda y, p, w: r2_score(y, p, sample_weight=w),
}


@pytest.mark.parametrize("name", sorted(MULTICLASS_SKLEARN))
def test_multiclass_weighted_metrics_equal_sklearn(name: str) -> None:
    y, proba = _multiclass()
    weights = np.random.default_rng(6).integers(0, 4, size=(5, len(y))).astype(float)
    got = B.metric(name).weighted(y.astype(float), proba, weights)
    expected = [MULTICLASS_SKLEARN[name](y, proba, w) for w in weights]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(REGRESSION_SKLEARN))
def test_regression_weighted_metrics_equal_sklearn(name: str) -> None:
    rng = np.random.default_rng(7)
    y = rng.normal(50, 10, 3000)
    predicted = y + rng.normal(0, 4, 3000)
    weights = rng.integers(0, 4, size=(5, 3000)).astype(float)
    got = B.metric(name).weighted(y, predicted, weights)
    expected = [REGRESSION_SKLEARN[name](y, predicted, w) for w in weights]
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_a_loss_gain_is_positive_when_the_challenger_has_the_smaller_error() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(0, 1, 2000)
    good, bad = y + rng.normal(0, 0.3, 2000), y + rng.normal(0, 0.6, 2000)
    result = B.bootstrap(y, {"challenger": good, "champion": bad}, ["rmse", "r2"], 300, 0.95, seed=0)
    assert result.gain("challenger", "champion", "rmse").low > 0  # lower rmse = better = positive gain
    assert result.gain("challenger", "champion", "r2").low > 0
    assert result.gain("champion", "challenger", "rmse").high < 0


def test_a_multiclass_bootstrap_takes_the_probability_matrix() -> None:
    y, proba = _multiclass(600)
    result = B.bootstrap(y, {"m": proba}, ["macro_f1", "balanced_accuracy", "log_loss"], 200, 0.9, seed=0)
    ci = result.interval("m", "macro_f1")
    assert ci.low < ci.estimate < ci.high
    assert ci.estimate == pytest.approx(f1_score(y, proba.argmax(axis=1), average="macro"))
