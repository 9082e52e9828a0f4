"""What the evaluation gates need to know about a task (`ModelTask`): the metrics they bootstrap and compare, the
absolute bounds per task, what a model's "scores" are for the bootstrap, and how far two outputs are apart.

    y, scores = bootstrap_inputs(task, labels, outputs)   # binary P(positive) | probability matrix | prediction
    bounds = absolute_bounds(task, gates)                 # [(metric, bound, ">=" | "<=", config key)]

The absolute bounds per task are chosen so that a model that learned nothing fails them: binary ROC AUC / PR AUC
floors and a Brier ceiling (gates.min_roc_auc, min_pr_auc, max_brier); multiclass balanced accuracy above chance,
1/k + gates.min_balanced_accuracy_lift; regression R2 above gates.min_r2 (0: better than predicting the mean). Any
other metric of the task can be bounded with gates.floors, its direction taken from task_types.METRICS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from configs.settings import GatesConfig
from conveyor.domain.failures import InvalidInput
from conveyor.domain.task_types import METRICS, PREDICTION, SCORE, ModelTask, TaskKind

# The metrics each task's gates bootstrap: the floors read them and the champion comparison compares them all
# (the primary metric decides, every other one can refuse as "worse").
GATED_METRICS: dict[TaskKind, tuple[str, ...]] = {
    "binary": ("roc_auc", "pr_auc", "brier"),
    "multiclass": ("macro_f1", "balanced_accuracy", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}

Bound = tuple[str, float, str, str]  # metric, bound, ">=" (lower bound checked) or "<=" (upper bound), config key


def absolute_bounds(task: ModelTask, gates: GatesConfig) -> list[Bound]:
    """The absolute bounds the test intervals must clear for this task (see the module docstring)."""
    if task.kind == "binary":
        found: list[Bound] = [
            ("roc_auc", gates.min_roc_auc, ">=", "gates.min_roc_auc"),
            ("pr_auc", gates.min_pr_auc, ">=", "gates.min_pr_auc"),
            ("brier", gates.max_brier, "<=", "gates.max_brier"),
        ]
    elif task.kind == "multiclass":
        chance = 1.0 / max(len(task.classes), 1)
        floor = round(chance + gates.min_balanced_accuracy_lift, 6)
        found = [("balanced_accuracy", floor, ">=", "1/classes + gates.min_balanced_accuracy_lift")]
    else:
        found = [("r2", gates.min_r2, ">=", "gates.min_r2")]
    unknown = sorted(set(gates.floors) - set(task.metric_names))
    if unknown:
        raise InvalidInput(
            f"gates.floors {unknown}: not metrics of task {task.kind} (its metrics: {list(task.metric_names)})"
        )
    for name, bound in gates.floors.items():
        op = ">=" if METRICS[name].higher_is_better else "<="
        found = [b for b in found if b[0] != name] + [(name, bound, op, f"gates.floors.{name}")]
    return found


def bootstrap_metrics(task: ModelTask, gates: GatesConfig) -> tuple[str, ...]:
    """The task's gated metrics plus any metric a floor names."""
    extra = tuple(m for m in gates.floors if m not in GATED_METRICS[task.kind])
    return GATED_METRICS[task.kind] + extra


def bootstrap_inputs(task: ModelTask, labels: Any, outputs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(targets, scores) as the bootstrap takes them: binary 0/1 and P(positive); multiclass the class index
    (in `task.classes` order) and the probability matrix; regression the target and the prediction."""
    if task.kind == "regression":
        return np.asarray(labels, dtype=float), outputs[PREDICTION].to_numpy(dtype=float)
    if task.kind == "binary":
        return np.asarray(labels).astype(int), outputs[SCORE].to_numpy(dtype=float)
    codes = pd.Categorical(np.asarray(labels).astype(str), categories=list(task.classes)).codes
    if (codes < 0).any():
        raise InvalidInput(f"{int((codes < 0).sum())} test labels are not among the model's classes {task.classes}")
    return codes.astype(int), task.probabilities(outputs)


def output_shift(task: ModelTask, target_std: float = 1.0) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Per row, how far two outputs of the same row are apart: |score change| (binary), the total-variation
    distance of the probability vectors, half the L1 distance (multiclass), |prediction change| in units of the
    target's std (regression), so one max_invariance_shift reads the same whatever the target's scale."""
    if task.kind == "multiclass":
        return lambda a, b: 0.5 * np.abs(np.asarray(a) - np.asarray(b)).sum(axis=1)
    scale = 1.0 if task.kind == "binary" or not target_std > 0 else float(target_std)
    return lambda a, b: np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)) / scale
