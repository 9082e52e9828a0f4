"""The model registry against the real SeaweedFS S3 server: versions, checksums, champion, audit log, races."""

from __future__ import annotations

import datetime as dt
import io
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.registry import (
    ModelMetadata,
    ModelRegistry,
    PromotionConflict,
    RegistryError,
    RegistryState,
)
from conveyor.adapters.registry_records import TamperedArtifact
from conveyor.demo.synthetic import generate_window
from conveyor.services.training import build_pipeline

pytestmark = pytest.mark.integration
MODEL = "churn"


@pytest.fixture(scope="module")
def fitted(s3_server: Settings) -> tuple[Any, pd.DataFrame]:
    ds = s3_server.dataset
    generator = s3_server.generator.model_copy(update={"n_entities": 800})
    frame = pd.concat(generate_window(dt.date(2026, 1, 1), 10, ds, generator).values(), ignore_index=True)
    model = build_pipeline(ds, s3_server.training.models["quick"], seed=0)
    model.fit(frame[ds.feature_names], frame[ds.label_column])
    sample = frame[ds.feature_names].head(300)
    reference = sample.assign(score=model.predict_proba(sample)[:, 1])
    return model, reference


def metadata(settings: Settings, auc: float = 0.8, passed: bool = True) -> ModelMetadata:
    return ModelMetadata(
        metrics={"test": {"roc_auc": auc}},
        gates={"passed": passed, "reasons": [] if passed else ["absolute_minimums: roc_auc too low"]},
        training_window={"start": "2026-01-01", "end": "2026-01-10"},
        feature_service="churn_v1",
        feature_names=settings.dataset.feature_names,
        data_fingerprint="abc",
        params={"max_iter": 30},
    )


def register(registry: ModelRegistry, fitted: tuple[Any, pd.DataFrame], passed: bool = True) -> int:
    model, reference = fitted
    return registry.register(
        MODEL, model, metadata(registry.settings, passed=passed), reference, files={"roc.png": b"\x89PNG fake"}
    ).version


