"""Assemble a version's model card from what training and the gates produced (the candidate, the gate decision,
its metadata and the champion's), adding the card-only evaluation: calibration, importance, fairness."""

from __future__ import annotations

from typing import Any

from configs.settings import DatasetConfig, Settings
from conveyor.adapters.registry_records import ModelMetadata, library_versions
from conveyor.domain import gates as G
from conveyor.domain.task_gates import bootstrap_inputs
from conveyor.domain.task_types import ModelTask
from conveyor.services.evaluation_plots import PLOT_FILES
from conveyor.services.model_card import ModelCard
from conveyor.services.model_comparison import side_by_side
from conveyor.services.model_evaluation import calibration_table, fairness_table, importance_table
from conveyor.services.training import Candidate, _features, native_threads, primary_metric, table_metrics


def _result(decision: G.GateDecision, name: str) -> G.GateResult | None:
    return next((r for r in decision.results if r.name == name), None)


def _slices(candidate: Candidate, decision: G.GateDecision, settings: Settings) -> list[dict[str, Any]]:
    """The primary metric per slice: this version's interval, and with a champion the paired gain interval."""
    ds, gates, task = settings.dataset, settings.gates, candidate.task
    primary, test = primary_metric(settings, task), candidate.test
    segments = test[[s for s in settings.dataset.slices if s in test.columns]]
    y, scores = bootstrap_inputs(task, test[ds.label_column], test)
    parts = G.slice_bootstraps(
        y, {G.CHALLENGER: scores}, segments, primary, gates, settings.training.seed, task.is_classification
    )
    compared = _result(decision, "slice_no_regression")
    out = []
    for part in parts:
        row: dict[str, Any] = {"slice": part.name, "rows": part.rows, "metric": primary}
        if part.result is None:
            row["verdict"] = (
                f"skipped (< {gates.min_slice_rows} rows{' or one class' if task.is_classification else ''})"
            )
        else:
            row["challenger"] = part.result.interval(G.CHALLENGER, primary).to_json()
        gain = None if compared is None else compared.intervals.get(part.name)
        if gain is not None:
            row["gain"], row["verdict"] = gain, gain["verdict"]
            challenger = row["challenger"]["estimate"]
            row["champion"] = {"estimate": challenger - gain["estimate"], "low": None, "high": None}
        out.append(row)
    return out


def _limitations(
    candidate: Candidate, slices: list[dict[str, Any]], fairness: list[dict[str, Any]], settings: Settings
) -> list[str]:
    """The configured limitations plus what this evaluation itself shows."""
    ds = settings.dataset
    found = list(settings.dataset.model_card.known_limitations)
    test = candidate.test
    keys = ds.entity_columns
    if set(keys) <= set(test.columns) and (entities := len(test[keys].drop_duplicates())) < len(test):
        found.append(
            f"The test set holds {len(test):,} rows of {entities:,} "
            f"{'/'.join(keys)} values: the bootstrap resamples rows, not entities, so rows of one entity are "
            "treated as independent and the intervals may be somewhat too narrow."
        )
    share, since = settings.training.test_fraction, candidate.split["test_start"][:10]
    found.append(
        f"Test rows are the latest {share:.0%} by event time ({since} on): the metrics describe that period, "
        "not the future."
    )
    skipped = [s["slice"] for s in slices if "challenger" not in s]
    if skipped:
        found.append(f"Slices too small to judge (< {settings.gates.min_slice_rows} test rows): {', '.join(skipped)}.")
    for attribute in fairness:
        if attribute["small_groups"]:
            found.append(
                f"Fairness groups of {attribute['feature']} with fewer than {settings.card.min_group_rows} test rows "
                f"(their rates are noisy): {', '.join(attribute['small_groups'])}."
            )
    return found


def _metrics(candidate: Candidate, decision: G.GateDecision) -> list[dict[str, Any]]:
    """The task's metrics on every split, with the test interval where the gates computed one."""
    intervals = decision.intervals_of("absolute_minimums")
    return [
        {
            "metric": name,
            **{part: candidate.metrics[part].get(name) for part in ("train", "validation", "test")},
            "test_interval": intervals.get(name),
        }
        for name in table_metrics(candidate.task)
    ]


def _comparison(
    decision: G.GateDecision,
    metadata: ModelMetadata,
    champion: ModelMetadata | None,
    settings: Settings,
    code: str | None,
) -> dict[str, Any] | None:
    if champion is None or decision.champion_version is None:
        return None
    compared = _result(decision, "challenger_vs_champion")
    return {
        "champion_version": decision.champion_version,
        "verdict": decision.verdict,
        "rule": settings.gates.promote_when,
        "gains": {} if compared is None else compared.intervals,
        # this version is not registered yet: its code version is the one training runs now
        "side_by_side": [
            [what, code or "-", right] if what == "code version" else [what, left, right]
            for what, left, right in side_by_side(metadata, champion)
        ],
    }


