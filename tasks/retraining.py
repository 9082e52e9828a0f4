"""Prefect tasks of this stage: thin wrappers over `conveyor.services.retraining`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from prefect import get_client, get_run_logger, task
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency._asyncio import AcquireConcurrencySlotTimeoutError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import FlowPauseTimeout, ObjectAlreadyExists, ObjectNotFound
from prefect.input import RunInput
from pydantic import Field

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.services.retraining import (
    CooldownDecision,
    LedgerKind,
    RetrainingOutcome,
    _outcome_from_training,
    concurrency_limit_name,
    cooldown_decision,
    now_utc,
    read_ledger,
    record,
)

if TYPE_CHECKING:
    from conveyor.adapters.registry import ModelRegistry
    from conveyor.adapters.registry_records import ModelVersion


def ensure_concurrency_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit if missing (idempotent; a racing creator is fine)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
        except ObjectAlreadyExists:
            pass


@contextmanager
def retraining_slot(settings: Settings, model_name: str) -> Iterator[bool]:
    """Hold the model's single retraining slot (Prefect global concurrency limit, limit 1). Yields False when
    another retraining holds it for longer than `retraining.concurrency_slot_timeout_seconds`: that trigger is
    redundant (the running retraining already trains on fresh data) and is recorded as suppressed."""
    name = concurrency_limit_name(model_name)
    ensure_concurrency_limit(name)
    with ExitStack() as held:
        try:
            held.enter_context(
                concurrency(
                    name, occupy=1, strict=True, timeout_seconds=settings.retraining.concurrency_slot_timeout_seconds
                )
            )
        except AcquireConcurrencySlotTimeoutError:
            yield False
            return
        yield True  # the slot is released when the block ends, whether it raised or not


@task(name="claim-retraining")
def claim_retraining(
    settings: Settings,
    model_name: str,
    run_id: str,
    trigger_event_id: str | None,
    drifted_features: list[str],
    final: bool,
) -> CooldownDecision:
    """Apply the cooldown. A suppressed trigger is always recorded in the ledger; with `final` (taken while
    holding the model's slot) an allowed one is recorded as 'started', which is what starts the cooldown."""
    store = ObjectStore(settings.storage)
    cooldown = dt.timedelta(hours=settings.retraining.cooldown_hours)
    # The newest 'started' entry decides; the ledger also holds every suppressed trigger, and grows with them.
    last_started = read_ledger(store, settings, model_name, kind="started", last=1)
    decision = cooldown_decision(last_started, now_utc(), cooldown)
    if decision.allowed and not final:
        return decision
    kind: LedgerKind = "started" if decision.allowed else "suppressed"
    record(
        store,
        settings,
        kind,
        model_name,
        run_id,
        trigger_event_id,
        reason=decision.reason,
        drifted_features=drifted_features,
    )
    get_run_logger().info("retraining of %s %s: %s", model_name, kind, decision.reason)
    return decision


@task(name="suppress-retraining")
def suppress_busy(
    settings: Settings, model_name: str, run_id: str, trigger_event_id: str | None, drifted_features: list[str]
) -> CooldownDecision:
    """Record a trigger that found another retraining of the model running (slot busy)."""
    reason = (
        f"concurrency: another retraining of {model_name} holds {concurrency_limit_name(model_name)} "
        f"(waited {settings.retraining.concurrency_slot_timeout_seconds:g}s)"
    )
    record(
        ObjectStore(settings.storage),
        settings,
        "suppressed",
        model_name,
        run_id,
        trigger_event_id,
        reason=reason,
        drifted_features=drifted_features,
    )
    return CooldownDecision(False, reason)


@task(name="finish-retraining")
def finish_retraining(
    settings: Settings, model_name: str, run_id: str, trigger_event_id: str | None, training: Any
) -> RetrainingOutcome:
    """Record the gate's decision in the ledger (and as an event); `training` is a TrainingOutcome or a
    RetrainingOutcome from the approval step."""
    outcome = (
        training if isinstance(training, RetrainingOutcome) else _outcome_from_training(model_name, run_id, training)
    )
    record(
        ObjectStore(settings.storage),
        settings,
        "completed",
        model_name,
        run_id,
        trigger_event_id,
        status=outcome.status,
        version=outcome.version,
        reasons=outcome.reasons[:10],
    )
    get_run_logger().info(
        "retraining of %s finished: %s (version %s) %s",
        model_name,
        outcome.status,
        outcome.version,
        "; ".join(outcome.reasons),
    )
    return outcome


class ApprovalInput(RunInput):
    """What a person answers in the Prefect UI's resume form (or `prefect.flow_runs.resume_flow_run(run_id,
    run_input={...})`; Prefect 3.8 has no `prefect flow-run resume` command) to promote a challenger."""

    approve: bool = Field(description="promote the challenger to champion")
    approver: str = Field(description="who decided (recorded in the registry audit log)")
    reason: str = Field(default="", description="why")


def await_approval(
    settings: Settings, model_name: str, trigger_event_id: str | None, training: Any
) -> RetrainingOutcome:
    """Approval mode: the challenger is registered, not promoted. If it passed the gates, pause this flow run
    until a person answers in the Prefect UI (or `resume_flow_run` with run_input); promote only on approval.
    Called from the flow itself: Prefect pauses flow runs, not task runs."""
    from conveyor.adapters.registry import ModelRegistry

    run_id = current_run_id_or_none() or "unknown"
    outcome = _outcome_from_training(model_name, run_id, training)
    store = ObjectStore(settings.storage)
    registry = ModelRegistry(store, settings)
    if outcome.version is None:
        return outcome
    challenger = registry.get_version(model_name, int(outcome.version))
    if not challenger.gates_passed:
        return outcome  # the gates refused it: nothing to approve, the champion stays
    if registry.champion_version(model_name) == challenger.version:
        return outcome  # unchanged window: training returned the champion itself, nothing to approve

    def note(kind: LedgerKind, **detail: Any) -> None:
        record(store, settings, kind, model_name, run_id, trigger_event_id, version=outcome.version, **detail)

    note("awaiting_approval")
    answer = _wait_for_answer(settings, model_name, outcome.version, note, _approval_description(registry, challenger))
    if not answer.approve:
        note("rejected", approver=answer.approver, reason=answer.reason)
        reasons = [f"rejected by {answer.approver}: {answer.reason}"]
        return RetrainingOutcome(model_name, "rejected_by_approver", run_id, outcome.version, reasons)
    return _promote_approved(registry, challenger, answer, note, run_id)


def _approval_description(registry: ModelRegistry, challenger: ModelVersion) -> str:
    """What the resume form shows above the answer: the gate verdict and links to the challenger's model card (a
    markdown artifact of this run in the Prefect UI, and the HTML next to the version)."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.settings import get_current_settings

    from conveyor.services.model_card import CARD_FILE, ModelCard, card_markdown

    gates = challenger.gates
    lines = [
        f"**{challenger.label}** passed the gates (vs champion v{gates.get('champion_version')}: "
        f"{gates.get('verdict') or 'no comparison'}). Read its model card before you approve:",
        "",
    ]
    card_key = challenger.files.get(CARD_FILE)
    html_uri = None if card_key is None else registry.store.uri(card_key)
    html_url = None if card_key is None else registry.store.presigned_url(card_key)  # opens in a browser
    if "card" in challenger.extra:
        card = ModelCard.from_json(challenger.extra["card"])
        artifact = create_markdown_artifact(
            card_markdown(card, challenger.version, html_uri, html_url),
            key=f"{challenger.model_name}-card-for-approval",
            description=f"{challenger.label}: model card (awaiting approval)",
        )
        ui = get_current_settings().ui_url
        link = f"{ui}/artifacts/artifact/{artifact}" if ui else f"artifact {artifact}"
        lines.append(f"- model card in this UI: [{challenger.label} model card]({link})")
    if html_uri is not None:
        lines.append(
            f"- as HTML: [open it]({html_url}) (the link expires), `{html_uri}` "
            f"(`conveyor models card {challenger.version} --output card.html` saves it)"
        )
    return "\n".join(lines)


def _wait_for_answer(
    settings: Settings, model_name: str, version: Any, note: Callable[..., None], description: str | None = None
) -> ApprovalInput:
    """Pause the flow run until someone answers; an unanswered pause fails the run, recorded in the ledger."""
    from prefect.flow_runs import pause_flow_run

    get_run_logger().info(
        "challenger %s v%s passed the gates; waiting for approval (resume this run in the UI)", model_name, version
    )
    timeout = settings.retraining.approval_timeout_seconds
    try:
        return pause_flow_run(
            wait_for_input=ApprovalInput.with_initial_data(description=description) if description else ApprovalInput,
            timeout=timeout,
            poll_interval=settings.retraining.approval_poll_seconds,
            key=f"approve-{model_name}-{version}",
        )
    except FlowPauseTimeout:  # the run fails (and notifies); the ledger says why, the champion stays
        note("failed", reason=f"no approval within retraining.approval_timeout_seconds={timeout}")
        raise


def _promote_approved(
    registry: ModelRegistry, challenger: ModelVersion, answer: ApprovalInput, note: Callable[..., None], run_id: str
) -> RetrainingOutcome:
    """Promote an approved challenger, unless the champion it was compared with has changed meanwhile."""
    from conveyor.adapters.registry import PromotionConflict

    model_name, version = challenger.model_name, challenger.version
    # The gates compared the challenger with the champion of that moment; a pause can last hours, and a person
    # may have promoted or rolled back meanwhile. An approval of a comparison that no longer holds is not applied.
    compared_with = challenger.gates.get("champion_version")
    try:
        registry.promote(
            model_name,
            version,
            actor=answer.approver,
            reason=answer.reason or "approved after drift retraining",
            expected_champion=compared_with,
        )
    except PromotionConflict as exc:
        note("superseded", approver=answer.approver, compared_with=compared_with, reason=str(exc))
        reasons = [f"approved by {answer.approver}, not promoted: {exc}"]
        return RetrainingOutcome(model_name, "champion_changed", run_id, str(version), reasons)
    note("approved", approver=answer.approver, reason=answer.reason)
    reasons = [f"approved by {answer.approver}: {answer.reason}"]
    return RetrainingOutcome(model_name, "promoted", run_id, str(version), reasons)


def current_run_id_or_none() -> str | None:
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return str(run_id) if run_id else None
