"""What the model card reports beyond the gates, computed on the challenger's test set: a reliability table,
permutation importance and fairness by group (fairlearn), per task. Plain functions over arrays and frames,
JSON-ready. Targets and scores as the bootstrap takes them (task_gates.bootstrap_inputs)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.inspection import permutation_importance
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, make_scorer, roc_auc_score

from configs.settings import ModelCardConfig, SensitiveAttribute
from conveyor.domain.task_types import ModelTask

BINARY = ModelTask("binary", ("0", "1"))
# Permutation importance per task: the scorer and the metric whose drop (or, for a loss, rise) it reports.
IMPORTANCE_METRIC = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}
_SCORERS: dict[str, Any] = {
    "binary": "roc_auc",
    "multiclass": make_scorer(f1_score, average="macro", zero_division=0),
    "regression": "neg_root_mean_squared_error",  # importance = rise in RMSE when the feature is shuffled
}


def _rounded(value: Any, digits: int = 6) -> float | None:
    number = float(value)
    return None if not np.isfinite(number) else round(number, digits)


def calibration_table(y: np.ndarray, scores: np.ndarray, bins: int) -> dict[str, Any]:
    """Quantile bins of the score: mean predicted vs observed rate and rows per bin, and the expected calibration
    error (row-weighted mean |observed - predicted|)."""
    labels, p = np.asarray(y).astype(float), np.asarray(scores, dtype=float)
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    rows: list[dict[str, Any]] = []
    error = 0.0
    for b in range(len(edges) - 1):
        mask = which == b
        if mask.any():
            predicted, observed = float(p[mask].mean()), float(labels[mask].mean())
            error += int(mask.sum()) * abs(observed - predicted)
            rows.append(
                {
                    "bin": b + 1,
                    "rows": int(mask.sum()),
                    "mean_predicted": _rounded(predicted),
                    "observed_rate": _rounded(observed),
                }
            )
    ece = error / max(len(p), 1)
    return {"bins": rows, "expected_calibration_error": _rounded(ece), "strategy": "quantile"}


def importance_table(
    model: Any, features: pd.DataFrame, y: Any, cfg: ModelCardConfig, seed: int, task: ModelTask = BINARY
) -> list[dict[str, Any]]:
    """Permutation importance on test rows: how much the task's metric worsens when a feature's values are
    shuffled (ROC AUC / macro F1 drop, RMSE rise; mean and spread over `importance_repeats` shuffles), largest
    first. `y`: the training targets (0/1, class names, numbers). Measures what the model relies on, not causes."""
    labels = (
        np.asarray(y) if task.kind == "multiclass" else np.asarray(y).astype(int if task.is_classification else float)
    )
    if len(features) > cfg.importance_max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(features), cfg.importance_max_rows, replace=False))
        features, labels = features.iloc[rows], labels[rows]
    result = permutation_importance(
        model,
        features,
        labels,
        scoring=_SCORERS[task.kind],
        n_repeats=cfg.importance_repeats,
        random_state=seed,
    )
    table = [
        {"feature": name, _importance_key(task): _rounded(mean), "std": _rounded(std)}
        for name, mean, std in zip(features.columns, result.importances_mean, result.importances_std, strict=True)
    ]
    return sorted(table, key=lambda r: -(r[_importance_key(task)] or 0.0))


def _importance_key(task: ModelTask) -> str:
    metric = IMPORTANCE_METRIC[task.kind]
    return f"{metric}_rise" if task.kind == "regression" else f"{metric}_drop"


def sensitive_groups(values: pd.Series, attribute: SensitiveAttribute) -> pd.Series:
    """The group of each row: the category, or the numeric bin (right-closed edges) as text."""
    if attribute.bins is None:
        return values.astype(str).where(values.notna(), "missing")
    binned = pd.cut(values.astype(float), bins=attribute.bins, include_lowest=True, labels=bin_labels(attribute.bins))
    return binned.astype(str).where(binned.notna(), "outside bins")


def bin_labels(edges: list[float]) -> list[str]:
    """'[18, 30]', '(30, 45]', ...: the first bin holds its lower edge too."""
    pairs = zip(edges[:-1], edges[1:], strict=True)
    return [f"{'[' if i == 0 else '('}{lo:g}, {hi:g}]" for i, (lo, hi) in enumerate(pairs)]


def _auc_or_nan(y: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(y, scores)) if len(np.unique(y)) == 2 else float("nan")


def fairness_table(
    y: np.ndarray,
    scores: np.ndarray,
    frame: pd.DataFrame,
    cfg: ModelCardConfig,
    attributes: list[SensitiveAttribute],
    threshold: float,
    task: ModelTask = BINARY,
) -> list[dict[str, Any]]:
    """Per sensitive attribute, fairlearn MetricFrame by group. Binary: the decision `score >= threshold`'s rates
    and the score's ROC AUC, plus the demographic parity and equalized odds differences (largest gap between
    groups); multiclass: accuracy and balanced accuracy by group; regression: MAE (and mean target and
    prediction) by group; both with the largest gap between groups."""
    if task.kind != "binary":
        return [_group_errors(y, scores, frame, cfg, task, attribute) for attribute in attributes]
    labels = np.asarray(y).astype(int)
    decisions = (np.asarray(scores) >= threshold).astype(int)
    return [
        _binary_fairness(labels, decisions, np.asarray(scores), frame, cfg, attribute, threshold)
        for attribute in attributes
    ]


def _binary_fairness(
    labels: np.ndarray,
    decisions: np.ndarray,
    scores: np.ndarray,
    frame: pd.DataFrame,
    cfg: ModelCardConfig,
    attribute: SensitiveAttribute,
    threshold: float,
) -> dict[str, Any]:
    """Binary fairness of one attribute: the decision's rates and the score's ROC AUC per group (MetricFrame),
    and the demographic parity and equalized odds differences of the decisions between groups."""
    groups = sensitive_groups(frame[attribute.feature].reset_index(drop=True), attribute)
    metrics: dict[str, Callable[..., Any]] = {
        "rows": count,
        "selection_rate": selection_rate,
        "true_positive_rate": true_positive_rate,
        "false_positive_rate": false_positive_rate,
    }
    by_group = MetricFrame(metrics=metrics, y_true=labels, y_pred=decisions, sensitive_features=groups).by_group
    auc = MetricFrame(metrics=_auc_or_nan, y_true=labels, y_pred=scores, sensitive_features=groups).by_group
    rows: list[dict[str, Any]] = [
        {
            "group": str(group),
            "rows": int(by_group.loc[group, "rows"]),
            "positive_rate": _rounded(labels[(groups == group).to_numpy()].mean()),
            "selection_rate": _rounded(by_group.loc[group, "selection_rate"]),
            "true_positive_rate": _rounded(by_group.loc[group, "true_positive_rate"]),
            "false_positive_rate": _rounded(by_group.loc[group, "false_positive_rate"]),
            "roc_auc": _rounded(auc.loc[group]),
        }
        for group in by_group.index
    ]
    _sort_in_bin_order(rows, attribute)
    return {
        "feature": attribute.feature,
        "bins": attribute.bins,
        "threshold": threshold,
        "groups": rows,
        "demographic_parity_difference": _rounded(
            demographic_parity_difference(labels, decisions, sensitive_features=groups)
        ),
        "equalized_odds_difference": _rounded(equalized_odds_difference(labels, decisions, sensitive_features=groups)),
        "small_groups": [r["group"] for r in rows if int(r["rows"]) < cfg.min_group_rows],
    }


def _sort_in_bin_order(rows: list[dict[str, Any]], attribute: SensitiveAttribute) -> None:
    """Groups of a binned attribute in bin order, not in the text order of their labels (in place)."""
    if attribute.bins is not None:
        order = bin_labels(attribute.bins)
        rows.sort(key=lambda r: order.index(r["group"]) if r["group"] in order else len(order))


def _quietly(metric: Callable[..., Any]) -> Callable[..., float]:
    """A metric on one group, NaN where undefined: a group may hold one class only (sklearn warns, tests fail)."""

    def measured(y_true: Any, y_pred: Any) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(metric(y_true, y_pred)) if len(y_true) else float("nan")

    measured.__name__ = getattr(metric, "__name__", "metric")
    return measured


def _mae(y_true: Any, y_pred: Any) -> float:
    return float(np.mean(np.abs(np.asarray(y_true) - np.asarray(y_pred))))


def _group_errors(
    y: np.ndarray,
    scores: np.ndarray,
    frame: pd.DataFrame,
    cfg: ModelCardConfig,
    task: ModelTask,
    attribute: SensitiveAttribute,
) -> dict[str, Any]:
    """Multiclass or regression fairness of one attribute: the task's error metrics per group (MetricFrame) and
    the largest difference between groups of the headline one (accuracy; MAE)."""
    groups = sensitive_groups(frame[attribute.feature].reset_index(drop=True), attribute)
    if task.kind == "multiclass":
        predicted = np.asarray(scores).argmax(axis=1)
        metrics = {
            "rows": count,
            "accuracy": _quietly(accuracy_score),
            "balanced_accuracy": _quietly(balanced_accuracy_score),
        }
        headline = "accuracy"
    else:
        predicted = np.asarray(scores, dtype=float)
        metrics = {
            "rows": count,
            "mae": _quietly(_mae),
            "mean_target": lambda t, p: float(np.mean(t)),
            "mean_prediction": lambda t, p: float(np.mean(p)),
        }
        headline = "mae"
    frame_by = MetricFrame(metrics=metrics, y_true=np.asarray(y), y_pred=predicted, sensitive_features=groups)
    by_group = frame_by.by_group
    rows: list[dict[str, Any]] = [
        {
            "group": str(group),
            **{k: (int(by_group.loc[group, k]) if k == "rows" else _rounded(by_group.loc[group, k])) for k in metrics},
        }
        for group in by_group.index
    ]
    _sort_in_bin_order(rows, attribute)
    return {
        "feature": attribute.feature,
        "bins": attribute.bins,
        "columns": list(metrics),
        "groups": rows,
        "gap": {"metric": headline, "difference": _rounded(frame_by.difference()[headline])},
        "small_groups": [r["group"] for r in rows if int(r["rows"]) < cfg.min_group_rows],
    }
