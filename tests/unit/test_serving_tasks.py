"""The online service's per-task pieces without servers: a served version's outputs and warm-up check follow its
recorded task (a version whose reference outputs it does not reproduce is refused, naming the columns), and an
answer carries exactly its task's output fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from conveyor.adapters.registry_records import LoadedModel, ModelVersion
from conveyor.domain.task_types import ModelTask
from conveyor.serving.predictor import Answer
from conveyor.serving.runtime import ModelLoadRefused, load_served_model

FEATURES = ["x1", "x2"]
MULTICLASS = ModelTask("multiclass", ("a", "b", "c"))


def _version(task: ModelTask) -> ModelVersion:
    return ModelVersion(
        metrics={},
        gates={"passed": True},
        training_window={},
        feature_service="svc",
        feature_names=FEATURES,
        data_fingerprint="x",
        params={},
        task=task.to_json(),
        model_name="m",
        version=4,
        created_at="",
        artifact_key="",
        sha256="",
        reference_key="",
        reference_sha256="",
        files={},
        code_version=None,
        library_versions={},
        registered_by="test",
    )


@dataclass
class _Registry:
    """The two registry reads `load_served_model` makes."""

    model: Any
    reference: pd.DataFrame

    def load_version(self, meta: ModelVersion) -> LoadedModel:
        return LoadedModel(meta, self.model)

    def reference_of(self, meta: ModelVersion) -> pd.DataFrame:
        return self.reference


def _rows(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(n, 2)), columns=FEATURES)


def test_a_regression_version_is_served_and_warmed_on_its_predictions() -> None:
    rows = _rows()
    model = LinearRegression().fit(rows, rows["x1"] * 1000 + 5)
    task = ModelTask("regression")
    reference = rows.assign(prediction=model.predict(rows))
    served = load_served_model(_Registry(model, reference), _version(task), "sklearn", 100, "svc")  # type: ignore[arg-type]
    assert served.task == task
    outputs = served.outputs(rows.head(3), 0.5)
    assert list(outputs.columns) == ["prediction"] and outputs["prediction"].tolist() == pytest.approx(
        model.predict(rows.head(3)).tolist()
    )
    wrong = reference.assign(prediction=reference["prediction"] + 0.5)  # recorded outputs it does not reproduce
    with pytest.raises(ModelLoadRefused, match=r"sklearn outputs \['prediction'\] differ .* by up to 0\.5") as caught:
        load_served_model(_Registry(model, wrong), _version(task), "sklearn", 100, "svc")  # type: ignore[arg-type]
    assert caught.value.permanent  # the same artifact would fail the same way: not retried
    with pytest.raises(ModelLoadRefused, match=r"KeyError"):  # a reference without the task's columns
        load_served_model(_Registry(model, rows), _version(task), "sklearn", 100, "svc")  # type: ignore[arg-type]


def test_a_multiclass_version_answers_probabilities_and_the_class() -> None:
    rows = _rows()
    labels = np.where(rows["x1"] > 0.5, "c", np.where(rows["x2"] > 0, "b", "a"))
    model = LogisticRegression().fit(rows, labels)
    reference = pd.concat([rows, MULTICLASS.outputs(model, rows)], axis=1)
    served = load_served_model(_Registry(model, reference), _version(MULTICLASS), "sklearn", 100, "svc")  # type: ignore[arg-type]
    output = served.outputs(rows.head(1), 0.5).to_dict("records")[0]
    answer = Answer("scored", entity_id=1)
    answer.fill(served, "champion", output)
    assert answer.task == "multiclass" and answer.model_version == 4 and answer.arm == "champion"
    assert list(answer.probabilities or {}) == ["a", "b", "c"]
    assert sum((answer.probabilities or {}).values()) == pytest.approx(1.0)
    assert answer.predicted_class == model.predict(rows.head(1))[0]
    assert answer.score is None and answer.decision is None and answer.prediction is None


def test_a_binary_answer_is_unchanged() -> None:
    rows = _rows()
    task = ModelTask("binary", ("0", "1"))
    model = LogisticRegression().fit(rows, (rows["x1"] > 0).astype(int))
    reference = rows.assign(score=model.predict_proba(rows)[:, 1])
    served = load_served_model(_Registry(model, reference), _version(task), "sklearn", 100, "svc")  # type: ignore[arg-type]
    output = served.outputs(rows.head(1), 0.5).to_dict("records")[0]
    answer = Answer("scored")
    answer.fill(served, "challenger", output)
    assert answer.score == pytest.approx(model.predict_proba(rows.head(1))[0, 1])
    assert answer.decision == (answer.score >= 0.5) and answer.probabilities is None and answer.prediction is None
