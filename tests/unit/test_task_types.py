"""conveyor/domain/task_types.py: label coercion per task (with errors naming the rule and count), output columns
and metrics, and the task a version records."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor

from conveyor.domain.task_types import InvalidLabels, ModelTask

BINARY = ModelTask("binary", ("0", "1"))


@pytest.mark.parametrize(
    "values",
    [[1, 0, 1], [1.0, 0.0, 1.0], [True, False, True], ["1", "0", "1"]],
    ids=["ints", "floats", "bools", "text digits"],
)
def test_a_binary_target_of_ints_floats_or_bools_becomes_0_1(values: list[object]) -> None:
    assert BINARY.coerce_labels(pd.Series(values), "label 'y'").tolist() == [1, 0, 1]


def test_a_binary_target_outside_0_1_is_refused_naming_the_rule_and_count() -> None:
    with pytest.raises(InvalidLabels, match=r"label 'y': 2 of 4 values break rule '0 or 1.*\['0.5', '2.0'\]"):
        BINARY.coerce_labels(pd.Series([0, 1, 2, 0.5]), "label 'y'")


def test_named_binary_classes_need_the_positive_class_and_one_other() -> None:
    task = ModelTask("binary", positive_class="churned").with_classes_from(pd.Series(["stayed", "churned"]))
    assert task.classes == ("stayed", "churned")
    assert task.coerce_labels(pd.Series(["churned", "stayed", "churned"]), "y").tolist() == [1, 0, 1]
    with pytest.raises(InvalidLabels, match="two classes, positive_class 'churned'"):
        task.coerce_labels(pd.Series(["churned", "stayed", "left"]), "y")


def test_missing_targets_are_refused_with_their_count() -> None:
    with pytest.raises(InvalidLabels, match="1 of 3 values are missing"):
        ModelTask("regression").coerce_labels(pd.Series([1.0, None, 2.0]), "label 'price'")


def test_a_regression_target_must_be_finite_numbers() -> None:
    assert ModelTask("regression").coerce_labels(pd.Series(["1.5", 2]), "y").tolist() == [1.5, 2.0]
    with pytest.raises(InvalidLabels, match="1 of 3 values break rule 'a finite number'.*abc"):
        ModelTask("regression").coerce_labels(pd.Series([1.0, "abc", 3]), "y")


def test_multiclass_labels_are_text_and_integral_floats_match_ints() -> None:
    task = ModelTask("multiclass").with_classes_from(pd.Series([2.0, 1.0, 3.0]))
    assert task.classes == ("1", "2", "3")
    assert task.coerce_labels(pd.Series([3, 1]), "y").tolist() == ["3", "1"]
    declared = ModelTask("multiclass", ("gold", "silver", "bronze"))
    with pytest.raises(InvalidLabels, match="1 of 2 values break rule 'one of the declared classes"):
        declared.coerce_labels(pd.Series(["gold", "platinum"]), "y")


def test_outputs_and_metrics_per_task() -> None:
    x = pd.DataFrame({"f": np.arange(6.0)})
    y_multi = pd.Series(["a", "b", "c", "a", "b", "c"])
    multi = ModelTask("multiclass", ("a", "b", "c"))
    out = multi.outputs(DummyClassifier(strategy="prior").fit(x, y_multi), x)
    assert list(out.columns) == ["proba_a", "proba_b", "proba_c", "predicted_class"] == multi.output_columns
    metrics = multi.metrics(y_multi, out)
    assert metrics["balanced_accuracy"] == pytest.approx(1 / 3) and metrics["recall_a"] == 1.0

    y_reg = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    reg = ModelTask("regression")
    out = reg.outputs(DummyRegressor().fit(x, y_reg), x)
    assert list(out.columns) == ["prediction"]
    assert reg.metrics(y_reg, out)["r2"] == pytest.approx(0.0) and not reg.higher_is_better

    y_bin = pd.Series([0, 1, 0, 1, 1, 1])
    out = BINARY.outputs(DummyClassifier(strategy="prior").fit(x, y_bin), x, threshold=0.5)
    assert out["decision"].all() and BINARY.metrics(y_bin, out)["roc_auc"] == 0.5


def test_a_version_records_its_task_and_old_versions_are_binary() -> None:
    task = ModelTask("multiclass", ("gold", "silver"))
    assert ModelTask.from_json(task.to_json()) == task
    assert ModelTask.from_json(None) == BINARY
