"""Monitoring per task (pure): prediction drift on the task's outputs, realized decay in the task's primary metric
and its direction, the report, the monitoring table and the dashboard with the task's metric names."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from configs.settings import Settings, load_settings
from conveyor.demo.synthetic import generate_window
from conveyor.domain import drift, drift_report
from conveyor.domain.drift_performance import decayed, performance_check, task_performance_check
from conveyor.domain.failures import InvalidInput, MissingColumns
from conveyor.domain.monitoring_dashboard import render_dashboard
from conveyor.domain.monitoring_history import DataVolume, judgement_rows, recent_table, series
from conveyor.domain.task_outputs import check_registration
from conveyor.domain.task_types import ModelTask

DAY = dt.date(2026, 3, 1)
REGRESSION = ModelTask("regression")
MULTICLASS = ModelTask("multiclass", ("bronze", "gold", "silver"))


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="module")
def frames(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    generator = settings.generator.model_copy(update={"n_entities": 800})
    window = lambda start, days: pd.concat(  # noqa: E731
        generate_window(start, days, settings.dataset, generator).values(), ignore_index=True
    )
    return window(dt.date(2026, 1, 1), 5), window(DAY, 2)


def _regression_outputs(n: int, shift: float, seed: int) -> pd.DataFrame:
    return pd.DataFrame({"prediction": np.random.default_rng(seed).normal(100 + shift, 15, n)})


def _multiclass_outputs(n: int, weights: list[float], seed: int) -> pd.DataFrame:
    proba = np.random.default_rng(seed).dirichlet(weights, n)
    return MULTICLASS.outputs_from_proba(proba)


def _compare(
    settings: Settings,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    task: ModelTask,
    outputs: pd.DataFrame,
    estimation_note: str | None = "not estimated: test",
    **judged: Any,
) -> drift.DriftReport:
    """One day of model "m" v2 judged (`judged`: performance, estimated)."""
    return drift.compare(
        reference,
        current,
        settings.dataset,
        settings.drift.model_copy(update={"min_rows": 100}),
        model_name="m",
        model_version="2",
        window_start=DAY,
        window_end=DAY,
        current_outputs=outputs,
        task=task,
        estimation_note=estimation_note,
        **judged,
    )


def test_regression_prediction_drift_is_on_the_prediction(
    settings: Settings, frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    reference, current = frames
    reference = reference.assign(prediction=_regression_outputs(len(reference), 0, 1)["prediction"].to_numpy())
    same = _compare(settings, reference, current, REGRESSION, _regression_outputs(len(current), 0, 2))
    assert same.task == "regression" and [p.name for p in same.predictions] == ["prediction"]
    assert same.prediction is not None and same.prediction.kind == "prediction" and not same.prediction.drifted
    moved = _compare(settings, reference, current, REGRESSION, _regression_outputs(len(current), 12, 2))
    assert moved.prediction is not None and moved.prediction.drifted and moved.verdict == "drift"
    assert any(r.startswith("prediction drift: prediction") for r in moved.reasons), moved.reasons
    assert moved.prediction.current_mean == pytest.approx(112, abs=1.5)
    with pytest.raises(MissingColumns, match=r"the regression outputs lack column\(s\) \['prediction'\]"):
        _compare(settings, reference, current, REGRESSION, pd.DataFrame({"score": [0.1] * len(current)}))


def test_multiclass_prediction_drift_on_class_shares_and_probabilities(
    settings: Settings, frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    reference, current = frames
    reference = pd.concat([reference, _multiclass_outputs(len(reference), [1, 1, 1], 1)], axis=1)
    same = _compare(settings, reference, current, MULTICLASS, _multiclass_outputs(len(current), [1, 1, 1], 2))
    names = [p.name for p in same.predictions]
    assert names == ["predicted_class", "proba_bronze", "proba_gold", "proba_silver"]
    assert not any(p.drifted for p in same.predictions) and same.prediction is same.predictions[0]
    assert same.predictions[0].kind == "prediction" and same.predictions[0].ks is None  # shares: PSI only
    assert same.predictions[0].psi_threshold == settings.drift.prediction_psi_threshold
    tilted = _compare(settings, reference, current, MULTICLASS, _multiclass_outputs(len(current), [1, 6, 1], 2))
    drifted = {p.name for p in tilted.predictions if p.drifted}
    assert {"predicted_class", "proba_gold"} <= drifted and tilted.verdict == "drift"
    assert any("prediction drift: predicted_class" in r for r in tilted.reasons)
    # The bounds split the false-alarm rate over the task's statistics too: 3 numeric outputs x 2 + 1 categorical.
    ds, cfg = settings.dataset, settings.drift
    base = drift.window_bounds(ds, cfg, False).alpha
    multi = drift.window_bounds(ds, cfg, True, MULTICLASS).alpha
    assert (
        base is not None
        and multi is not None
        and base / multi
        == pytest.approx(
            (2 * len(ds.numeric_features) + len(ds.categorical_features) + 7)
            / (2 * len(ds.numeric_features) + len(ds.categorical_features))
        )
    )


def test_realized_decay_follows_the_metrics_direction() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(100, 15, 2000)
    outputs = pd.DataFrame({"prediction": truth + rng.normal(0, 10, 2000)})  # rmse about 10
    good = task_performance_check(REGRESSION, truth, outputs, 10.0, 0.05, DAY, DAY)
    assert good is not None and good.metric == "rmse" and not good.higher_is_better and good.roc_auc is None
    assert good.value == pytest.approx(10, rel=0.05) and good.change == "relative rise"
    assert good.metrics["mae"] > 0 and "r2" in good.metrics
    worse = task_performance_check(REGRESSION, truth + 8, outputs, 10.0, 0.05, DAY, DAY)  # labels moved away
    assert worse is not None and worse.decayed and worse.value is not None and worse.value > 12
    assert "rmse" in worse.describe() and "> test 10 x (1 + drift.max_metric_drop 0.05)" in worse.describe()
    # An error that fell is never decay; a relative rise within max_metric_drop is not either.
    assert (
        not decayed(8.0, 10.0, False, 0.05) and not decayed(10.4, 10.0, False, 0.05) and decayed(10.6, 10, False, 0.05)
    )
    assert decayed(0.74, 0.8, True, 0.05) and not decayed(0.76, 0.8, True, 0.05)

    labels = rng.choice(list(MULTICLASS.classes), 1500)
    proba = np.full((1500, 3), 0.1)
    proba[np.arange(1500), [MULTICLASS.classes.index(c) for c in labels]] = 0.8  # always right
    right = task_performance_check(MULTICLASS, labels, MULTICLASS.outputs_from_proba(proba), 0.9, 0.05, DAY, DAY)
    assert right is not None and right.metric == "macro_f1" and right.value == 1.0 and not right.decayed
    wrong = task_performance_check(
        MULTICLASS, labels, MULTICLASS.outputs_from_proba(np.roll(proba, 1, axis=1)), 0.9, 0.05, DAY, DAY
    )
    assert wrong is not None and wrong.decayed and "< test 0.9 - drift.max_metric_drop 0.05" in wrong.describe()
    assert task_performance_check(REGRESSION, truth, outputs, None, 0.05, DAY, DAY) is None  # no test value


def test_binary_performance_check_is_unchanged() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 3000)
    scores = np.clip(labels * 0.3 + rng.random(3000) * 0.7, 0, 1)
    from sklearn.metrics import roc_auc_score

    check = performance_check(labels, scores, 0.95, 0.05, DAY, DAY)
    assert check is not None and check.roc_auc == pytest.approx(roc_auc_score(labels, scores))
    assert check.expected_roc_auc == 0.95 and check.metric == "roc_auc" and check.decayed
    assert performance_check(np.zeros(10, dtype=int), scores[:10], 0.8, 0.05, DAY, DAY) is None  # one class


def test_report_table_and_dashboard_carry_the_tasks_names(
    settings: Settings, frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    reference, current = frames
    reference = reference.assign(prediction=_regression_outputs(len(reference), 0, 1)["prediction"].to_numpy())
    outputs = _regression_outputs(len(current), 12, 2)
    rng = np.random.default_rng(5)
    truth = rng.normal(100, 15, 600)
    performance = task_performance_check(
        REGRESSION, truth + 8, pd.DataFrame({"prediction": truth}), 5.0, 0.05, DAY - dt.timedelta(30), DAY
    )
    report = _compare(
        settings,
        reference,
        current,
        REGRESSION,
        outputs,
        estimation_note="not estimated: CBPE is for binary",
        performance=performance,
    )
    assert any(r.startswith("performance decay on") and "rmse" in r for r in report.reasons)
    page = drift_report.render_html(report, reference, current, outputs, 5000)
    assert "not estimated: CBPE is for binary" in page and "rmse" in page and "data:image/png;base64," in page
    rows = judgement_rows(report, DataVolume(len(current)), outputs)
    assert series(rows, "prediction", "p50").iloc[0] == pytest.approx(np.median(outputs["prediction"]))
    assert series(rows, "model", "realized_rmse", by="window_end").iloc[0] == pytest.approx(performance.value)  # type: ignore[union-attr]
    assert series(rows, "model", "expected_rmse").iloc[0] == 5.0 and not len(series(rows, "score", "mean"))
    table = recent_table(rows, DAY, weeks=1)
    assert table[0]["realized_rmse (labelled window)"] == pytest.approx(performance.value, abs=1e-3)  # type: ignore[union-attr]
    assert table[0]["estimated_rmse"] is None  # regression: nothing estimated without labels
    assert "data:image/png;base64," in render_dashboard(rows, "m", DAY, weeks=1)

    multi = _multiclass_outputs(len(current), [1, 3, 1], 4)
    reference_m = pd.concat([frames[0], _multiclass_outputs(len(frames[0]), [1, 1, 1], 1)], axis=1)
    report_m = _compare(settings, reference_m, current, MULTICLASS, multi)
    rows_m = judgement_rows(report_m, DataVolume(len(current)), multi)
    shares = {m: series(rows_m, "predicted_class", m).iloc[0] for m in ("share_bronze", "share_gold", "share_silver")}
    assert sum(shares.values()) == pytest.approx(1.0) and shares["share_gold"] > 0.5
    assert "data:image/png;base64," in drift_report.render_html(report_m, reference_m, current, multi, 5000)


def test_registration_checks_the_model_against_its_task() -> None:
    from sklearn.dummy import DummyClassifier, DummyRegressor

    X = pd.DataFrame({"x": np.arange(30.0)})
    classes = pd.Series(["gold", "bronze", "silver"] * 10)
    classifier = DummyClassifier(strategy="prior").fit(X, classes)
    regressor = DummyRegressor().fit(X, np.arange(30.0))
    reference = pd.concat([X, MULTICLASS.outputs(classifier, X)], axis=1)
    check_registration(classifier, MULTICLASS, reference)  # fits
    with pytest.raises(InvalidInput, match="task 'regression': the model is a classifier"):
        check_registration(classifier, REGRESSION, reference)
    with pytest.raises(InvalidInput, match="task 'multiclass': the model is a regressor"):
        check_registration(regressor, MULTICLASS, reference)
    with pytest.raises(InvalidInput, match=r"reference sample lacks column\(s\) \['prediction'\]"):
        check_registration(regressor, REGRESSION, X)
    broken = reference.assign(proba_gold=np.nan)
    with pytest.raises(InvalidInput, match=r"30 non-finite value\(s\)"):
        check_registration(classifier, MULTICLASS, broken)


def test_multiclass_cbpe_matches_the_labels_its_probabilities_imply() -> None:
    from conveyor.domain.multiclass_estimation import estimate_class_performance, realized_class_metrics

    rng = np.random.default_rng(11)
    proba = rng.dirichlet([0.6, 0.6, 0.6], 4000)  # confident rows mostly
    estimate = estimate_class_performance(proba, expected_macro_f1=0.7, max_drop=0.05, z=2.0, replicates=200, seed=0)
    realized = []
    for seed in range(30):  # labels drawn as calibrated probabilities say: the realized metric scatters around it
        draw = np.random.default_rng(100 + seed)
        labels = (draw.random((len(proba), 1)) > np.cumsum(proba, axis=1)).sum(axis=1).clip(0, 2)
        realized.append(realized_class_metrics(labels, proba.argmax(axis=1), 3))
    f1s, accuracies = np.array(realized).T
    assert estimate.macro_f1 == pytest.approx(f1s.mean(), abs=3 * estimate.macro_f1_se / np.sqrt(30) + 1e-3)
    assert estimate.accuracy == pytest.approx(accuracies.mean(), abs=0.01)
    assert estimate.macro_f1_se == pytest.approx(f1s.std(ddof=1), rel=0.5)
    assert not estimate.decayed and estimate.reasons == []
    unsure = estimate_class_performance(
        rng.dirichlet([20, 20, 20], 4000), expected_macro_f1=0.8, max_drop=0.05, z=2.0, replicates=50, seed=0
    )
    assert unsure.decayed and unsure.macro_f1 < 0.5 and "macro F1" in unsure.reasons[0]


def _multiclass_report(
    settings: Settings,
    frames: tuple[pd.DataFrame, pd.DataFrame],
    concentration: list[float],
    replicates: int,
    with_labels: bool = False,
) -> tuple[drift.DriftReport, pd.DataFrame, pd.DataFrame, pd.DataFrame, Any]:
    """A multiclass day judged with its estimate (and, `with_labels`, its realized macro F1): (report, reference,
    current, outputs, estimate). `concentration` shapes the current probabilities (higher: surer)."""
    from conveyor.domain.multiclass_estimation import estimate_class_performance

    reference, current = frames
    reference = pd.concat([reference, _multiclass_outputs(len(reference), [1, 1, 1], 1)], axis=1)
    outputs = _multiclass_outputs(len(current), concentration, 2)
    estimated = estimate_class_performance(
        MULTICLASS.probabilities(outputs), expected_macro_f1=0.9, max_drop=0.05, z=2.0, replicates=replicates, seed=0
    )
    labels = outputs["predicted_class"].to_numpy()
    performance = (
        task_performance_check(MULTICLASS, labels, outputs, 0.9, 0.05, DAY - dt.timedelta(30), DAY)
        if with_labels
        else None
    )
    report = _compare(
        settings,
        reference,
        current,
        MULTICLASS,
        outputs,
        estimation_note=None,
        estimated=estimated,
        performance=performance,
    )
    return report, reference, current, outputs, estimated


def test_a_multiclass_report_and_table_carry_the_estimate(
    settings: Settings, frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    # Unsure probabilities: the estimate falls below the test value.
    report, reference, current, outputs, estimated = _multiclass_report(settings, frames, [3, 3, 3], 50)
    assert estimated.decayed and any("estimated performance decay" in r for r in report.reasons)
    assert "macro F1" in drift_report.render_html(report, reference, current, outputs, 5000)
    assert drift_report.estimate_summary(report).startswith("Estimated macro F1 (no labels)")
    rows = judgement_rows(report, DataVolume(len(current)), outputs)
    assert series(rows, "model", "estimated_macro_f1").iloc[0] == pytest.approx(estimated.macro_f1)
    table = recent_table(rows, DAY, weeks=1)
    assert table[0]["estimated_macro_f1"] == pytest.approx(estimated.macro_f1, abs=1e-3)


def test_a_multiclass_judgement_with_estimate_and_labels_reads_back(
    settings: Settings, frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    report, _, current, outputs, _ = _multiclass_report(settings, frames, [1, 1, 1], 20, with_labels=True)
    rows = judgement_rows(report, DataVolume(len(current)), outputs)
    assert (rows["metric"] == "expected_macro_f1").sum() == 1  # written once, by the estimate
    history = pd.concat([rows, rows], ignore_index=True)  # the same day judged twice
    table = recent_table(history, DAY, weeks=1)
    assert table[0]["realized_macro_f1 (labelled window)"] == 1.0
    assert "data:image/png;base64," in render_dashboard(history, "m", DAY, weeks=1)
