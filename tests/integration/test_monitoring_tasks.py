"""The drift monitor follows the champion's recorded task on the real S3 server (raw Delta table, registry,
published predictions): prediction drift on the task's outputs (regression prediction; multiclass class shares and
probabilities), realized decay in the task's primary metric once labels arrive (regression RMSE a relative rise,
multiclass macro F1 a drop), "not estimated" instead of a CBPE figure, and the reports, the monitoring table and the
dashboard written with the task's metric names."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import raw_table, read_raw_window, write_raw_day
from conveyor.adapters.registry import ModelRegistry
from conveyor.demo.synthetic import generate_day
from conveyor.domain.monitoring_history import DataVolume
from conveyor.domain.multiclass_estimation import EstimatedClassPerformance
from conveyor.domain.task_types import ModelTask
from conveyor.services.batch_inference import ModelRef, load_scoring_model
from conveyor.services.feature_sources import FrameSource
from conveyor.services.monitoring import drift_report_for_day, write_reports
from conveyor.services.monitoring_history import append_judgement, read_history, rebuild_dashboard
from conveyor.services.scoring import score_partition
from conveyor.services.training import _features
from tests.integration.scoring_data import fit_task, task_metadata, task_reference, task_target

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "spend"
GOOD_LABELS, BAD_LABELS = dt.date(2026, 2, 1), dt.date(2026, 2, 8)  # 30 days (label delay) before each scored day
STEADY, SHIFTED = dt.date(2026, 3, 3), dt.date(2026, 3, 10)


def _labelled(settings: Settings, frame: pd.DataFrame, kind: str, wrong: bool) -> pd.DataFrame:
    """Raw rows whose label is the task's target (wrong: the world moved away from what the model learnt)."""
    target = task_target(_features(frame, settings.dataset), kind, seed=frame.shape[0])
    if wrong:
        rotate = {"bronze": "gold", "gold": "silver", "silver": "bronze"}
        target = target + 40.0 if kind == "regression" else target.map(rotate)
    return frame.assign(**{settings.dataset.label_column: target.to_numpy()})


@pytest.fixture(scope="module", params=["regression", "multiclass"])
def monitored(request: pytest.FixtureRequest, s3_server: Settings) -> Iterator[tuple[Settings, str, ModelTask]]:
    kind: str = request.param
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVEYOR_STORAGE__BUCKET", f"mt-{uuid.uuid4().hex[:10]}")
        base = load_settings()
    settings = base.model_copy(
        update={"drift": base.drift.model_copy(update={"window_days": 1, "min_rows": 100, "multivariate": False})}
    )
    store, ds = ObjectStore(settings.storage), settings.dataset
    model, rows, task = fitted = fit_task(settings, kind)
    # Test rows like the monitored ones (a snapshot of 1,500 customers, most of them not in the training rows).
    held_out = generate_day(dt.date(2026, 1, 28), ds, settings.generator, snapshot=True, n_entities=1500)
    test_rows = _features(held_out, ds)
    test_metrics = task.metrics(task_target(test_rows, kind, seed=7), task.outputs(model, test_rows))
    registry = ModelRegistry(store, settings)
    metadata = dataclasses.replace(task_metadata(settings, task), metrics={"test": test_metrics})
    version = registry.register(MODEL, model, metadata, task_reference(model, rows.head(2000), task))
    registry.promote(MODEL, version.version, actor="test", reason="champion of the monitoring test")
    table = raw_table(store.config, settings)
    for day, wrong in ((GOOD_LABELS, False), (BAD_LABELS, True), (STEADY, False), (SHIFTED, False)):
        frame = generate_day(day, ds, settings.generator, snapshot=True, n_entities=1500)
        if day == SHIFTED:  # covariate shift inside the valid ranges: the high spenders only
            frame = frame[frame["monthly_charges"] > frame["monthly_charges"].quantile(0.6)]
        write_raw_day(table, ds, day, _labelled(settings, frame, kind, wrong), "monitoring-tasks")
    scoring = load_scoring_model(store, settings, ModelRef(MODEL, version.version, "churn_v1"))
    for day in (STEADY, SHIFTED):
        raw = read_raw_window(store, settings, day, day)
        score_partition(store, settings, FrameSource(raw), scoring, MODEL, day, f"score-{day}")
    assert fitted[2] == version.model_task
    yield settings, kind, task


