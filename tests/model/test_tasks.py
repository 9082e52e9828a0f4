"""Training, gates and the model card for each `dataset.task`, on the synthetic generator's regression and
multiclass modes (no servers): the task's metrics, its absolute bounds (which a model that learned nothing fails),
the champion comparison with signed gains, behavioural checks on the task's outputs, the plots and the card."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.registry_records import LoadedModel, ModelVersion
from conveyor.demo.synthetic import SYNTHETIC_CLASSES, generate_window
from conveyor.domain.failures import InvalidInput
from conveyor.domain.task_types import InvalidLabels, ModelTask
from conveyor.services.card_builder import build_card
from conveyor.services.model_card import card_html, card_markdown
from conveyor.services.training import Candidate, evaluate_gates, fit_and_evaluate, metrics_table, training_metadata

START, END = dt.date(2026, 1, 1), dt.date(2026, 2, 14)
TARGET_CLASS = '[{"feature": "support_calls_30d", "delta": 3, "direction": "decrease", "target_class": "premium"}]'
HIGHER_CHARGES = '[{"feature": "monthly_charges", "delta": 10, "direction": "increase"}]'
ENV = {
    "regression": {
        "CONVEYOR_DATASET__TASK": "regression",
        "CONVEYOR_DATASET__LABEL_COLUMN": "next_month_spend",
        "CONVEYOR_DATASET__DIRECTIONAL": HIGHER_CHARGES,  # higher charges: a higher mean predicted spend
    },
    "multiclass": {
        "CONVEYOR_DATASET__TASK": "multiclass",
        "CONVEYOR_DATASET__LABEL_COLUMN": "plan_tier",
        "CONVEYOR_DATASET__DIRECTIONAL": TARGET_CLASS,  # more support calls: premium becomes less likely
    },
}


def _settings(task: str) -> Settings:
    with pytest.MonkeyPatch.context() as env:
        for key, value in ENV[task].items():
            env.setenv(key, value)
        return load_settings()


def _frame(settings: Settings) -> pd.DataFrame:
    generator = settings.generator.model_copy(update={"n_entities": 2000})
    return pd.concat(generate_window(START, 45, settings.dataset, generator).values(), ignore_index=True)


@pytest.fixture(scope="module")
def regression() -> Iterator[tuple[Settings, pd.DataFrame]]:
    settings = _settings("regression")
    yield settings, _frame(settings)


@pytest.fixture(scope="module")
def multiclass() -> Iterator[tuple[Settings, pd.DataFrame]]:
    settings = _settings("multiclass")
    yield settings, _frame(settings)


def _version(candidate: Candidate, settings: Settings, number: int) -> ModelVersion:
    meta = training_metadata(candidate, evaluate_gates(candidate, None, settings), settings, START, END, None)
    fields = {"artifact_key": "", "sha256": "", "reference_key": "", "reference_sha256": "", "files": {}}
    return ModelVersion(
        **asdict(meta),
        **fields,
        model_name=settings.training.model_name,
        version=number,
        created_at="2026-02-15T00:00:00+00:00",
        code_version="abc",
        library_versions={},
        registered_by="test",
    )


def test_regression_trains_the_regressor_and_passes_its_gates(regression: tuple[Settings, pd.DataFrame]) -> None:
    settings, frame = regression
    assert settings.training.model_config_name == "regression"  # training.default_models[regression]
    candidate = fit_and_evaluate(frame, settings, settings.training.model_config_name)
    assert candidate.task == ModelTask("regression")
    assert set(candidate.metrics["test"]) == {"rows", "rmse", "mae", "r2"} and candidate.metrics["test"]["r2"] > 0.5
    decision = evaluate_gates(candidate, None, settings)
    assert decision.passed, decision.reasons
    floor = next(r for r in decision.results if r.name == "absolute_minimums")
    assert set(floor.metrics) == {"r2"} and floor.intervals["r2"]["low"] > settings.gates.min_r2
    assert set(floor.intervals) == {"rmse", "mae", "r2"}  # every metric's interval, for the card
    invariance = next(r for r in decision.results if r.name == "behaviour_invariance")
    assert 0 <= invariance.metrics["region_mean_abs_shift"] < settings.gates.max_invariance_shift  # in target stds
    directional = next(r for r in decision.results if r.name == "behaviour_directional")
    assert directional.metrics["monthly_charges+10_mean_change"] > 5
    assert set(candidate.plots) == {"predicted_vs_actual.png", "residuals.png"}
    assert [row["metric"] for row in metrics_table(candidate)] == ["rmse", "mae", "r2", "rows"]
    assert training_metadata(candidate, decision, settings, START, END, None).task == {
        "kind": "regression",
        "classes": [],
        "positive_class": None,
    }


def test_regression_champion_gain_is_signed_so_that_a_lower_rmse_is_positive(
    regression: tuple[Settings, pd.DataFrame],
) -> None:
    settings, frame = regression
    champion = fit_and_evaluate(frame, settings, "ridge")
    challenger = fit_and_evaluate(frame, settings, "regression")
    decision = evaluate_gates(challenger, LoadedModel(_version(champion, settings, 1), champion.model), settings)
    compared = next(r for r in decision.results if r.name == "challenger_vs_champion")
    gain = compared.metrics["rmse_gain"]
    assert gain == pytest.approx(compared.metrics["rmse_champion"] - compared.metrics["rmse_challenger"])
    assert compared.metrics["rmse_challenger"] < compared.metrics["rmse_champion"]  # boosting beats the linear fit
    assert gain > 0 and decision.verdict == "better", decision.reasons
    assert decision.intervals_of("challenger_vs_champion")["rmse gain"]["primary"] is True
    assert decision.champion_metrics is not None and "rmse" in decision.champion_metrics
    swapped = evaluate_gates(champion, LoadedModel(_version(challenger, settings, 2), challenger.model), settings)
    assert swapped.verdict == "worse" and not swapped.passed
    assert any("rmse is worse than the champion's" in r for r in swapped.reasons)


def test_a_regressor_that_learned_nothing_fails_the_r2_floor(regression: tuple[Settings, pd.DataFrame]) -> None:
    settings, frame = regression
    label = settings.dataset.label_column
    shuffled = frame.assign(**{label: np.random.default_rng(0).permutation(frame[label].to_numpy())})
    decision = evaluate_gates(fit_and_evaluate(shuffled, settings, "regression"), None, settings)
    assert not decision.passed
    assert any("test r2" in r and "(gates.min_r2)" in r for r in decision.reasons), decision.reasons


def test_an_entry_that_does_not_fit_the_task_is_refused_naming_it(
    regression: tuple[Settings, pd.DataFrame], multiclass: tuple[Settings, pd.DataFrame]
) -> None:
    with pytest.raises(InvalidInput, match=r"training\.models\.quick .*task regression needs a regressor"):
        fit_and_evaluate(regression[1], regression[0], "quick")
    with pytest.raises(InvalidInput, match=r"training\.models\.ridge .*task multiclass needs a classifier"):
        fit_and_evaluate(multiclass[1], multiclass[0], "ridge")


def test_bad_regression_targets_are_refused_naming_column_and_count(regression: tuple[Settings, pd.DataFrame]) -> None:
    settings, frame = regression
    label = settings.dataset.label_column
    broken = frame.assign(**{label: frame[label].astype(object)})
    broken.loc[[3, 8], label] = "n/a"
    with pytest.raises(InvalidLabels, match=r"label 'next_month_spend': 2 of \d+ values break rule 'a finite number'"):
        fit_and_evaluate(broken, settings, "regression")


def test_multiclass_records_the_models_class_order_and_passes_its_gates(
    multiclass: tuple[Settings, pd.DataFrame],
) -> None:
    settings, frame = multiclass
    candidate = fit_and_evaluate(frame, settings, "default")
    assert candidate.task.classes == tuple(str(c) for c in candidate.model.classes_) == tuple(sorted(SYNTHETIC_CLASSES))
    assert {"macro_f1", "balanced_accuracy", "log_loss", "recall_premium"} <= set(candidate.metrics["test"])
    assert [f"proba_{c}" for c in candidate.task.classes] == [c for c in candidate.test if c.startswith("proba_")]
    decision = evaluate_gates(candidate, None, settings)
    assert decision.passed, decision.reasons
    floor = decision.results[1]
    assert floor.name == "absolute_minimums" and floor.intervals["balanced_accuracy"]["low"] > 1 / 3 + 0.05
    directional = next(r for r in decision.results if r.name == "behaviour_directional")
    assert directional.metrics["support_calls_30d->premium+3_mean_change"] < 0
    invariance = next(r for r in decision.results if r.name == "behaviour_invariance")
    assert 0 < invariance.metrics["region_mean_abs_shift"] < 0.05  # mean total-variation distance
    assert set(candidate.plots) == {"confusion_matrix.png", "calibration.png"}


def test_a_multiclass_model_that_guesses_fails_the_chance_floor(multiclass: tuple[Settings, pd.DataFrame]) -> None:
    settings, frame = multiclass
    label = settings.dataset.label_column
    shuffled = frame.assign(**{label: np.random.default_rng(1).permutation(frame[label].to_numpy())})
    decision = evaluate_gates(fit_and_evaluate(shuffled, settings, "quick"), None, settings)
    assert not decision.passed
    assert any(
        "balanced_accuracy" in r and "1/classes + gates.min_balanced_accuracy_lift" in r for r in decision.reasons
    )


def test_the_card_states_the_task_and_its_sections(
    regression: tuple[Settings, pd.DataFrame], multiclass: tuple[Settings, pd.DataFrame]
) -> None:
    for settings, frame in (regression, multiclass):
        task = settings.dataset.task
        champion = fit_and_evaluate(frame, settings, "ridge" if task == "regression" else "logistic")
        candidate = fit_and_evaluate(frame, settings, settings.training.model_config_name)
        loaded = LoadedModel(_version(champion, settings, 1), champion.model)
        decision = evaluate_gates(candidate, loaded, settings)
        meta = training_metadata(candidate, decision, settings, START, END, None)
        card = build_card(candidate, decision, meta, loaded.version, settings, "m", "run", "code")
        text, page = card_markdown(card, 2), card_html(card, 2, candidate.plots)
        assert f"Task: {task} of `{settings.dataset.label_column}`" in text
        names = [m["metric"] for m in card.metrics]
        assert names[:3] == list(candidate.task.metric_names)
        for m in card.metrics[:3]:  # every metric of the task with its interval
            low, high = m["test_interval"]["low"], m["test_interval"]["high"]
            assert low <= m["test"] <= high, m
        assert page.count("data:image/png;base64,") == 2
        (region, age) = card.fairness
        assert region["feature"] == "region" and "demographic_parity_difference" not in region
        assert json.loads(json.dumps(card.to_json())) == card.to_json()
        if task == "regression":
            assert "## Calibration" not in text and region["columns"][:2] == ["rows", "mae"]
            assert "RMSE rise" in text and card.slices and "rmse gain" in card.comparison["gains"]  # type: ignore[index]
        else:
            assert "## Calibration" in text and region["columns"] == ["rows", "accuracy", "balanced_accuracy"]
            assert "macro F1 drop" in text and "Task: multiclass" in text and "basic, premium, standard" in text
        shown = task + (" (basic, premium, standard)" if task == "multiclass" else "")
        assert card.comparison is not None and card.comparison["side_by_side"][0] == ["task", shown, shown]


def test_the_catalogue_has_entries_for_every_task(regression: tuple[Settings, pd.DataFrame]) -> None:
    from conveyor.services.model_fitting import entries_for

    settings = regression[0]
    assert entries_for(settings) == ["regression", "ridge"]
    assert entries_for(settings, ModelTask("multiclass")) == ["default", "quick", "logistic"]
    assert entries_for(settings, ModelTask("binary", ("0", "1"))) == ["default", "quick", "logistic"]


@pytest.fixture(scope="module")
def binary() -> Iterator[tuple[Settings, pd.DataFrame]]:
    settings = load_settings()
    generator = settings.generator.model_copy(update={"n_entities": 1500})
    yield settings, pd.concat(generate_window(START, 40, settings.dataset, generator).values(), ignore_index=True)


def test_binary_labels_as_floats_or_named_classes_train_the_same_model(binary: tuple[Settings, pd.DataFrame]) -> None:
    settings, frame = binary
    label = settings.dataset.label_column
    ints = fit_and_evaluate(frame, settings, "quick")
    floats = fit_and_evaluate(frame.assign(**{label: frame[label].astype(float)}), settings, "quick")  # 1.0 / 0.0
    assert floats.metrics == ints.metrics and floats.task == ints.task == ModelTask("binary", ("0", "1"))
    named = settings.model_copy(update={"dataset": settings.dataset.model_copy(update={"positive_class": "churned"})})
    words = frame.assign(**{label: np.where(frame[label] == 1, "churned", "stayed")})
    by_name = fit_and_evaluate(words, named, "quick")
    assert by_name.metrics == ints.metrics
    assert by_name.task == ModelTask("binary", ("stayed", "churned"), "churned")  # (negative, positive)
    three = words.assign(**{label: np.where(np.arange(len(words)) % 50 == 0, "paused", words[label])})
    with pytest.raises(InvalidLabels, match=r"rule: a binary target has two classes, positive_class 'churned'"):
        fit_and_evaluate(three, named, "quick")


def test_a_champion_of_another_task_is_not_compared(
    regression: tuple[Settings, pd.DataFrame], binary: tuple[Settings, pd.DataFrame]
) -> None:
    settings, frame = regression
    champion = fit_and_evaluate(binary[1], binary[0], "quick")
    challenger = fit_and_evaluate(frame, settings, "ridge")
    decision = evaluate_gates(challenger, LoadedModel(_version(champion, binary[0], 1), champion.model), settings)
    assert not decision.passed
    (reason,) = [r for r in decision.reasons if r.startswith("challenger_vs_champion")]
    assert "champion v1 is a binary model" in reason and "this one regression" in reason
