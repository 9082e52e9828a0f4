"""A regression and a multiclass dataset end to end on the real servers (S3, Prefect test server, Feast on temp
paths): the synthetic generator's mode for the task lands through the validated ingest; the training flow trains
behind the task's gates into the registry (a linear first champion, then the boosted default, compared on the
task's primary metric; the version records its task, its card and plots are the task's); the features flow
materializes; the batch-inference flow publishes the task's output columns for the last day; the drift monitor
judges that day on the task's outputs."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import read_published_parquet
from conveyor.adapters.raw_data import published_days
from conveyor.adapters.registry import ModelRegistry
from conveyor.demo.synthetic import Fault, Scenario
from conveyor.domain.drift import DriftReport
from conveyor.domain.expectations import write_default_suites
from conveyor.domain.task_types import ModelTask
from conveyor.services.ingest import IngestRejected
from conveyor.services.scoring import predictions_prefix
from flows.batch_inference import batch_inference
from flows.drift_monitor import drift_monitor
from flows.features import refresh_features
from flows.ingest import ingest
from flows.training import training

pytestmark = pytest.mark.integration
START, END = dt.date(2026, 1, 1), dt.date(2026, 2, 9)  # 40 days


@pytest.fixture
def task_env(
    s3_server: Settings, prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A bucket, Feast state and suites of this test's own, a small population."""
    monkeypatch.setenv("CONVEYOR_STORAGE__BUCKET", f"task-{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("CONVEYOR_FEATURES__STATE_DIR", str(tmp_path / "feast"))
    monkeypatch.setenv("CONVEYOR_GENERATOR__N_ENTITIES", "3000")
    monkeypatch.setenv("CONVEYOR_VALIDATION__SUITES_DIR", str(tmp_path / "suites"))
    yield tmp_path


def _land(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    write_default_suites(settings)  # what `conveyor validation init-suites` does after editing dataset.yaml
    landed = ingest(start_date=START, days=(END - START).days + 1)
    assert landed is not None
    return settings


def _bad_labels_are_quarantined(settings: Settings, rule: str) -> None:
    """A day whose label has text where the task's rule wants a number or a declared class is quarantined, the
    report naming the label column and the rule; the other days stay published."""
    bad = END + dt.timedelta(days=1)
    fault = Fault(kind="wrong_type", column=settings.dataset.label_column, fraction=0.02)
    state = ingest(start_date=bad, days=1, scenario=Scenario(faults=[fault]), return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, IngestRejected) and f"not published: {bad}" in str(error)
    assert f"column '{settings.dataset.label_column}'" in str(error) and rule in str(error), str(error)
    assert bad not in published_days(ObjectStore(settings.storage), settings)


def _check_version(settings: Settings, version: int, plots: set[str]) -> dict:  # type: ignore[type-arg]
    registry = ModelRegistry(ObjectStore(settings.storage), settings)
    name = settings.training.model_name
    meta = registry.get_version(name, version)
    assert meta.task is not None and meta.model_task.kind == settings.dataset.task
    assert plots | {"card.html"} <= set(meta.files)
    assert all(registry.get_file(name, version, p).startswith(b"\x89PNG") for p in plots)
    assert meta.twin.get("status") in {"passed", "failed", "skipped"}  # recorded either way, never a crash
    loaded = registry.load(name, version)
    assert loaded.task == meta.model_task
    page = registry.get_file(name, version, "card.html").decode()
    assert f"Task: {settings.dataset.task} of `{settings.dataset.label_column}`" in page
    return meta.extra["card"]  # type: ignore[no-any-return]


def _score_and_monitor(settings: Settings, columns: list[str]) -> tuple[pd.DataFrame, DriftReport]:
    """Features, then the champion scores the last landed day (features from the store) and the drift monitor
    judges it on the task's outputs. (Values equal to the model's own outputs: test_scoring_tasks.py.)"""
    name = settings.scoring.model_name
    skew = refresh_features(start_date=START, end_date=END + dt.timedelta(days=1))
    assert skew.passed, skew
    result = batch_inference(scoring_date=END, model_name=name)
    part = result.partitions[0]
    assert part.rows_in == part.rows_scored + part.rows_quarantined and part.rows_scored > 1000
    published = read_published_parquet(ObjectStore(settings.storage), predictions_prefix(settings, name, END))
    assert set(columns) <= set(published.columns) and len(published) == part.rows_scored
    assert "score" not in columns or "score" in published.columns  # only binary publishes a score
    report = drift_monitor(model_name=name, scored_day=END)
    assert report.task == settings.dataset.task and report.prediction is not None
    return published, report


def test_regression_trains_behind_its_gates(task_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _land(
        monkeypatch,
        {
            "CONVEYOR_DATASET__TASK": "regression",
            "CONVEYOR_DATASET__LABEL_COLUMN": "next_month_spend",
            "CONVEYOR_DATASET__DIRECTIONAL": '[{"feature": "monthly_charges", "delta": 10, "direction": "increase"}]',
        },
    )
    first = training(start_date=START, end_date=END, model_config_name="ridge")
    assert first.promoted and first.gates_passed, first.reasons
    assert set(first.test_metrics) >= {"rmse", "mae", "r2"} and first.test_metrics["r2"] > 0.5
    second = training(start_date=START, end_date=END)  # training.default_models[regression]: boosting
    assert second.promoted, second.reasons
    assert second.test_metrics["rmse"] < first.test_metrics["rmse"]
    registry = ModelRegistry(ObjectStore(settings.storage), settings)
    meta = registry.get_version(settings.training.model_name, second.version)  # type: ignore[arg-type]
    assert meta.model_config_name == "regression" and meta.gates["verdict"] == "better"
    results = {r["name"]: r for r in meta.gates["results"]}
    gain = results["challenger_vs_champion"]["intervals"]["rmse gain"]
    assert gain["primary"] and gain["low"] > 0  # rmse: a lower error is a positive gain
    assert results["absolute_minimums"]["intervals"]["r2"]["low"] > settings.gates.min_r2
    assert results["behaviour_directional"]["passed"]
    card = _check_version(settings, second.version, {"predicted_vs_actual.png", "residuals.png"})  # type: ignore[arg-type]
    assert card["task"]["kind"] == "regression" and card["calibration"] == {}
    assert [m["metric"] for m in card["metrics"]] == ["rmse", "mae", "r2"]
    assert card["fairness"][0]["columns"][:2] == ["rows", "mae"]
    _bad_labels_are_quarantined(settings, "type in [")
    published, report = _score_and_monitor(settings, ["prediction"])
    assert "score" not in published.columns and published["prediction"].notna().all()
    assert report.prediction.name == "prediction"  # type: ignore[union-attr]
    assert report.estimated is None and report.estimation_note  # regression: not estimated, and says why


def test_multiclass_trains_behind_its_gates(task_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _land(
        monkeypatch,
        {
            "CONVEYOR_DATASET__TASK": "multiclass",
            "CONVEYOR_DATASET__LABEL_COLUMN": "plan_tier",
            "CONVEYOR_DATASET__CLASSES": '["basic", "standard", "premium"]',
            "CONVEYOR_DATASET__DIRECTIONAL": (
                '[{"feature": "support_calls_30d", "delta": 3, "direction": "decrease", "target_class": "premium"}]'
            ),
        },
    )
    first = training(start_date=START, end_date=END, model_config_name="logistic")
    assert first.promoted and first.gates_passed, first.reasons
    assert first.test_metrics["balanced_accuracy"] > 1 / 3 + settings.gates.min_balanced_accuracy_lift
    second = training(start_date=START, end_date=END)
    registry = ModelRegistry(ObjectStore(settings.storage), settings)
    meta = registry.get_version(settings.training.model_name, second.version)  # type: ignore[arg-type]
    # The model's own column order (sorted), whatever order dataset.classes declares.
    assert meta.model_task == ModelTask("multiclass", ("basic", "premium", "standard"))
    results = {r["name"]: r for r in meta.gates["results"]}
    compared = results["challenger_vs_champion"]
    assert compared["intervals"]["macro_f1 gain"]["primary"]
    assert meta.gates["verdict"] in {"better", "not different", "worse"}
    assert second.promoted == (meta.gates["verdict"] == "better" and meta.gates["passed"]), second.reasons
    assert results["behaviour_directional"]["metrics"]["support_calls_30d->premium+3_mean_change"] < 0
    card = _check_version(settings, second.version, {"confusion_matrix.png", "calibration.png"})  # type: ignore[arg-type]
    assert card["task"]["classes"] == ["basic", "premium", "standard"]
    assert card["calibration"]["bins"] and card["fairness"][0]["columns"] == ["rows", "accuracy", "balanced_accuracy"]
    assert (
        "macro_f1" in [m["metric"] for m in card["metrics"]] and card["comparison"]["champion_version"] == first.version
    )
    _bad_labels_are_quarantined(settings, "in ['basic', 'standard', 'premium'")
    probabilities = ["proba_basic", "proba_premium", "proba_standard"]
    published, report = _score_and_monitor(settings, [*probabilities, "predicted_class"])
    assert abs(published[probabilities].sum(axis=1) - 1).max() < 1e-6
    assert set(published["predicted_class"]) <= {"basic", "premium", "standard"}
    assert report.prediction.name == "predicted_class" and report.estimated is not None  # type: ignore[union-attr]
