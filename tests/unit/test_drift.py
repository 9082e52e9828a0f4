"""Drift statistics and verdicts on the synthetic generator's drift knobs (pure: no servers)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from configs.settings import FeatureDriftThresholds, Settings, load_settings
from conveyor.demo.synthetic import ConceptDrift, CovariateDrift, Scenario, generate_window
from conveyor.domain import drift, drift_report
from conveyor.services.retraining import LedgerEntry, cooldown_decision

TRAIN_START = dt.date(2026, 1, 1)
TRAIN_DAYS = 30


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


def _window(
    settings: Settings, start: dt.date, days: int, scenario: Scenario | None = None, seed: int | None = None
) -> pd.DataFrame:
    generator = settings.generator if seed is None else settings.generator.model_copy(update={"seed": seed})
    return pd.concat(generate_window(start, days, settings.dataset, generator, scenario).values(), ignore_index=True)


def _model(settings: Settings, frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    ds = settings.dataset
    pre = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), ds.categorical_features)], remainder="passthrough"
    )
    model = Pipeline([("pre", pre), ("clf", HistGradientBoostingClassifier(max_iter=60, random_state=0))])
    return model.fit(frame[ds.feature_names], frame[ds.label_column])


def _compare(settings: Settings, reference: pd.DataFrame, current: pd.DataFrame, **kwargs) -> drift.DriftReport:  # type: ignore[no-untyped-def]
    return drift.compare(
        reference,
        current,
        settings.dataset,
        settings.drift,
        model_name="churn",
        model_version="1",
        window_start=dt.date(2026, 2, 1),
        window_end=dt.date(2026, 2, 7),
        **kwargs,
    )


# ---- statistics ---------------------------------------------------------------------------------------------
def test_ks_statistic_matches_scipy_and_psi_grows_with_shift() -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(0, 1, 20_000), rng.normal(0.3, 1, 15_000)
    assert drift.ks_statistic(ref, cur) == pytest.approx(ks_2samp(ref, cur).statistic, abs=1e-12)
    ints_a, ints_b = rng.poisson(3, 5_000).astype(float), rng.poisson(3.4, 7_000).astype(float)  # many ties
    assert drift.ks_statistic(ints_a, ints_b) == pytest.approx(ks_2samp(ints_a, ints_b).statistic, abs=1e-12)
    same = drift.numeric_psi(ref, rng.normal(0, 1, 15_000))
    small, large = drift.numeric_psi(ref, cur), drift.numeric_psi(ref, rng.normal(1.0, 1, 15_000))
    assert same < 0.01 < small < large
    assert large > 0.5


def test_categorical_psi_counts_unseen_categories() -> None:
    ref = pd.Series(["a"] * 50 + ["b"] * 50)
    psi_same, unseen, share = drift.categorical_psi(ref, pd.Series(["a"] * 40 + ["b"] * 40))
    assert psi_same == pytest.approx(0.0, abs=1e-9) and unseen == [] and share == 0
    psi, unseen, share = drift.categorical_psi(ref, pd.Series(["a"] * 40 + ["b"] * 30 + ["z"] * 30))
    assert unseen == ["z"] and share == pytest.approx(0.3)
    assert psi > 0.5  # 30% of rows in a bucket the reference never had


def test_integer_feature_with_ties_gets_fewer_bins_not_empty_ones() -> None:
    ref = np.repeat([0, 1, 2], [700, 200, 100]).astype(float)
    assert len(drift.quantile_edges(ref, 10)) <= 3
    assert drift.numeric_psi(ref, ref.copy()) == pytest.approx(0.0, abs=1e-12)


# ---- verdicts on the generator's knobs ----------------------------------------------------------------------
def test_no_drift_injected_gives_no_drift_verdict_over_several_windows(settings: Settings) -> None:
    """False-alarm rate over 6 weekly windows x 3 seeds right after the reference period (stationary data)."""
    windows, alarms = 0, []
    for seed in (7, 11, 23):
        reference = _window(settings, TRAIN_START, TRAIN_DAYS, seed=seed)
        for week in range(6):
            start = TRAIN_START + dt.timedelta(days=TRAIN_DAYS + 7 * week)
            report = _compare(settings, reference, _window(settings, start, 7, seed=seed))
            windows += 1
            if report.drifted:
                alarms.append((seed, start, report.reasons))
    print(f"false-alarm rate: {len(alarms)}/{windows} windows")
    assert alarms == []


def test_covariate_drift_on_one_feature_flags_that_feature(settings: Settings) -> None:
    reference = _window(settings, TRAIN_START, TRAIN_DAYS)
    start = dt.date(2026, 2, 10)
    scenario = Scenario(covariate_drift=[CovariateDrift(feature="days_since_last_login", start=start, shift=1.0)])
    report = _compare(settings, reference, _window(settings, start, 7, scenario))
    assert report.verdict == "drift"
    assert report.drifted_features == ["days_since_last_login"]
    flagged = next(f for f in report.features if f.name == "days_since_last_login")
    assert flagged.psi > settings.drift.psi_threshold or (flagged.ks or 0) > settings.drift.ks_threshold
    assert any("days_since_last_login" in r for r in report.reasons)


def test_categorical_drift_is_flagged(settings: Settings) -> None:
    reference = _window(settings, TRAIN_START, TRAIN_DAYS)
    start = dt.date(2026, 2, 10)
    scenario = Scenario(covariate_drift=[CovariateDrift(feature="contract_type", start=start, shift=0.4)])
    report = _compare(settings, reference, _window(settings, start, 7, scenario))
    assert report.drifted_features == ["contract_type"]


def _with_feature_drift(settings: Settings, name: str, thresholds: FeatureDriftThresholds) -> Settings:
    features = [f.model_copy(update={"drift": thresholds}) if f.name == name else f for f in settings.dataset.features]
    return settings.model_copy(update={"dataset": settings.dataset.model_copy(update={"features": features})})


def test_a_features_own_threshold_in_the_dataset_changes_the_verdict(settings: Settings) -> None:
    """dataset.yaml's `drift: {psi, ks}` on a feature's entry is the bound that feature is judged by."""
    reference = _window(settings, TRAIN_START, TRAIN_DAYS)
    start = dt.date(2026, 2, 10)
    scenario = Scenario(covariate_drift=[CovariateDrift(feature="days_since_last_login", start=start, shift=1.0)])
    current = _window(settings, start, 7, scenario)
    assert _compare(settings, reference, current).verdict == "drift"
    lenient = _with_feature_drift(settings, "days_since_last_login", FeatureDriftThresholds(psi=50, ks=1.0))
    report = _compare(lenient, reference, current)
    assert report.verdict == "no_drift"
    judged = next(f for f in report.features if f.name == "days_since_last_login")
    assert (judged.psi_threshold, judged.ks_threshold) == (50, 1.0)


def test_a_strict_feature_threshold_flags_a_window_the_defaults_pass(settings: Settings) -> None:
    reference = _window(settings, TRAIN_START, TRAIN_DAYS)
    current = _window(settings, dt.date(2026, 2, 10), 7)
    fixed = settings.model_copy(update={"drift": settings.drift.model_copy(update={"window_sized_bounds": False})})
    assert _compare(fixed, reference, current).verdict == "no_drift"
    strict = _with_feature_drift(fixed, "region", FeatureDriftThresholds(psi=1e-9))
    report = _compare(strict, reference, current)
    assert report.verdict == "drift" and "region" in report.drifted_features
    others = [f for f in report.features if f.name != "region"]
    assert all(f.psi_threshold == settings.drift.psi_threshold for f in others)  # only that feature's bound moved


def test_concept_drift_with_labels_flags_performance_decay(settings: Settings) -> None:
    reference = _window(settings, TRAIN_START, TRAIN_DAYS)
    model = _model(settings, reference)
    ds = settings.dataset
    holdout = _window(settings, TRAIN_START + dt.timedelta(days=TRAIN_DAYS), 7)
    scores = model.predict_proba(holdout[ds.feature_names])[:, 1]
    from sklearn.metrics import roc_auc_score

    test_auc = float(roc_auc_score(holdout[ds.label_column], scores))
    start = dt.date(2026, 2, 15)
    stable = drift.performance_check(
        holdout[ds.label_column].to_numpy(), scores, test_auc, settings.drift.max_metric_drop, start, start
    )
    assert stable is not None and not stable.decayed

    labelled = _window(settings, start, 7, Scenario(concept_drift=ConceptDrift(start=start, strength=1.0)))
    perf = drift.performance_check(
        labelled[ds.label_column].to_numpy(),
        model.predict_proba(labelled[ds.feature_names])[:, 1],
        test_auc,
        settings.drift.max_metric_drop,
        start,
        start + dt.timedelta(days=6),
    )
    assert perf is not None and perf.decayed
    # Concept drift leaves the features alone: the verdict is "drift" because of performance only.
    report = _compare(settings, reference, labelled, performance=perf)
    assert report.drifted_features == []
    assert report.verdict == "drift"
    assert any("performance decay" in r for r in report.reasons)


def test_prediction_drift_and_report_rendering(settings: Settings) -> None:
    reference = _window(settings, TRAIN_START, TRAIN_DAYS)
    reference["score"] = np.random.default_rng(1).beta(2, 5, len(reference))
    current = _window(settings, dt.date(2026, 2, 1), 7)
    shifted_scores = pd.Series(np.random.default_rng(2).beta(5, 2, 3000))
    report = _compare(settings, reference, current, current_scores=shifted_scores)
    assert report.prediction is not None and report.prediction.drifted
    assert report.verdict == "drift" and report.drifted_features == []
    page = drift_report.render_html(report, reference, current, shifted_scores, sample=5000)
    assert page.count("data:image/png;base64,") == 1 and "DRIFT" in page
    rows = drift_report.verdict_table(report)
    assert [r["column"] for r in rows] == [*settings.dataset.feature_names, "score"]
    assert report.to_json()["verdict"] == "drift"


def test_too_few_rows_is_insufficient_data_not_a_verdict(settings: Settings) -> None:
    reference = _window(settings, TRAIN_START, TRAIN_DAYS)
    report = _compare(settings, reference, reference.head(10))
    assert report.verdict == "insufficient_data" and not report.drifted


def test_missing_feature_column_is_named() -> None:
    s = load_settings()
    reference = _window(s, TRAIN_START, 3)
    with pytest.raises(KeyError, match="region"):
        _compare(s, reference, reference.drop(columns=["region"]))


# ---- guardrail logic ----------------------------------------------------------------------------------------
def test_cooldown_blocks_a_second_retraining_and_expires() -> None:
    t0 = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    ledger = [
        LedgerEntry("suppressed", "churn", (t0 - dt.timedelta(minutes=5)).isoformat(), "r0"),
        LedgerEntry("started", "churn", t0.isoformat(), "r1"),
    ]
    cooldown = dt.timedelta(hours=24)
    assert cooldown_decision([], t0, cooldown).allowed
    blocked = cooldown_decision(ledger, t0 + dt.timedelta(hours=1), cooldown)
    assert not blocked.allowed and "cooldown" in blocked.reason
    assert cooldown_decision(ledger, t0 + dt.timedelta(hours=25), cooldown).allowed
    assert cooldown_decision(ledger[:1], t0, cooldown).allowed  # suppressions do not extend the cooldown
