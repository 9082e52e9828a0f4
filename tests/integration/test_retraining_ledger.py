"""The retraining ledger on the real S3 server: the cooldown reads only the newest 'started' entry, however many
suppressed triggers the ledger has collected."""

from __future__ import annotations

import datetime as dt

import pytest

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.services.retraining import LedgerEntry, LedgerKind, append_ledger, cooldown_decision, read_ledger

pytestmark = pytest.mark.integration
MODEL = "churn"
T0 = dt.datetime(2026, 3, 1, 6, 0, tzinfo=dt.UTC)


def entry(kind: LedgerKind, minutes: int) -> LedgerEntry:
    return LedgerEntry(kind, MODEL, (T0 + dt.timedelta(minutes=minutes)).isoformat(), f"run-{minutes}")


def test_cooldown_reads_only_the_newest_started_entry(
    store: ObjectStore, s3_server: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = s3_server.model_copy(update={"storage": store.config})
    history = [
        entry("started", 0),
        entry("completed", 5),
        entry("started", 60),
        entry("awaiting_approval", 65),
        *(entry("suppressed", 70 + i) for i in range(20)),
        entry("completed", 100),
    ]
    for item in history:
        append_ledger(store, settings, item)

    reads: list[str] = []
    get_json = store.get_json
    monkeypatch.setattr(store, "get_json", lambda key: reads.append(key) or get_json(key))

    assert read_ledger(store, settings, MODEL, kind="started", last=1) == [history[2]]
    assert len(reads) == 1 and "-started-" in reads[0]
    assert read_ledger(store, settings, MODEL, kind="awaiting_approval") == [history[3]]
    assert [e.kind for e in read_ledger(store, settings, MODEL, last=2)] == ["suppressed", "completed"]
    assert read_ledger(store, settings, MODEL) == history  # time order, everything

    last_started = read_ledger(store, settings, MODEL, kind="started", last=1)
    blocked = cooldown_decision(last_started, T0 + dt.timedelta(hours=2), dt.timedelta(hours=24))
    assert not blocked.allowed and (T0 + dt.timedelta(minutes=60)).isoformat() in blocked.reason
    assert cooldown_decision(last_started, T0 + dt.timedelta(hours=26), dt.timedelta(hours=24)).allowed