def build_card(
    candidate: Candidate,
    decision: G.GateDecision,
    metadata: ModelMetadata,
    champion: ModelMetadata | None,
    settings: Settings,
    model_name: str,
    flow_run_id: str | None,
    code: str | None,
) -> ModelCard:
    """The card of the version being registered: what training and the gates found, plus the card-only
    evaluation on the test rows (calibration, permutation importance, fairness)."""
    ds, cfg, seed, task = settings.dataset, settings.card, settings.training.seed, candidate.task
    test = candidate.test
    y, scores = bootstrap_inputs(task, test[ds.label_column], test)
    with native_threads(settings):
        importance = importance_table(candidate.model, _features(test, ds), test[ds.label_column], cfg, seed, task)
    fairness = fairness_table(
        y, scores, test, cfg, ds.model_card.sensitive_attributes, settings.scoring.threshold, task
    )
    slices = _slices(candidate, decision, settings)
    return ModelCard(
        model_name=model_name,
        purpose=ds.model_card.purpose,
        owner=ds.model_card.owner,
        data=_data_section(metadata),
        features=_features_section(ds, metadata),
        training=_training_section(candidate, seed),
        metrics=_metrics(candidate, decision),
        gates=_gates_section(decision, settings),
        comparison=_comparison(decision, metadata, champion, settings, code),
        slices=slices,
        calibration=_calibration(task, y, scores, cfg.calibration_bins),
        importance=importance,
        fairness=fairness,
        behaviour=_behaviour(decision),
        limitations=_limitations(candidate, slices, fairness, settings),
        lineage=_lineage(metadata, flow_run_id, code),
        plots=[name for name in PLOT_FILES[task.kind] if name in candidate.plots],
        task={**task.to_json(), "label": ds.label_column, "primary_metric": primary_metric(settings, task)},
    )


def _data_section(metadata: ModelMetadata) -> dict[str, Any]:
    """The training window and the data it was read from."""
    return {
        **metadata.training_window,
        "fingerprint": metadata.data_fingerprint,
        "data_uri": metadata.data_uri,
        "data_version": metadata.data_version,
    }


def _features_section(ds: DatasetConfig, metadata: ModelMetadata) -> dict[str, Any]:
    return {
        "numeric": ds.numeric_features,
        "categorical": ds.categorical_features,
        "feature_service": metadata.feature_service,
    }


def _training_section(candidate: Candidate, seed: int) -> dict[str, Any]:
    """The model entry, estimator and parameters that were fitted, and how long the fit took."""
    return {
        "model_config_name": candidate.model_config_name,
        "estimator": candidate.spec.estimator,
        "params": {**candidate.spec.params, "scale_numeric": candidate.spec.scale_numeric},
        "seed": seed,
        "fit_seconds": candidate.fit_seconds,
    }


def _gates_section(decision: G.GateDecision, settings: Settings) -> dict[str, Any]:
    """The gate verdict and the bootstrap behind its intervals."""
    # Every gate's intervals use the same number of resamples: the first one found records it (the setting when
    # no gate computed an interval).
    any_interval = next((i for r in decision.results for i in r.intervals.values()), {})
    return {
        "passed": decision.passed,
        "verdict": decision.verdict,
        "reasons": decision.reasons,
        "champion_version": decision.champion_version,
        "resamples": any_interval.get("resamples", settings.gates.bootstrap_resamples),
        "confidence": settings.gates.confidence,
    }


def _behaviour(decision: G.GateDecision) -> list[dict[str, Any]]:
    """The behavioural checks' results (the gates named `behaviour_*`)."""
    return [
        {"name": r.name, "passed": r.passed, "metrics": r.metrics, "reasons": r.reasons}
        for r in decision.results
        if r.name.startswith("behaviour_")
    ]


def _lineage(metadata: ModelMetadata, flow_run_id: str | None, code: str | None) -> dict[str, Any]:
    """What the version was built from: code, flow run, data and library versions."""
    return {
        "code_version": code,
        "flow_run_id": flow_run_id,
        "data_uri": metadata.data_uri,
        "data_version": metadata.data_version,
        "libraries": library_versions(),
    }


def _calibration(task: ModelTask, y: Any, scores: Any, bins: int) -> dict[str, Any]:
    """Classification only: binary, P(positive) against the positive rate; multiclass, the predicted class's
    probability against how often it is right (confidence calibration). Regression: empty (no section)."""
    if task.kind == "binary":
        return calibration_table(y, scores, bins)
    if task.kind == "multiclass":
        right = (scores.argmax(axis=1) == y).astype(int)
        return {**calibration_table(right, scores.max(axis=1), bins), "of": "the predicted class's probability"}
    return {}
