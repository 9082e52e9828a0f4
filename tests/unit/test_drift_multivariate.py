"""Multivariate drift (PCA reconstruction error) on the generator's ground truth: a broken correlation that no
single feature shows, and clean windows (pure: no servers)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from configs.settings import Settings, load_settings
from conveyor.demo.synthetic import CorrelationDrift, Scenario, generate_window
from conveyor.domain import drift
from conveyor.domain.multivariate_drift import ReconstructionProfile

TRAIN_START = dt.date(2026, 1, 1)
AFTER = TRAIN_START + dt.timedelta(days=30)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


def _window(
    settings: Settings, start: dt.date, days: int, scenario: Scenario | None = None, seed: int = 7
) -> pd.DataFrame:
    generator = settings.generator.model_copy(update={"seed": seed})
    return pd.concat(generate_window(start, days, settings.dataset, generator, scenario).values(), ignore_index=True)


def test_shuffled_feature_keeps_its_distribution_and_loses_its_correlation(settings: Settings) -> None:
    scenario = Scenario(correlation_drift=[CorrelationDrift(feature="total_charges", start=AFTER)])
    clean, broken = _window(settings, AFTER, 7), _window(settings, AFTER, 7, scenario)
    assert sorted(clean["total_charges"]) == sorted(broken["total_charges"])
    assert clean["total_charges"].corr(clean["monthly_charges"]) > 0.4
    assert abs(broken["total_charges"].corr(broken["monthly_charges"])) < 0.1


@pytest.mark.parametrize("size", [300, 1000, 10_000])
def test_correlation_change_is_caught_by_multivariate_not_by_single_features(settings: Settings, size: int) -> None:
    reference = _window(settings, TRAIN_START, 30)
    scenario = Scenario(correlation_drift=[CorrelationDrift(feature="total_charges", start=AFTER)])
    current = _window(settings, AFTER, 42, scenario).sample(n=size, random_state=0)
    profile = ReconstructionProfile.fit(reference, settings.dataset, settings.drift)
    multivariate = profile.judge(current, settings.drift)
    assert multivariate.drifted and multivariate.reconstruction_error > multivariate.upper
    report = drift.compare(
        reference,
        current,
        settings.dataset,
        settings.drift.model_copy(update={"min_rows": 50}),
        model_name="m",
        model_version="1",
        window_start=AFTER,
        window_end=AFTER,
        multivariate=multivariate,
    )
    assert report.drifted_features == []  # every marginal is the reference's
    assert report.verdict == "drift" and any("multivariate drift" in r for r in report.reasons)


def test_no_multivariate_alarm_on_clean_windows(settings: Settings) -> None:
    """18 weekly windows (3 seeds x 6 weeks after the reference) + 12 subsamples of 300..10,000 rows."""
    alarms, windows = [], 0
    for seed in (7, 11, 23):
        reference = _window(settings, TRAIN_START, 30, seed=seed)
        profile = ReconstructionProfile.fit(reference, settings.dataset, settings.drift)
        currents = [_window(settings, AFTER + dt.timedelta(days=7 * week), 7, seed=seed) for week in range(6)]
        pool = _window(settings, AFTER, 42, seed=seed)
        currents += [pool.sample(n=size, random_state=1) for size in (300, 1000, 3000, 10_000)]
        for current in currents:
            windows += 1
            result = profile.judge(current, settings.drift)
            if result.drifted:
                alarms.append((seed, len(current), result.reasons))
    print(f"\nmultivariate false alarms: {len(alarms)}/{windows}")
    assert windows == 30 and alarms == []


def test_profile_stored_at_registration_judges_as_the_fitted_one(settings: Settings) -> None:
    from conveyor.domain.monitoring_profile import profile_from_bytes, profile_to_bytes

    reference = _window(settings, TRAIN_START, 30)
    profile = ReconstructionProfile.fit(reference, settings.dataset, settings.drift)
    data = profile_to_bytes(profile, {"roc_auc": 0.01}, settings.drift)
    loaded = profile_from_bytes(data, settings.drift)
    assert loaded is not None and loaded[1] == {"roc_auc": 0.01}
    scenario = Scenario(correlation_drift=[CorrelationDrift(feature="total_charges", start=AFTER)])
    current = _window(settings, AFTER, 7, scenario)
    assert loaded[0].judge(current, settings.drift) == profile.judge(current, settings.drift)
    # Built with other settings: not used (the monitor refits).
    assert profile_from_bytes(data, settings.drift.model_copy(update={"pca_variance": 0.8})) is None
