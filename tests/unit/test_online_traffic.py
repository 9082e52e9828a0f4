"""conveyor/services/online_traffic._outputs: the prediction log's answers as the task's prediction columns."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conveyor.domain.task_types import ModelTask
from conveyor.services.online_traffic import _outputs


def test_multiclass_answers_become_one_probability_column_per_class_in_the_versions_order() -> None:
    task = ModelTask("multiclass", ("basic", "premium", "standard"))
    answered = pd.DataFrame(
        {
            "probabilities": [json.dumps({"standard": 0.2, "basic": 0.7, "premium": 0.1})],
            "predicted_class": ["basic"],
            "score": [None],
        }
    )
    out = _outputs(answered, task)
    assert list(out.columns) == ["proba_basic", "proba_premium", "proba_standard", "predicted_class"]
    assert out.iloc[0].tolist() == [0.7, 0.1, 0.2, "basic"]


@pytest.mark.parametrize(("kind", "column"), [("binary", "score"), ("regression", "prediction")])
def test_binary_and_regression_answers_keep_their_column(kind: str, column: str) -> None:
    task = ModelTask(kind, ("0", "1") if kind == "binary" else ())  # type: ignore[arg-type]
    answered = pd.DataFrame({"score": [0.25], "prediction": [12.5], "predicted_class": [None]})
    assert _outputs(answered, task).columns.tolist() == [column]
    assert _outputs(answered, task)[column].iloc[0] == (0.25 if kind == "binary" else 12.5)
