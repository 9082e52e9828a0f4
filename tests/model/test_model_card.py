"""The model card: built from a real fit and gate decision (no servers), every section present in both renderings,
fairness numbers equal to fairlearn's own, and the JSON round-trips."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from configs.settings import Settings, load_settings
from conveyor.adapters.registry_records import LoadedModel, ModelVersion
from conveyor.demo.synthetic import generate_window
from conveyor.services.card_builder import build_card
from conveyor.services.model_card import SECTIONS, ModelCard, card_html, card_markdown
from conveyor.services.model_comparison import comparison_text, side_by_side
from conveyor.services.model_evaluation import sensitive_groups
from conveyor.services.training import Candidate, evaluate_gates, fit_and_evaluate, training_metadata

START, END = dt.date(2026, 1, 1), dt.date(2026, 2, 14)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="module")
def frame(settings: Settings) -> pd.DataFrame:
    generator = settings.generator.model_copy(update={"n_entities": 2000})
    days = generate_window(START, 45, settings.dataset, generator)
    return pd.concat(days.values(), ignore_index=True)


def _as_version(candidate: Candidate, settings: Settings, number: int) -> ModelVersion:
    decision = evaluate_gates(candidate, None, settings)
    meta = training_metadata(candidate, decision, settings, START, END, "churn_v1")
    return ModelVersion(
        **asdict(meta),
        model_name="churn",
        version=number,
        created_at="2026-02-15T00:00:00+00:00",
        artifact_key="",
        sha256="",
        reference_key="",
        reference_sha256="",
        files={},
        code_version="abc123",
        library_versions={},
        registered_by="test",
    )


@pytest.fixture(scope="module")
def card_and_candidate(frame: pd.DataFrame, settings: Settings) -> tuple[ModelCard, Candidate]:
    champion_candidate = fit_and_evaluate(frame, settings, "logistic")
    champion_meta = _as_version(champion_candidate, settings, 1)
    candidate = fit_and_evaluate(frame, settings, "quick")
    decision = evaluate_gates(candidate, LoadedModel(champion_meta, champion_candidate.model), settings)
    meta = training_metadata(candidate, decision, settings, START, END, "churn_v1")
    card = build_card(candidate, decision, meta, champion_meta, settings, "churn", "run-123", "def456")
    return card, candidate


def test_every_section_is_rendered_in_html_and_markdown(card_and_candidate: tuple[ModelCard, Candidate]) -> None:
    card, candidate = card_and_candidate
    page = card_html(card, 7, candidate.plots)
    text = card_markdown(card, 7, "s3://bucket/models/churn/versions/000007/card.html")
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in page, section
        assert f"## {section}" in text, section
    assert page.startswith("<!doctype html>") and "<title>Model card: churn v7</title>" in page
    assert page.count("data:image/png;base64,") == 2  # ROC and calibration plots embedded
    assert "Rank customers by their risk of churning" in page and "customer-analytics" in page
    assert "s3://bucket/models/churn/versions/000007/card.html" in text


def test_card_sections_hold_the_evaluation(card_and_candidate: tuple[ModelCard, Candidate], settings: Settings) -> None:
    card, candidate = card_and_candidate
    assert card.data["test_rows"] == len(candidate.test) and card.data["fingerprint"] == candidate.data_fingerprint
    roc = next(m for m in card.metrics if m["metric"] == "roc_auc")
    assert roc["test_interval"]["low"] < roc["test"] < roc["test_interval"]["high"]
    assert card.comparison is not None and card.comparison["champion_version"] == 1
    assert card.comparison["verdict"] in {"better", "not different", "worse"}
    assert card.comparison["gains"]["roc_auc gain"]["verdict"] == card.comparison["verdict"]
    assert ["model config", "quick", "logistic"] in card.comparison["side_by_side"]
    assert {s["slice"] for s in card.slices} == {
        *(f"contract_type={c}" for c in ("month_to_month", "one_year", "two_year")),
        *(f"region={r}" for r in ("east", "north", "south", "west")),
    }
    assert {r["feature"] for r in card.importance} == set(settings.dataset.feature_names)
    assert len(card.calibration["bins"]) == settings.card.calibration_bins
    assert {b["name"] for b in card.behaviour} == {"behaviour_invariance", "behaviour_directional"}
    assert card.lineage["flow_run_id"] == "run-123" and card.lineage["code_version"] == "def456"
    assert any("resamples rows, not entities" in item for item in card.limitations)


def test_fairness_matches_fairlearn(card_and_candidate: tuple[ModelCard, Candidate], settings: Settings) -> None:
    card, candidate = card_and_candidate
    test, label = candidate.test, settings.dataset.label_column
    y, decisions = test[label].to_numpy(), (test["score"].to_numpy() >= settings.scoring.threshold).astype(int)
    assert [a["feature"] for a in card.fairness] == ["region", "age"]
    for attribute, config in zip(card.fairness, settings.dataset.model_card.sensitive_attributes, strict=True):
        groups = sensitive_groups(test[config.feature], config)
        expected_dp = demographic_parity_difference(y, decisions, sensitive_features=groups)
        expected_eo = equalized_odds_difference(y, decisions, sensitive_features=groups)
        assert attribute["demographic_parity_difference"] == pytest.approx(expected_dp, abs=1e-6)
        assert attribute["equalized_odds_difference"] == pytest.approx(expected_eo, abs=1e-6)
        assert sum(g["rows"] for g in attribute["groups"]) == len(test)
        rates = {g["group"]: g["selection_rate"] for g in attribute["groups"]}
        assert max(rates.values()) - min(rates.values()) == pytest.approx(expected_dp, abs=1e-5)
    assert [g["group"] for g in card.fairness[1]["groups"]] == ["[18, 30]", "(30, 45]", "(45, 65]", "(65, 100]"]


def test_card_json_round_trips(card_and_candidate: tuple[ModelCard, Candidate]) -> None:
    card, _ = card_and_candidate
    again = ModelCard.from_json(json.loads(json.dumps(card.to_json())))
    assert again == card and card_markdown(again, 7) == card_markdown(card, 7)


def test_side_by_side_marks_what_differs(frame: pd.DataFrame, settings: Settings) -> None:
    a = _as_version(fit_and_evaluate(frame, settings, "quick"), settings, 2)
    b = _as_version(fit_and_evaluate(frame.iloc[: len(frame) // 2], settings, "logistic"), settings, 3)
    rows = {what: (left, right) for what, left, right in side_by_side(a, b)}
    assert rows["model config"] == ("quick", "logistic")
    assert rows["data fingerprint"][0] != rows["data fingerprint"][1]
    assert rows["test roc_auc [CI]"][0].startswith(f"{a.test_metrics['roc_auc']:.4f} [")
    text = comparison_text(a, b, "v2", "v3").splitlines()
    assert text[0].split() == ["v2", "v3"]
    assert any(line.startswith("* model config") for line in text)
    assert any(line.startswith("  feature service") for line in text)  # the same on both: not marked
    assert np.isfinite(a.test_metrics["roc_auc"])
