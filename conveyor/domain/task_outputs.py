"""What the consumers of a registered version (scoring, the twin, serving, monitoring) need from its recorded task
beyond `conveyor.domain.task_types`: the prediction columns a reference sample carries and drift watches, and
the checks that a model, its recorded task and its reference sample fit together before it is registered.

    prediction_columns(task)    binary [score]; multiclass [proba_<class>..., predicted_class]; regression [prediction]
    check_registration(model, task, reference)    InvalidInput naming the column and rule when they do not fit
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from conveyor.domain.failures import InvalidInput
from conveyor.domain.task_types import DECISION, PREDICTED_CLASS, ModelTask


def prediction_columns(task: ModelTask) -> list[str]:
    """The task's outputs that a reference sample records and prediction drift compares (the decision is derived
    from the score and today's threshold, so it is not among them)."""
    return [c for c in task.output_columns if c != DECISION]


def numeric_prediction_columns(task: ModelTask) -> list[str]:
    """The numeric ones: score, class probabilities, prediction."""
    return [c for c in prediction_columns(task) if c != PREDICTED_CLASS]


def check_registration(model: Any, task: ModelTask, reference: pd.DataFrame) -> None:
    """A version is registered only when its model can produce its task's outputs and its reference sample
    records them: a regression task with a classifier, or a multiclass task whose classes are not the model's
    column order, would publish outputs under the wrong names."""
    is_classifier = hasattr(model, "predict_proba")
    if task.is_classification != is_classifier:
        raise InvalidInput(
            f"task {task.kind!r}: the model is a {'classifier' if is_classifier else 'regressor'} "
            f"(rule: binary and multiclass need predict_proba, regression needs predict without it)"
        )
    if task.kind == "multiclass":
        learned = [str(c) for c in getattr(model, "classes_", [])]
        if learned != list(task.classes):
            raise InvalidInput(
                f"task 'multiclass': recorded classes {list(task.classes)} differ from the model's "
                f"classes_ {learned} (rule: the task's classes are the model's probability columns, in order)"
            )
    missing = [c for c in prediction_columns(task) if c not in reference.columns]
    if missing:
        raise InvalidInput(
            f"reference sample lacks column(s) {missing}: a {task.kind} version's reference records the model's "
            f"outputs on those rows ({prediction_columns(task)})"
        )
    numeric = numeric_prediction_columns(task)
    bad = int((~np.isfinite(reference[numeric].to_numpy(dtype="float64"))).sum()) if len(reference) else 0
    if bad:
        raise InvalidInput(f"reference sample: {bad} non-finite value(s) in {numeric} (rule: model outputs are finite)")