def test_register_and_load_round_trip(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    registry = ModelRegistry(store, s3_server)
    version = registry.register(MODEL, fitted[0], metadata(s3_server), fitted[1], files={"roc.png": b"png"})
    assert version.version == 1 and registry.register(MODEL, fitted[0], metadata(s3_server), fitted[1]).version == 2
    assert [v.version for v in registry.list_versions(MODEL)] == [1, 2]
    assert registry.champion(MODEL) is None
    with pytest.raises(RegistryError, match="no champion yet"):
        registry.load(MODEL)
    loaded = registry.load(MODEL, 1)
    ds = s3_server.dataset
    np.testing.assert_allclose(loaded.score(fitted[1]), fitted[1]["score"])
    assert loaded.version.sha256 and loaded.version.library_versions["scikit-learn"].startswith("1.")
    assert loaded.version.code_version is None or re.fullmatch(
        r"[0-9a-f]{40}(-dirty-[0-9a-f]{16})?", loaded.version.code_version
    )
    pd.testing.assert_frame_equal(registry.load_reference(MODEL, 1), fitted[1], check_dtype=False)
    assert registry.get_file(MODEL, 1, "roc.png") == b"png"
    assert set(registry.load_reference(MODEL, 1).columns) == {*ds.feature_names, "score"}
    assert [e.action for e in registry.audit_log(MODEL)] == ["register", "register"]


def test_tampered_artifact_is_refused_before_unpickling(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = ModelRegistry(store, s3_server)
    version = registry.register(MODEL, fitted[0], metadata(s3_server), fitted[1])
    registry.promote(MODEL, version.version, actor="test", reason="first")
    buffer = io.BytesIO()
    joblib.dump({"evil": True}, buffer)  # a valid pickle: only the checksum can tell
    store.put_bytes(version.artifact_key, buffer.getvalue())
    unpickled: list[object] = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: unpickled.append(a))
    with pytest.raises(TamperedArtifact, match=r"churn v1 model: SHA-256 of s3://.*model.joblib .*refusing to load"):
        registry.load(MODEL)
    assert unpickled == []
    store.put_bytes(version.reference_key, b"not parquet")
    with pytest.raises(TamperedArtifact, match="reference sample"):
        registry.load_reference(MODEL, version.version)


def test_promote_rollback_and_audit_log(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    registry = ModelRegistry(store, s3_server)
    v1, v2, v3 = (register(registry, fitted) for _ in range(3))
    failed = register(registry, fitted, passed=False)
    registry.promote(MODEL, v1, actor="alice", reason="first model")
    registry.promote(MODEL, v2, actor="bob", reason="better")
    assert registry.promote(MODEL, v2, actor="bob", reason="again") is None  # already champion: no event
    registry.promote(MODEL, v3, actor="carol", reason="even better")
    with pytest.raises(RegistryError, match="did not pass its gates .*roc_auc too low"):
        registry.promote(MODEL, failed, actor="dave", reason="yolo")
    assert registry.champion_version(MODEL) == v3

    event = registry.rollback(MODEL, actor="erin", reason="v3 misbehaves in production")
    assert (event.version, event.previous_champion, event.actor) == (v2, v3, "erin")
    assert registry.champion_version(MODEL) == v2
    registry.rollback(MODEL, actor="erin", reason="and v2 too")
    assert registry.champion_version(MODEL) == v1
    with pytest.raises(RegistryError, match="no previous champion to roll back to"):
        registry.rollback(MODEL, actor="erin", reason="nothing left")

    log = [e for e in registry.audit_log(MODEL) if e.action != "register"]
    assert [(e.action, e.version, e.actor) for e in log] == [
        ("promote", v1, "alice"),
        ("promote", v2, "bob"),
        ("promote", v3, "carol"),
        ("rollback", v2, "erin"),
        ("rollback", v1, "erin"),
    ]
    assert log[3].reason == "v3 misbehaves in production" and log[3].at
    forced = registry.promote(MODEL, failed, actor="dave", reason="hotfix, approved by on-call", force=True)
    assert forced is not None and forced.forced and registry.champion_version(MODEL) == failed


def test_prune_deletes_refused_artifacts_and_keeps_the_record(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    registry = ModelRegistry(store, s3_server)
    champion = register(registry, fitted)
    registry.promote(MODEL, champion, actor="alice", reason="first model")
    refused = register(registry, fitted, passed=False)
    forced = register(registry, fitted, passed=False)
    registry.promote(MODEL, forced, actor="dave", reason="hotfix", force=True)
    registry.rollback(MODEL, actor="dave", reason="hotfix over")
    created = dt.datetime.fromisoformat(registry.get_version(MODEL, forced).created_at)

    # Registered just now: nothing is 30 days old. A day later, only the refused, never-promoted version goes
    # (the forced one was champion once: its artifacts are what a rollback would need).
    assert registry.prune(MODEL, dt.timedelta(days=30), actor="ops", reason="tidy") == []
    later = created + dt.timedelta(days=1)
    assert [v.version for v in registry.prunable(MODEL, dt.timedelta(hours=1), now=later)] == [refused]
    pruned = registry.prune(MODEL, dt.timedelta(hours=1), actor="ops", reason="tidy", now=later)

    meta = registry.get_version(MODEL, refused)  # metadata stays: what was trained and why it was refused
    assert [(m.version, freed > 0) for m, freed in pruned] == [(refused, True)]
    assert meta.gates["reasons"] == ["absolute_minimums: roc_auc too low"]
    assert not any(store.exists(k) for k in (meta.artifact_key, meta.reference_key, *meta.files.values()))
    assert all(
        store.exists(k)
        for k in (registry.get_version(MODEL, forced).artifact_key, registry.get_version(MODEL, champion).artifact_key)
    )
    with pytest.raises(RegistryError, match=r"churn v2 model: s3://.*model.joblib is gone \(a pruned version"):
        registry.load(MODEL, refused)
    with pytest.raises(RegistryError, match="was pruned"):
        registry.promote(MODEL, refused, actor="dave", reason="oops", force=True)
    last = registry.audit_log(MODEL)[-1]
    assert (last.action, last.version, last.actor, last.champion_after) == ("prune", refused, "ops", champion)
    assert registry.champion_version(MODEL) == champion and registry.state(MODEL).pruned == (refused,)
    assert registry.prune(MODEL, dt.timedelta(hours=1), actor="ops", reason="again", now=later) == []


def test_a_version_promoted_while_prune_runs_is_kept(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    """prune lists the version, then someone force-promotes it before prune writes its event: the prune event's
    re-check on the newest state sees the champion and leaves the version (and its artifacts) alone."""
    registry = ModelRegistry(store, s3_server)
    refused = register(registry, fitted, passed=False)
    later = dt.datetime.fromisoformat(registry.get_version(MODEL, refused).created_at) + dt.timedelta(days=1)
    listed = registry.prunable(MODEL, dt.timedelta(hours=1), now=later)
    registry.promote(MODEL, refused, actor="dave", reason="hotfix", force=True)
    monkeypatch.setattr(registry, "prunable", lambda *a, **k: listed)

    assert registry.prune(MODEL, dt.timedelta(hours=1), actor="ops", reason="tidy", now=later) == []
    assert registry.champion_version(MODEL) == refused and registry.load(MODEL).version.version == refused
    assert [e.action for e in registry.audit_log(MODEL)] == ["register", "promote"]


def test_champion_is_derived_from_the_log_when_the_pointer_is_stale(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    registry = ModelRegistry(store, s3_server)
    v1, v2 = register(registry, fitted), register(registry, fitted)
    registry.promote(MODEL, v1, actor="a", reason="r")
    pointer = store.get_bytes(f"{s3_server.storage.prefixes.models}/{MODEL}/champion.json")
    registry.promote(MODEL, v2, actor="a", reason="r")
    # A writer that died between appending its event and moving the pointer leaves an old pointer behind.
    store.put_bytes(f"{s3_server.storage.prefixes.models}/{MODEL}/champion.json", pointer)
    assert registry.champion_version(MODEL) == v2
    store.delete_keys([f"{s3_server.storage.prefixes.models}/{MODEL}/champion.json"])
    assert registry.champion_version(MODEL) == v2
    registry.rollback(MODEL, actor="a", reason="r")
    assert ModelRegistry(store, s3_server).champion_version(MODEL) == v1


def _replay(registry: ModelRegistry) -> RegistryState:
    state = RegistryState()
    for event in registry.audit_log(MODEL):
        state = state.apply(event)  # raises if sequence numbers are not contiguous
    return state


def test_racing_promotions_against_the_same_champion_leave_exactly_one_winner(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    registry = ModelRegistry(store, s3_server)
    base = register(registry, fitted)
    registry.promote(MODEL, base, actor="setup", reason="base champion")
    challengers = [register(registry, fitted) for _ in range(8)]
    barrier = threading.Barrier(len(challengers))

    def race(version: int) -> str:
        own = ModelRegistry(ObjectStore(store.config), s3_server)  # own client, as separate runs would have
        barrier.wait()
        try:
            own.promote(MODEL, version, actor=f"run-{version}", reason="gates passed vs base", expected_champion=base)
            return "won"
        except PromotionConflict:
            return "lost"

    with ThreadPoolExecutor(len(challengers)) as pool:
        results = dict(zip(challengers, pool.map(race, challengers), strict=True))
    winners = [v for v, r in results.items() if r == "won"]
    assert len(winners) == 1, results
    promotions = [e for e in registry.audit_log(MODEL) if e.action == "promote"]
    assert [e.version for e in promotions] == [base, winners[0]]
    assert promotions[1].previous_champion == base
    assert registry.champion_version(MODEL) == winners[0] == _replay(registry).champion


def test_unconditional_racing_promotions_serialize_into_a_consistent_log(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    registry = ModelRegistry(store, s3_server)
    versions = [register(registry, fitted) for _ in range(6)]
    barrier = threading.Barrier(len(versions))

    def race(version: int) -> None:
        own = ModelRegistry(ObjectStore(store.config), s3_server)
        barrier.wait()
        own.promote(MODEL, version, actor=f"person-{version}", reason="manual")

    with ThreadPoolExecutor(len(versions)) as pool:
        list(pool.map(race, versions))
    promotions = [e for e in registry.audit_log(MODEL) if e.action == "promote"]
    assert sorted(e.version for e in promotions) == versions  # each applied exactly once
    for before, after in zip(promotions, promotions[1:], strict=False):
        assert after.previous_champion == before.version  # every event saw the state its predecessor left
    assert registry.champion_version(MODEL) == promotions[-1].version == _replay(registry).champion
    pointer = store.get_json(f"{s3_server.storage.prefixes.models}/{MODEL}/champion.json")
    assert pointer["champion"] == promotions[-1].version  # the pointer ends on the last event, not a stale one


def test_racing_promotions_from_separate_processes(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    import multiprocessing

    from tests.integration.registry_race import promote_in_process

    registry = ModelRegistry(store, s3_server)
    base = register(registry, fitted)
    registry.promote(MODEL, base, actor="setup", reason="base champion")
    challengers = [register(registry, fitted) for _ in range(4)]
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(challengers)), ctx.Queue()
    processes = [
        ctx.Process(target=promote_in_process, args=(store.config.model_dump_json(), MODEL, v, base, barrier, results))
        for v in challengers
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert all(p.exitcode == 0 for p in processes), [p.exitcode for p in processes]
    outcome = dict(results.get(timeout=5) for _ in challengers)
    winners = [v for v, r in outcome.items() if r == "won"]
    assert len(winners) == 1, outcome
    assert registry.champion_version(MODEL) == winners[0] == _replay(registry).champion
    assert [e.version for e in registry.audit_log(MODEL) if e.action == "promote"] == [base, winners[0]]
