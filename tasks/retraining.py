"""Retraining guardrails: a cooldown per model backed by a ledger on the object store, one retraining per model
at a time (a Prefect global concurrency limit), and an optional approval step.

The ledger is append-only (one small JSON object per entry under `reports/retraining/<model>/ledger/`), so
concurrent writers never overwrite each other; the cooldown decision is taken while holding the model's
concurrency slot, so two triggers can never both decide to retrain.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from prefect import get_client, get_run_logger, task
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency._asyncio import AcquireConcurrencySlotTimeoutError
from prefect.concurrency.sync import concurrency
from prefect.exceptions import FlowPauseTimeout, ObjectAlreadyExists, ObjectNotFound
from prefect.input import RunInput
from pydantic import Field

from configs.settings import Settings
from tasks import events
from tasks.object_store import ObjectStore

LedgerKind = Literal[
    "started", "suppressed", "completed", "failed", "awaiting_approval", "approved", "rejected", "superseded"
]


@dataclass(frozen=True)
class LedgerEntry:
    kind: LedgerKind
    model_name: str
    at: str
    run_id: str
    trigger_event_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def at_time(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.at)


@dataclass(frozen=True)
class CooldownDecision:
    """Whether a trigger may start a retraining now, and why not if it may not."""

    allowed: bool
    reason: str


def ledger_prefix(settings: Settings, model_name: str) -> str:
    return f"{settings.storage.prefixes.reports}/retraining/{model_name}/ledger/"


def concurrency_limit_name(model_name: str) -> str:
    return f"conveyor-retraining-{model_name}"


def append_ledger(store: ObjectStore, settings: Settings, entry: LedgerEntry) -> str:
    # Time-ordered key + a random suffix: lexicographic order is time order, and no two writers collide.
    stamp = entry.at_time.strftime("%Y%m%dT%H%M%S%fZ")
    key = f"{ledger_prefix(settings, entry.model_name)}{stamp}-{entry.kind}-{uuid.uuid4().hex[:8]}.json"
    store.put_json(key, asdict(entry))
    return key


def read_ledger(
    store: ObjectStore, settings: Settings, model_name: str, kind: LedgerKind | None = None, last: int | None = None
) -> list[LedgerEntry]:
    """The model's ledger in time order; only entries of `kind`, only the `last` ones, when given. Both filters
    work on the keys (time stamp and kind are in them), so only the entries returned are read."""
    keys = store.list_keys(ledger_prefix(settings, model_name))
    if kind is not None:
        keys = [k for k in keys if k.rsplit("/", 1)[-1].split("-", 1)[1].startswith(f"{kind}-")]
    if last is not None:
        keys = keys[-last:] if last > 0 else []
    return [LedgerEntry(**store.get_json(k)) for k in keys]


def cooldown_decision(ledger: list[LedgerEntry], now: dt.datetime, cooldown: dt.timedelta) -> CooldownDecision:
    """Pure: a retraining started within `cooldown` before `now` blocks another one."""
    started = [e for e in ledger if e.kind == "started"]
    if not started:
        return CooldownDecision(True, "no earlier retraining")
    last = max(e.at_time for e in started)
    if now - last < cooldown:
        wait = cooldown - (now - last)
        return CooldownDecision(
            False, f"cooldown: last retraining started {last.isoformat()}, {cooldown} cooldown has {wait} left"
        )
    return CooldownDecision(True, f"last retraining started {last.isoformat()}, outside the {cooldown} cooldown")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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


def record(
    store: ObjectStore,
    settings: Settings,
    kind: LedgerKind,
    model_name: str,
    run_id: str,
    trigger_event_id: str | None,
    **detail: Any,
) -> LedgerEntry:
    entry = LedgerEntry(kind, model_name, now_utc().isoformat(), run_id, trigger_event_id, detail)
    append_ledger(store, settings, entry)
    events.emit_retraining(kind, model_name, {"run_id": run_id, "trigger_event_id": trigger_event_id, **detail})
    return entry


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


def training_window(settings: Settings, window_end: dt.date | None) -> tuple[dt.date, dt.date]:
    """The fresh window: `retraining.training_window_days` days up to the drifted window's last day."""
    end = window_end or now_utc().date()
    return end - dt.timedelta(days=settings.retraining.training_window_days - 1), end


