"""CBPE against the generator's ground truth: the estimate from scores alone vs the realized metrics on the same
window's labels (pure: no servers)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from configs.settings import Settings, load_settings
from conveyor.demo.synthetic import ConceptDrift, CovariateDrift, Scenario, generate_window
from conveyor.domain import performance_estimation as pe

TRAIN_START = dt.date(2026, 1, 1)
DRIFT_START = dt.date(2026, 2, 15)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


def _window(settings: Settings, start: dt.date, days: int, scenario: Scenario | None = None) -> pd.DataFrame:
    return pd.concat(generate_window(start, days, settings.dataset, settings.generator, scenario).values())


@pytest.fixture(scope="module")
def fitted(settings: Settings):  # type: ignore[no-untyped-def]
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    ds = settings.dataset
    train = _window(settings, TRAIN_START, 30)
    pre = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), ds.categorical_features)], remainder="passthrough"
    )
    model = Pipeline([("pre", pre), ("clf", HistGradientBoostingClassifier(max_iter=60, random_state=0))])
    model.fit(train[ds.feature_names], train[ds.label_column])
    test = _window(settings, TRAIN_START + dt.timedelta(days=30), 7)
    test_scores = model.predict_proba(test[ds.feature_names])[:, 1]
    return model, test[ds.label_column].to_numpy(), test_scores


def _estimate(settings: Settings, fitted, current: pd.DataFrame, squash: bool = False):  # type: ignore[no-untyped-def]
    model, ref_labels, ref_scores = fitted
    scores = model.predict_proba(current[settings.dataset.feature_names])[:, 1]
    if squash:  # a model whose scores rank well but are not probabilities
        ref_scores, scores = ref_scores**3, scores**3
    calibrator = pe.fit_calibrator(ref_scores, ref_labels, settings.drift.calibration_tolerance)
    errors = pe.sampling_errors(ref_labels, ref_scores, len(scores), 0.5, 200, 0)
    expected = float(roc_auc_score(ref_labels, ref_scores))
    estimate = pe.estimate_performance(
        scores, calibrator, errors, threshold=0.5, expected_roc_auc_value=expected, max_drop=0.05, z=2.0
    )
    realized = pe.realized_metrics(current[settings.dataset.label_column].to_numpy(), scores, 0.5)
    return estimate, realized


def test_expected_roc_auc_with_labels_as_probabilities_is_the_realized_roc_auc() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    scores = np.round(rng.random(5000) * 0.5 + 0.3 * labels, 2)  # ties included
    assert pe.expected_roc_auc(scores, labels.astype(float)) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@pytest.mark.parametrize(
    "scenario",
    [
        None,
        Scenario(covariate_drift=[CovariateDrift(feature="tenure_months", start=DRIFT_START, shift=-1.5)]),
        Scenario(covariate_drift=[CovariateDrift(feature="contract_type", start=DRIFT_START, shift=0.9)]),
    ],
    ids=["clean", "tenure_down", "contract_shift"],
)
def test_estimate_tracks_the_realized_metrics_under_covariate_shift(settings: Settings, fitted, scenario) -> None:  # type: ignore[no-untyped-def]
    estimate, realized = _estimate(settings, fitted, _window(settings, DRIFT_START, 7, scenario))
    assert estimate.roc_auc_se > 0
    assert abs(estimate.roc_auc - realized["roc_auc"]) < 3 * estimate.roc_auc_se
    assert abs(estimate.accuracy - realized["accuracy"]) < 3 * estimate.accuracy_se
    assert abs(estimate.f1 - realized["f1"]) < 3 * estimate.f1_se
    assert not estimate.decayed


def test_uncalibrated_scores_are_calibrated_on_the_reference_and_the_error_reported(settings: Settings, fitted) -> None:  # type: ignore[no-untyped-def]
    estimate, realized = _estimate(settings, fitted, _window(settings, DRIFT_START, 7), squash=True)
    assert estimate.calibrated and estimate.calibration_error is not None and estimate.calibration_error > 0.1
    assert abs(estimate.accuracy - realized["accuracy"]) < 3 * estimate.accuracy_se
    # Without calibration the cubed scores would promise far fewer positives than there are.
    uncalibrated = pe.expected_accuracy_f1(fitted[2] ** 3, 0.5, fitted[2] ** 3)[1]
    assert abs(uncalibrated - realized["f1"]) > abs(estimate.f1 - realized["f1"])


def test_a_performance_drop_the_scores_show_is_a_decay_verdict(settings: Settings, fitted) -> None:  # type: ignore[no-untyped-def]
    # Every customer on a two-year contract and new: the model's two strongest signals stop separating anyone.
    shifts = [
        CovariateDrift(feature="contract_type", start=DRIFT_START, shift=1.0),
        CovariateDrift(feature="tenure_months", start=DRIFT_START, shift=-3.0),
    ]
    estimate, realized = _estimate(
        settings, fitted, _window(settings, DRIFT_START, 7, Scenario(covariate_drift=shifts))
    )
    assert realized["roc_auc"] < estimate.expected_roc_auc - estimate.max_drop  # ground truth: it did decay
    assert estimate.decayed and "estimated performance decay" in estimate.reasons[0]


def test_concept_drift_that_leaves_the_scores_alone_is_invisible_to_the_estimate(settings: Settings, fitted) -> None:  # type: ignore[no-untyped-def]
    """Honest limit: P(y|x) changed, the features did not; only the labels (later) show the decay."""
    scenario = Scenario(concept_drift=ConceptDrift(start=DRIFT_START, strength=1.0))
    estimate, realized = _estimate(settings, fitted, _window(settings, DRIFT_START, 7, scenario))
    assert realized["roc_auc"] < 0.6
    assert not estimate.decayed and estimate.roc_auc > 0.7


def test_estimated_decay_alone_is_its_own_verdict_and_asks_for_retraining(settings: Settings, fitted) -> None:  # type: ignore[no-untyped-def]
    from conveyor.domain import drift, drift_report
    from conveyor.services.monitoring import drift_event_payload

    reference = _window(settings, TRAIN_START, 30)
    reference["score"] = fitted[0].predict_proba(reference[settings.dataset.feature_names])[:, 1]
    current = _window(settings, DRIFT_START, 7)
    estimate, _ = _estimate(settings, fitted, current)
    decayed = dataclasses.replace(estimate, decayed=True, reasons=["estimated performance decay (CBPE): test"])
    report = drift.compare(
        reference,
        current,
        settings.dataset,
        settings.drift,
        model_name="churn",
        model_version="1",
        window_start=DRIFT_START,
        window_end=DRIFT_START,
        current_scores=pd.Series(fitted[0].predict_proba(current[settings.dataset.feature_names])[:, 1]),
        estimated=decayed,
    )
    assert report.verdict == "estimated_decay" and report.needs_retraining and not report.drifted
    payload = drift_event_payload(report)
    assert payload["estimated_decay"] and payload["drifted_features"] == []
    assert payload["reasons"] == ["estimated performance decay (CBPE): test"]
    assert "DECAY ESTIMATED" in drift_report.estimated_performance_html(report)
