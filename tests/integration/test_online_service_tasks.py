"""The online service answers per the serving version's recorded task, over real HTTP (`LocalStack.up(("api",))`
on the session's S3 server, a real Feast online store, the ONNX twin runtime): a multiclass champion returns class
probabilities and the predicted class, a regression champion hot-swapped in returns its prediction, each equal to
the batch engine's published outputs for the same rows; metrics and the prediction log carry the task's outputs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import published_prefixes, read_published_parquet
from conveyor.adapters.registry import ModelRegistry
from conveyor.services.batch_inference import ModelRef, load_scoring_model
from conveyor.services.feature_sources import FrameSource
from conveyor.services.scoring import predictions_prefix, score_partition
from tests.integration.scoring_data import DAY, fit_task, register_task_model
from tests.integration.serving_helpers import online_population, running_service, service_env, settings_for, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "churn"  # the service's default model name


@dataclass
class Service:
    settings: Settings
    url: str
    frame: pd.DataFrame
    registry: ModelRegistry

    def predict(self, **body: object) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/v1/models/{MODEL}/predict", json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def ready(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/ready", timeout=10).json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def service(s3_server: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = service_env(s3_server, tmp_path_factory.mktemp("feast"), CONVEYOR_SCORING__RUNTIME="onnx")
    settings = settings_for(env)
    registry = ModelRegistry(ObjectStore(settings.storage), settings)
    champion = register_task_model(registry, MODEL, fit_task(settings, "multiclass"))
    registry.promote(MODEL, champion.version, actor="test", reason="multiclass champion")
    frame = online_population(settings)
    with running_service(env, settings) as url:
        yield Service(settings, url, frame, registry)


def _batch(service: Service, version: int, run_id: str) -> pd.DataFrame:
    settings, store = service.settings, service.registry.store
    model = load_scoring_model(store, settings, ModelRef(MODEL, version, settings.features.feature_service))
    score_partition(store, settings, FrameSource(service.frame), model, MODEL, DAY, run_id)
    published = read_published_parquet(store, predictions_prefix(settings, MODEL, DAY))
    return published.set_index(settings.dataset.entity_column)


def _answers(service: Service, ids: list[Any]) -> list[dict[str, Any]]:
    return [p for lo in range(0, len(ids), 100) for p in service.predict(entity_ids=ids[lo : lo + 100])["predictions"]]


def _logged(service: Service, request_id: str, rows: int) -> pd.DataFrame:
    store, root = service.registry.store, f"{service.settings.serving.log_prefix}/{MODEL}/"

    def find() -> tuple[pd.DataFrame] | None:
        frames = [read_published_parquet(store, p) for p in published_prefixes(store, root)]
        frame = pd.concat(frames) if frames else pd.DataFrame(columns=["request_id"])
        found = frame[frame["request_id"] == request_id]
        return (found,) if len(found) == rows else None

    return wait_for(find, what="the request in the prediction log")[0]  # type: ignore[no-any-return]


def test_multiclass_then_regression_answers_equal_the_batch_engine(service: Service) -> None:
    ds = service.settings.dataset
    ids = service.frame[ds.entity_column].tolist()
    champion = service.ready()["champion"]
    batch = _batch(service, champion, "multiclass").loc[ids]
    answers = _answers(service, ids)
    classes = ["bronze", "gold", "silver"]
    assert {p["task"] for p in answers} == {"multiclass"} and {p["status"] for p in answers} == {"scored"}
    assert all(p["score"] is None and p["decision"] is None and p["prediction"] is None for p in answers)
    assert all(list(p["probabilities"]) == classes for p in answers)
    proba = np.array([[p["probabilities"][c] for c in classes] for p in answers])
    np.testing.assert_allclose(proba, batch[[f"proba_{c}" for c in classes]].to_numpy(), rtol=0, atol=1e-6)
    assert [p["predicted_class"] for p in answers] == batch["predicted_class"].tolist()
    by_rows = service.predict(rows=service.frame[ds.feature_names].head(50).to_dict("records"))
    assert by_rows["task"] == "multiclass"
    assert [p["predicted_class"] for p in by_rows["predictions"]] == batch["predicted_class"].tolist()[:50]
    logged = _logged(service, by_rows["request_id"], 50)
    assert set(logged["task"]) == {"multiclass"} and logged["score"].isna().all()
    assert [json.loads(p) for p in logged["probabilities"]] == [p["probabilities"] for p in by_rows["predictions"]]

    regression = register_task_model(service.registry, MODEL, fit_task(service.settings, "regression"))
    service.registry.promote(MODEL, regression.version, actor="test", reason="regression champion")
    wait_for(lambda: service.ready()["champion"] == regression.version, what=f"v{regression.version} in service")
    batch = _batch(service, regression.version, "regression").loc[ids]
    answers = _answers(service, ids)
    assert {p["task"] for p in answers} == {"regression"} and {p["model_version"] for p in answers} == {
        regression.version
    }
    assert all(p["probabilities"] is None and p["score"] is None for p in answers)
    predicted = np.array([p["prediction"] for p in answers])
    np.testing.assert_allclose(predicted, batch["prediction"].to_numpy(), rtol=1e-6)
    assert predicted.std() > 10

    text = httpx.get(f"{service.url}/metrics", timeout=10).text
    classes_total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("conveyor_serving_predicted_classes_total{")
    )
    assert classes_total == len(ids) + 50  # every multiclass answer counted under its predicted class
    count = f'conveyor_serving_predictions_count{{arm="champion",model="churn",version="{regression.version}"}}'
    assert f"{count} {float(len(ids))}" in text
    total = f'conveyor_serving_predictions_sum{{arm="champion",model="churn",version="{regression.version}"}}'
    logged_sum = next(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(total))
    assert logged_sum == pytest.approx(predicted.sum())