@dataclass(frozen=True)
class RetrainingOutcome:
    """What a retraining trigger led to: suppressed, or trained with the gate's (and a person's) decision."""

    model_name: str
    status: Literal["suppressed", "promoted", "kept_champion", "rejected_by_approver", "champion_changed"]
    run_id: str
    version: str | None = None
    reasons: list[str] = field(default_factory=list)


def _outcome_from_training(model_name: str, run_id: str, training: Any) -> RetrainingOutcome:
    version = None if training.version is None else str(training.version)
    status: Literal["promoted", "kept_champion"] = "promoted" if training.promoted else "kept_champion"
    return RetrainingOutcome(model_name, status, run_id, version, list(training.reasons))


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


def await_approval(settings: Settings, model_name: str, training: Any) -> RetrainingOutcome:
    """Approval mode: the challenger is registered, not promoted. If it passed the gates, pause this flow run
    until a person answers in the Prefect UI (or `resume_flow_run` with run_input); promote only on approval.
    Called from the flow itself: Prefect pauses flow runs, not task runs."""
    from prefect.flow_runs import pause_flow_run

    from tasks.registry import ModelRegistry, PromotionConflict

    run_id = current_run_id_or_none() or "unknown"
    outcome = _outcome_from_training(model_name, run_id, training)
    store = ObjectStore(settings.storage)
    registry = ModelRegistry(store, settings)
    if outcome.version is None:
        return outcome
    version = int(outcome.version)
    challenger = registry.get_version(model_name, version)
    if not challenger.gates_passed:
        return outcome  # the gates refused it: nothing to approve, the champion stays
    if registry.champion_version(model_name) == version:
        return outcome  # unchanged window: training returned the champion itself, nothing to approve
    record(store, settings, "awaiting_approval", model_name, run_id, None, version=outcome.version)
    get_run_logger().info(
        "challenger %s v%s passed the gates; waiting for approval (resume this run in the UI)",
        model_name,
        outcome.version,
    )
    try:
        answer = pause_flow_run(
            wait_for_input=ApprovalInput,
            timeout=settings.retraining.approval_timeout_seconds,
            poll_interval=settings.retraining.approval_poll_seconds,
            key=f"approve-{model_name}-{outcome.version}",
        )
    except FlowPauseTimeout:  # the run fails (and notifies); the ledger says why, the champion stays
        record(
            store,
            settings,
            "failed",
            model_name,
            run_id,
            None,
            version=outcome.version,
            reason=f"no approval within retraining.approval_timeout_seconds="
            f"{settings.retraining.approval_timeout_seconds}",
        )
        raise
    if not answer.approve:
        record(
            store,
            settings,
            "rejected",
            model_name,
            run_id,
            None,
            version=outcome.version,
            approver=answer.approver,
            reason=answer.reason,
        )
        return RetrainingOutcome(
            model_name,
            "rejected_by_approver",
            run_id,
            outcome.version,
            [f"rejected by {answer.approver}: {answer.reason}"],
        )
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
        record(
            store,
            settings,
            "superseded",
            model_name,
            run_id,
            None,
            version=outcome.version,
            approver=answer.approver,
            compared_with=compared_with,
            reason=str(exc),
        )
        return RetrainingOutcome(
            model_name,
            "champion_changed",
            run_id,
            outcome.version,
            [f"approved by {answer.approver}, not promoted: {exc}"],
        )
    record(
        store,
        settings,
        "approved",
        model_name,
        run_id,
        None,
        version=outcome.version,
        approver=answer.approver,
        reason=answer.reason,
    )
    return RetrainingOutcome(
        model_name, "promoted", run_id, outcome.version, [f"approved by {answer.approver}: {answer.reason}"]
    )


def current_run_id_or_none() -> str | None:
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return str(run_id) if run_id else None
