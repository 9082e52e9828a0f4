"""Retraining guardrails: a cooldown per model backed by a ledger on the object store, one retraining per model
at a time (a Prefect global concurrency limit, in tasks/retraining.py), and an optional approval step.

The ledger is append-only (one small JSON object per entry under `reports/retraining/<model>/ledger/`), so
concurrent writers never overwrite each other; the cooldown decision is taken while holding the model's
concurrency slot, so two triggers can never both decide to retrain.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from configs.settings import Settings
from conveyor.adapters import events
from conveyor.adapters.object_store import ObjectStore

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
