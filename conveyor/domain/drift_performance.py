"""Realized performance once labels arrive: the champion's task's primary metric on a labelled past window vs the
same metric on its test set, and whether it decayed (`drift.max_metric_drop`).

The direction and the unit of the drop follow the metric (`ModelTask.primary_metric`, `higher_is_better`):
- a bounded, higher-is-better metric (binary ROC AUC, multiclass macro F1, regression R2): an ABSOLUTE drop,
  decayed when value < test - max_metric_drop (binary as before: ROC AUC 0.05 below test);
- a lower-is-better error in the target's unit (regression RMSE): a RELATIVE rise, decayed when
  value > test x (1 + max_metric_drop), so one setting holds whatever the target's scale.

Pure numpy/scikit-learn; no I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from conveyor.domain.task_types import METRICS, ModelTask


@dataclass(frozen=True)
class PerformanceCheck:
    """The task's primary metric on a past window whose labels have arrived, vs its test value. Binary versions
    also fill the ROC AUC fields (and accuracy / F1, realized and estimated) they always had."""

    window_start: str
    window_end: str
    rows: int
    roc_auc: float | None  # binary; None for the other tasks
    expected_roc_auc: float | None
    max_drop: float
    decayed: bool
    # Side by side with the realized figures: the same rows' performance estimated from their scores alone.
    accuracy: float | None = None
    f1: float | None = None
    estimated_roc_auc: float | None = None
    estimated_accuracy: float | None = None
    estimated_f1: float | None = None
    task: str = "binary"
    metric: str = "roc_auc"  # the task's primary metric
    value: float | None = None  # realized on the window
    expected: float | None = None  # on the test set at registration
    higher_is_better: bool = True
    change: str = "absolute drop"  # how max_drop is measured (see the module docstring)
    metrics: dict[str, float] = field(default_factory=dict)  # every metric of the task on the window

    def describe(self) -> str:
        """The decay in words, naming the rule."""
        assert self.value is not None and self.expected is not None
        if self.higher_is_better:
            rule = f"< test {self.expected:.4g} - drift.max_metric_drop {self.max_drop}"
        else:
            rule = f"> test {self.expected:.4g} x (1 + drift.max_metric_drop {self.max_drop})"
        return (
            f"performance decay on {self.window_start}..{self.window_end} ({self.rows} labelled rows): "
            f"{self.metric} {self.value:.4g} {rule}"
        )


def decayed(value: float, expected: float, higher_is_better: bool, max_drop: float) -> bool:
    """Higher-is-better: an absolute drop beyond `max_drop`; lower-is-better: a relative rise beyond it."""
    if higher_is_better:
        return value < expected - max_drop
    return value > expected * (1 + max_drop)


def performance_check(
    labels: np.ndarray,
    scores: np.ndarray,
    expected_roc_auc: float,
    max_drop: float,
    window_start: dt.date,
    window_end: dt.date,
) -> PerformanceCheck | None:
    """Binary: ROC AUC on a labelled past window vs the test ROC AUC; None when the labels hold a single class."""
    task = ModelTask("binary", ("0", "1"))
    outputs = task.outputs_from_proba(np.column_stack([1 - np.asarray(scores), np.asarray(scores)]))
    return task_performance_check(
        task, np.asarray(labels), outputs, expected_roc_auc, max_drop, window_start, window_end
    )


def task_performance_check(
    task: ModelTask,
    labels: np.ndarray | pd.Series,
    outputs: pd.DataFrame,
    expected: float | None,
    max_drop: float,
    window_start: dt.date,
    window_end: dt.date,
) -> PerformanceCheck | None:
    """The task's primary metric on the window's coerced labels and the model's outputs (`ModelTask.outputs`)
    vs `expected` (its test value); None without a test value or when the metric is undefined on the window
    (binary labels of one class)."""
    if expected is None or not np.isfinite(expected):
        return None
    metrics = task.metrics(labels, outputs)
    metric = task.primary_metric
    value = metrics.get(metric, float("nan"))
    if not np.isfinite(value):
        return None
    higher = METRICS[metric].higher_is_better
    binary = task.kind == "binary"
    return PerformanceCheck(
        window_start=window_start.isoformat(),
        window_end=window_end.isoformat(),
        rows=len(outputs),
        roc_auc=value if binary else None,
        expected_roc_auc=expected if binary else None,
        max_drop=max_drop,
        decayed=decayed(value, expected, higher, max_drop),
        task=task.kind,
        metric=metric,
        value=value,
        expected=expected,
        higher_is_better=higher,
        change="absolute drop" if higher else "relative rise",
        metrics={k: float(v) for k, v in metrics.items()},
    )