def task_metrics_of(settings: Settings) -> dict[str, float]:
    """The champion's recorded test metrics."""
    champion = ModelRegistry(ObjectStore(settings.storage), settings).champion(MODEL)
    assert champion is not None
    return champion.test_metrics


def _judge(settings: Settings, day: dt.date) -> Any:
    store = ObjectStore(settings.storage)
    report, reference, current, outputs = drift_report_for_day(store, settings, MODEL, day)
    uris = write_reports(store, settings, report, reference, current, outputs)
    append_judgement(store, settings, report, DataVolume(len(current)), outputs, f"judge-{day}")
    return report, uris, outputs


def test_prediction_drift_and_realized_decay_follow_the_task(monitored: tuple[Settings, str, ModelTask]) -> None:
    settings, kind, task = monitored
    store = ObjectStore(settings.storage)
    steady, uris, outputs = _judge(settings, STEADY)
    columns = ["prediction"] if kind == "regression" else [*(f"proba_{c}" for c in task.classes), "predicted_class"]
    assert list(outputs.columns) == columns
    assert steady.task == kind and [p.name for p in steady.predictions] == sorted(
        columns, key=lambda c: c != "predicted_class"
    )
    assert not [p.name for p in steady.predictions if p.drifted], steady.reasons
    if kind == "regression":  # no estimate without labels, and the report says so
        assert steady.estimated is None and steady.estimation_note.startswith("not estimated")
    else:  # CBPE from the published class probabilities, near the test macro F1 on a steady day
        estimate = steady.estimated
        assert isinstance(estimate, EstimatedClassPerformance) and steady.estimation_note is None
        assert estimate.rows == len(outputs) and not estimate.decayed, estimate
        assert estimate.expected_macro_f1 == pytest.approx(task_metrics_of(settings)["macro_f1"])
    perf = steady.performance
    assert perf is not None and perf.metric == task.primary_metric and perf.window_end == GOOD_LABELS.isoformat()
    assert perf.task == kind and not perf.decayed, (perf.value, perf.expected)
    assert perf.change == ("relative rise" if kind == "regression" else "absolute drop")

    shifted, _, _ = _judge(settings, SHIFTED)
    drifted = {p.name for p in shifted.predictions if p.drifted}
    assert (drifted == {"prediction"}) if kind == "regression" else ("predicted_class" in drifted), shifted.reasons
    decay = shifted.performance
    assert decay is not None and decay.window_end == BAD_LABELS.isoformat() and decay.decayed
    assert decay.value is not None and decay.expected is not None
    if kind == "regression":
        assert decay.value > decay.expected * (1 + settings.drift.max_metric_drop)
    else:
        assert decay.value < decay.expected - settings.drift.max_metric_drop
    assert shifted.verdict == "drift" and any(r.startswith("performance decay") for r in shifted.reasons)

    page = store.get_bytes(store.key_of(uris["html"])).decode()
    assert ("not estimated" in page) == (kind == "regression") and task.primary_metric in page
    history = read_history(store, settings, MODEL)
    metric = task.primary_metric
    realized = history[history["metric"] == f"realized_{metric}"].sort_values("window_end")
    assert realized["window_end"].tolist() == [GOOD_LABELS.isoformat(), BAD_LABELS.isoformat()]
    assert realized["value"].tolist() == pytest.approx([perf.value, decay.value])
    key, _ = rebuild_dashboard(store, settings, MODEL, SHIFTED, 4)
    dashboard = store.get_bytes(key).decode()
    assert "data:image/png;base64," in dashboard and f"realized_{metric} (labelled window)" in dashboard
