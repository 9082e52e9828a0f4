"""Prefect tasks of this stage: thin wrappers over `conveyor.services.training`."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from configs.settings import Settings
from conveyor.adapters.notify import notify_gate_refusal
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.prefect_runtime import retry_transient
from conveyor.adapters.raw_data import RawSnapshot, read_raw_snapshot
from conveyor.adapters.registry import ModelVersion, PromotionConflict
from conveyor.adapters.registry_records import code_version
from conveyor.domain import gates as G
from conveyor.services.card_builder import build_card
from conveyor.services.model_card import CARD_FILE, ModelCard, card_html, card_markdown
from conveyor.services.monitoring import monitoring_reference_files
from conveyor.services.training import (
    Candidate,
    Promotion,
    TrainingOutcome,
    _features,
    _registry,
    data_fingerprint,
    evaluate_gates,
    fit_and_evaluate,
    metrics_table,
    training_metadata,
    unchanged_champion,
)


@task(
    name="read-raw-window", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_transient, cache_policy=NO_CACHE
)
def read_training_window(settings: Settings, start: dt.date, end: dt.date) -> RawSnapshot:
    """The committed raw rows of the training window (days [start, end]) and the table version they came from."""
    snapshot = read_raw_snapshot(ObjectStore(settings.storage), settings, start, end)
    get_run_logger().info(
        "read %d raw rows for %s .. %s from %s version %d",
        len(snapshot.frame),
        start,
        end,
        snapshot.uri,
        snapshot.version,
    )
    return snapshot


@task(name="check-unchanged", cache_policy=NO_CACHE)
def skip_if_unchanged(
    training_set: pd.DataFrame, settings: Settings, model_name: str, model_config_name: str
) -> TrainingOutcome | None:
    """The outcome "nothing to do" when the champion already is this exact model; None when training should run."""
    ds, registry = settings.dataset, _registry(settings)
    champion = registry.champion(model_name)
    fingerprint = data_fingerprint(training_set, [ds.timestamp_column, *ds.feature_names, ds.label_column])
    if champion is None or not unchanged_champion(
        champion, fingerprint, model_config_name, code_version(settings.project_root)
    ):
        return None
    reason = (
        f"champion {champion.label} was trained on the same rows (fingerprint {fingerprint[:12]}), model "
        f"config {model_config_name!r} and code {champion.code_version}: nothing to retrain"
    )
    get_run_logger().info(reason)
    return TrainingOutcome(
        promoted=False,
        model_name=model_name,
        version=champion.version,
        champion_before=champion.version,
        champion_after=champion.version,
        gates_passed=champion.gates_passed,
        reasons=[reason],
        test_metrics=champion.test_metrics,
        version_uri=registry.version_uri(model_name, champion.version),
    )


@task(name="train-and-evaluate", cache_policy=NO_CACHE)
def train_candidate(training_set: pd.DataFrame, settings: Settings, model_config_name: str) -> Candidate:
    candidate = fit_and_evaluate(training_set, settings, model_config_name)
    get_run_logger().info(
        "trained %s on %d rows in %.1fs: test %s",
        model_config_name,
        candidate.training_rows,
        candidate.fit_seconds,
        {k: round(v, 4) for k, v in candidate.metrics["test"].items()},
    )
    return candidate


@task(
    name="evaluation-gates", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_transient, cache_policy=NO_CACHE
)
def run_gates(candidate: Candidate, settings: Settings, model_name: str) -> G.GateDecision:
    """Load the current champion (if any) and run every gate; publish the metrics table and the decision."""
    registry = _registry(settings)
    champion_version = registry.champion_version(model_name)
    champion = registry.load(model_name, champion_version) if champion_version is not None else None
    decision = evaluate_gates(candidate, champion, settings)
    create_table_artifact(
        metrics_table(candidate, decision.champion_metrics, decision.intervals_of("absolute_minimums")),
        key=f"{model_name}-metrics",
        description=f"{model_name}: challenger metrics by split, the test intervals (and the champion on the test set)",
    )
    create_markdown_artifact(
        decision.markdown(), key=f"{model_name}-gate-decision", description=f"{model_name}: evaluation gate decision"
    )
    get_run_logger().info(
        "gates %s%s",
        "PASSED" if decision.passed else "FAILED",
        "" if decision.passed else ": " + "; ".join(decision.reasons),
    )
    return decision


@task(name="model-card", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def build_model_card(
    candidate: Candidate,
    decision: G.GateDecision,
    settings: Settings,
    model_name: str,
    start: dt.date,
    end: dt.date,
    feature_service: str | None,
    raw: RawSnapshot | None,
    flow_run_id: str | None,
) -> ModelCard:
    """The version's model card: the gates' evidence plus calibration, importance and fairness on the test set."""
    champion = (
        None
        if decision.champion_version is None
        else _registry(settings).get_version(model_name, decision.champion_version)
    )
    metadata = training_metadata(candidate, decision, settings, start, end, feature_service, raw)
    code = code_version(settings.project_root)
    return build_card(candidate, decision, metadata, champion, settings, model_name, flow_run_id, code)


@task(
    name="register-model", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_transient, cache_policy=NO_CACHE
)
def register_candidate(
    candidate: Candidate,
    decision: G.GateDecision,
    settings: Settings,
    model_name: str,
    start: dt.date,
    end: dt.date,
    feature_service: str | None,
    raw: RawSnapshot | None = None,
    card: ModelCard | None = None,
) -> ModelVersion:
    """Register the candidate with its metadata, including the raw table version it was trained on, and its
    model card (HTML next to the version, JSON in its metadata, markdown as an artifact)."""
    registry = _registry(settings)
    plots = candidate.plots
    # The held-out rows the drift monitor's performance estimation calibrates on, and their precomputed profile.
    monitoring = monitoring_reference_files(candidate.test, settings, candidate.reference, candidate.task)

    def files(number: int) -> dict[str, bytes]:
        card_file = {} if card is None else {CARD_FILE: card_html(card, number, plots).encode()}
        return {**plots, **monitoring, **card_file}

    version = registry.register(
        model_name,
        candidate.model,
        training_metadata(
            candidate, decision, settings, start, end, feature_service, raw, None if card is None else card.to_json()
        ),
        candidate.reference,
        files=files,
        actor="training-flow",
        twin_rows=_features(candidate.test, settings.dataset),  # the ONNX twin's parity is checked on the test set
    )
    if card is not None:
        card_key = version.files[CARD_FILE]
        card_url = registry.store.presigned_url(card_key)  # one click from the UI: no s3:// link a browser opens
        create_markdown_artifact(
            card_markdown(card, version.version, registry.store.uri(card_key), card_url),
            key=f"{model_name}-model-card",
            description=f"{version.label}: model card",
        )
    uri = registry.version_uri(model_name, version.version)
    get_run_logger().info("ONNX twin of %s: %s (%s)", version.label, version.twin["status"], version.twin["reason"])
    create_link_artifact(
        uri,
        link_text=f"{version.label} metadata",
        key=f"{model_name}-registered-version",
        description=f"{version.label}: artifact, reference sample, the test-set plots of its task",
    )
    return version


@task(name="promote-model", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def promote_candidate(version: ModelVersion, decision: G.GateDecision, settings: Settings, reason: str) -> Promotion:
    """Promote only if the champion is still the one the gates compared against; if another promotion won in the
    meantime, the challenger is not promoted (it was judged against a champion that no longer serves)."""
    try:
        event = _registry(settings).promote(
            version.model_name,
            version.version,
            actor="training-flow",
            reason=reason,
            expected_champion=decision.champion_version,
        )
    except PromotionConflict as exc:
        get_run_logger().warning("not promoted: %s", exc)
        return Promotion(False, str(exc))
    if event is None:
        return Promotion(False, f"{version.label} already is the champion")
    get_run_logger().info("promoted %s (champion was v%s)", version.label, event.previous_champion)
    return Promotion(True, f"promoted {version.label} (audit event {event.seq})")


def finish(
    settings: Settings,
    version: ModelVersion,
    decision: G.GateDecision,
    promotion: Promotion | None,
    timings: dict[str, float],
) -> TrainingOutcome:
    """The run's outcome, also published as a markdown artifact (a failed gate is an outcome, not a crash)."""
    registry = _registry(settings)
    name = version.model_name
    reasons = list(decision.reasons)
    if promotion is None and decision.passed:
        reasons.append("gates passed; not promoted because promote=false")
    elif promotion is not None and not promotion.promoted:
        reasons.append(promotion.detail)
    result = TrainingOutcome(
        promoted=bool(promotion and promotion.promoted),
        model_name=name,
        version=version.version,
        champion_before=decision.champion_version,
        champion_after=registry.champion_version(name),
        gates_passed=decision.passed,
        reasons=reasons,
        test_metrics=version.test_metrics,
        version_uri=registry.version_uri(name, version.version),
        timings=timings,
    )
    if not decision.passed:
        notify_gate_refusal(settings, name, version.version, reasons)  # no-op unless notifications are configured
    verdict = "promoted to champion" if result.promoted else f"NOT promoted; champion stays v{result.champion_after}"
    lines = [f"## {version.label}: {verdict}", "", f"Registered at `{result.version_uri}`", ""]
    lines += [f"- {r}" for r in reasons] + ["", "| step | seconds |", "|---|---|"]
    lines += [f"| {step} | {seconds:.2f} |" for step, seconds in timings.items()]
    create_markdown_artifact("\n".join(lines), key=f"{name}-training-outcome", description=f"{name}: training outcome")
    return result
