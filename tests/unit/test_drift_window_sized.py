"""Bounds sized to the window (drift_bounds.py) on the generator's ground truth: false alarms on clean windows of
several sizes, and drift still found at every size (pure: no servers)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from configs.settings import Settings, load_settings
from conveyor.demo.synthetic import CovariateDrift, Scenario, generate_window
from conveyor.domain import drift, drift_bounds

TRAIN_START = dt.date(2026, 1, 1)
SIZES = (100, 300, 1000, 3000, 10_000)
SEEDS = (7, 11, 23)
SAMPLES_PER_SIZE = 4  # x 3 seeds x 5 sizes = 60 clean windows


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


def _window(settings: Settings, start: dt.date, days: int, seed: int, scenario: Scenario | None = None) -> pd.DataFrame:
    generator = settings.generator.model_copy(update={"seed": seed})
    return pd.concat(generate_window(start, days, settings.dataset, generator, scenario).values(), ignore_index=True)


def _judge(settings: Settings, reference: pd.DataFrame, current: pd.DataFrame, window_sized: bool) -> drift.DriftReport:
    config = settings.drift.model_copy(update={"window_sized_bounds": window_sized, "min_rows": 50})
    day = TRAIN_START
    return drift.compare(
        reference,
        current,
        settings.dataset,
        config,
        model_name="m",
        model_version="1",
        window_start=day,
        window_end=day,
    )


def test_psi_no_change_bound_holds_its_false_alarm_rate_on_simulated_counts() -> None:
    """The chi-square tail scaled to the resampled mean: checked against 20,000 direct simulations."""
    rng = np.random.default_rng(0)
    shares = np.array([0.1] * 10)
    reference_counts = (shares * 20_000).astype(int)
    for rows in (100, 1000, 100_000):
        bound = drift_bounds.psi_null_bound(reference_counts, rows, 0.01, 200, rng)
        simulated = drift_bounds._psi_rows(
            rng.multinomial(20_000, shares, size=20_000).astype(float),
            rng.multinomial(rows, shares, size=20_000).astype(float),
        )
        assert 0.003 < np.mean(simulated > bound) < 0.02, rows


def test_ks_no_change_bound_matches_scipy_critical_value() -> None:
    rows = 2_000
    bound = drift_bounds.ks_null_bound(rows, rows, 0.05)
    rng = np.random.default_rng(1)
    exceed = np.mean(
        [stats.ks_2samp(rng.normal(size=rows), rng.normal(size=rows)).statistic > bound for _ in range(2000)]
    )
    assert 0.035 < exceed < 0.07  # nominal 0.05 (the statistic is a lattice at equal sizes); 2000 draws: +/- 0.005


def test_js_and_wasserstein_are_zero_for_identical_and_grow_with_shift() -> None:
    ref = np.sort(np.random.default_rng(2).normal(size=5000))
    assert drift_bounds.wasserstein_in_std(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert drift_bounds.wasserstein_in_std(ref, ref + 0.5) == pytest.approx(0.5 / ref.std(), rel=1e-6)
    assert drift_bounds.jensen_shannon(np.array([5, 5]), np.array([5, 5])) == pytest.approx(0.0)
    assert drift_bounds.jensen_shannon(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)


def test_false_alarms_on_clean_windows_of_several_sizes(settings: Settings) -> None:
    """60 clean windows (5 sizes x 3 seeds x 4 samples of the 6 weeks after the reference period)."""
    counts: dict[tuple[int, bool], int] = {}
    for seed in SEEDS:
        reference = _window(settings, TRAIN_START, 30, seed)
        pool = _window(settings, TRAIN_START + dt.timedelta(days=30), 42, seed)
        for size in SIZES:
            for sample in range(SAMPLES_PER_SIZE):
                current = pool.sample(n=size, random_state=sample)
                for window_sized in (True, False):
                    report = _judge(settings, reference, current, window_sized)
                    counts[size, window_sized] = counts.get((size, window_sized), 0) + report.drifted
    per_size = len(SEEDS) * SAMPLES_PER_SIZE
    print("\nrows | false alarms, window-sized bounds | fixed thresholds | windows")
    for size in SIZES:
        print(f"{size} | {counts[size, True]} | {counts[size, False]} | {per_size}")
    assert sum(counts[size, True] for size in SIZES) <= 1  # drift.false_alarm_rate 1%: ~0.6 expected in 60
    # The fixed thresholds are noise at a hundred rows: what the window-sized bounds are for.
    assert counts[100, False] >= per_size // 2


@pytest.mark.parametrize("size", [300, 1000, 10_000])
def test_covariate_drift_is_still_found_at_every_window_size(settings: Settings, size: int) -> None:
    reference = _window(settings, TRAIN_START, 30, 7)
    start = TRAIN_START + dt.timedelta(days=30)
    scenario = Scenario(covariate_drift=[CovariateDrift(feature="days_since_last_login", start=start, shift=1.0)])
    current = _window(settings, start, 42, 7, scenario).sample(n=size, random_state=0)
    report = _judge(settings, reference, current, window_sized=True)
    assert report.drifted_features == ["days_since_last_login"]
    flagged = next(f for f in report.features if f.name == "days_since_last_login")
    assert flagged.psi_no_change is not None and flagged.ks_no_change is not None
    # The report names the rule that fired: the threshold, or the no-change quantile on a small window.
    rule = "no-change" if max(flagged.ks_no_change, flagged.psi_no_change) > 0.2 else "threshold"
    assert any(rule in r for r in flagged.reasons), flagged.reasons


def test_small_window_bound_is_the_no_change_quantile_and_says_so(settings: Settings) -> None:
    reference = _window(settings, TRAIN_START, 30, 7)
    report = _judge(settings, reference, reference.sample(n=100, random_state=0), window_sized=True)
    numeric = [f for f in report.features if f.kind == "numeric"]
    assert all(f.ks_bound is not None and f.ks_bound > settings.drift.ks_threshold for f in numeric)
    large = _judge(settings, reference, reference.sample(n=8000, random_state=0), window_sized=True)
    assert all(f.ks_bound == settings.drift.ks_threshold for f in large.features if f.kind == "numeric")
