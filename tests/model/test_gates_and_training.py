"""Evaluation gates, behavioural checks and training reproducibility, on small in-memory data (no servers)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from configs.settings import DirectionalCheck, Settings, load_settings
from conveyor.demo.synthetic import generate_window
from conveyor.domain import gates as G
from conveyor.domain.bootstrap import Interval
from conveyor.services.training import Candidate, evaluate_gates, fit_and_evaluate, metrics_table, time_split


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="module")
def frame(settings: Settings) -> pd.DataFrame:
    generator = settings.generator.model_copy(update={"n_entities": 2000})
    days = generate_window(dt.date(2026, 1, 1), 45, settings.dataset, generator)
    return pd.concat(days.values(), ignore_index=True)


@pytest.fixture(scope="module")
def quick(frame: pd.DataFrame, settings: Settings) -> Candidate:
    return fit_and_evaluate(frame, settings, "quick")


def test_time_split_orders_parts_by_event_time(frame: pd.DataFrame, settings: Settings) -> None:
    ts = settings.dataset.timestamp_column
    split = time_split(frame.sample(frac=1.0, random_state=1), ts, 0.15, 0.2)
    assert split.train[ts].max() < split.validation[ts].min() <= split.validation[ts].max() < split.test[ts].min()
    assert len(split.train) + len(split.validation) + len(split.test) == len(frame)
    assert abs(len(split.test) / len(frame) - 0.2) < 0.01


def test_time_split_refuses_to_leave_a_part_empty(settings: Settings) -> None:
    one_instant = pd.DataFrame({settings.dataset.timestamp_column: [pd.Timestamp("2026-01-01", tz="UTC")] * 10})
    with pytest.raises(ValueError, match="left the train set empty"):
        time_split(one_instant, settings.dataset.timestamp_column, 0.15, 0.2)


def test_training_is_reproducible_whatever_the_row_order(
    frame: pd.DataFrame, settings: Settings, quick: Candidate
) -> None:
    again = fit_and_evaluate(frame.sample(frac=1.0, random_state=3), settings, "quick")
    assert again.metrics == quick.metrics
    assert again.data_fingerprint == quick.data_fingerprint
    np.testing.assert_array_equal(again.test["score"].to_numpy(), quick.test["score"].to_numpy())
    changed = frame.assign(**{settings.dataset.label_column: 1 - frame[settings.dataset.label_column]})
    assert fit_and_evaluate(changed, settings, "quick").data_fingerprint != quick.data_fingerprint


def test_first_model_passes_the_gates_with_no_champion(quick: Candidate, settings: Settings) -> None:
    decision = evaluate_gates(quick, None, settings)
    assert decision.passed, decision.reasons
    assert {r.name for r in decision.results} >= {
        "absolute_minimums",
        "minimum_training_rows",
        "behaviour_invariance",
        "behaviour_directional",
    }
    table = {row["metric"]: row for row in metrics_table(quick, None, decision.intervals_of("absolute_minimums"))}
    low, high = (float(x) for x in table["roc_auc"]["test_ci"].strip("[]").split(", "))
    assert low < table["roc_auc"]["test"] < high and table["log_loss"]["test_ci"] == ""
    assert decision.intervals_of("challenger_vs_champion") == {}  # no champion: no comparison
    assert set(quick.plots) == {"roc.png", "calibration.png"}
    assert all(png.startswith(b"\x89PNG") for png in quick.plots.values())


def test_shuffled_labels_are_refused_by_the_absolute_gate(frame: pd.DataFrame, settings: Settings) -> None:
    label = settings.dataset.label_column
    rng = np.random.default_rng(0)
    corrupted = frame.assign(**{label: rng.permutation(frame[label].to_numpy())})
    candidate = fit_and_evaluate(corrupted, settings, "quick")
    decision = evaluate_gates(candidate, None, settings)
    assert not decision.passed
    assert any("roc_auc" in r and "gates.min_roc_auc" in r for r in decision.reasons), decision.reasons


def test_too_few_training_rows_fail(settings: Settings) -> None:
    result = G.minimum_rows_gate(10, settings.gates)
    assert not result.passed and "10 training rows < min_training_rows 1000" in result.reasons[0]
    assert G.minimum_rows_gate(settings.gates.min_training_rows, settings.gates).passed


def _at(estimate: float, half_width: float = 0.01) -> Interval:
    return Interval(estimate, estimate - half_width, estimate + half_width, 0.95, 1000)


def test_absolute_gate_names_each_failed_threshold(settings: Settings) -> None:
    test = {"roc_auc": _at(0.9), "pr_auc": _at(0.1), "brier": _at(0.3)}
    result = G.absolute_gate(test, settings.gates)
    assert not result.passed and len(result.reasons) == 2
    assert "pr_auc" in result.reasons[0] and "brier" in result.reasons[1]
    assert "lower bound 0.0900 is not >= 0.3" in result.reasons[0]
    assert not G.absolute_gate({**test, "roc_auc": _at(float("nan"))}, settings.gates).passed


def test_absolute_floors_are_checked_on_the_unfavourable_bound(settings: Settings) -> None:
    floor = settings.gates.min_roc_auc
    above_on_the_point_only = {"roc_auc": _at(floor + 0.005), "pr_auc": _at(0.6), "brier": _at(0.1)}
    result = G.absolute_gate(above_on_the_point_only, settings.gates)
    assert not result.passed and f"lower bound {floor - 0.005:.4f} is not >= {floor}" in result.reasons[0]
    assert result.intervals["roc_auc"]["low"] == pytest.approx(floor - 0.005)
    brier_ceiling = settings.gates.max_brier
    near_ceiling = {"roc_auc": _at(0.8), "pr_auc": _at(0.6), "brier": _at(brier_ceiling - 0.005)}
    assert "upper bound" in G.absolute_gate(near_ceiling, settings.gates).reasons[0]


def test_slice_gate_catches_a_regression_hidden_in_one_segment(settings: Settings) -> None:
    rng = np.random.default_rng(0)
    n = 4000
    y = pd.Series(rng.integers(0, 2, n))
    segment = pd.DataFrame({"region": np.where(np.arange(n) < n // 2, "north", "south")})
    good = np.clip(y * 0.6 + rng.random(n) * 0.5, 0, 1)
    champion = good.copy()
    challenger = good.copy()
    south = segment["region"].to_numpy() == "south"
    challenger[south] = rng.random(south.sum())  # noise in the south only
    result = G.slice_gate(y, challenger, champion, segment, settings.gates)
    assert not result.passed
    assert len(result.reasons) == 1 and result.reasons[0].startswith("slice region=south")
    assert G.slice_gate(y, champion, champion, segment, settings.gates).passed


def test_behaviour_checks_catch_a_model_that_reads_other_columns_or_goes_the_wrong_way(
    quick: Candidate, settings: Settings
) -> None:
    ds = settings.dataset
    features = quick.test[ds.feature_names]

    def leaky(frame: pd.DataFrame) -> np.ndarray:  # reads whatever columns it is given
        return np.asarray(frame.select_dtypes("number").sum(axis=1) % 1.0)

    invariance = G.invariance_gate(leaky, features, ds.feature_names, ds.invariant_features, settings.gates)
    assert not invariance.passed and "unused extra column" in invariance.reasons[0]

    def fewer_calls_more_churn(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + frame["support_calls_30d"].to_numpy()))

    checks = [DirectionalCheck(feature="support_calls_30d", delta=3)]
    directional = G.directional_gate(fewer_calls_more_churn, features, checks, ds.feature_names)
    assert not directional.passed and "expected an increase" in directional.reasons[0]

    def real(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(quick.model.predict_proba(frame[ds.feature_names])[:, 1])

    assert G.directional_gate(real, features, checks, ds.feature_names).passed
    assert G.invariance_gate(real, features, ds.feature_names, ds.invariant_features, settings.gates).passed


def test_gate_decision_lists_every_reason(settings: Settings) -> None:
    decision = G.decide(
        [
            G.minimum_rows_gate(5, settings.gates),
            G.absolute_gate({"roc_auc": _at(0.5), "pr_auc": _at(0.5), "brier": _at(0.1)}, settings.gates),
        ],
        3,
    )
    assert not decision.passed and decision.champion_version == 3
    assert len(decision.reasons) == 2 and decision.reasons[0].startswith("minimum_training_rows:")
    assert "FAILED: the champion stays" in decision.markdown()
    assert decision.to_json()["reasons"] == decision.reasons
