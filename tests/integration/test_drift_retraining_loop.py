"""The closed loop on a REAL `prefect server start` (the test harness does not evaluate triggers) and a `serve`
process started and stopped by PID, both on private ports:

drifted batch scored (batch-inference deployment run) -> drift-monitor (event trigger on its completion)
-> conveyor.drift.detected -> retraining (event trigger, payload as parameters) -> training flow + gate
-> promoted or champion kept. Then a burst of ten drift events -> exactly one retraining, nine suppressions.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.feature_store import apply_definitions  # module level: see test_batch_inference_flow.py
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.prefect_api import (
    TERMINAL_STATES,
    create_deployment_run,
    delete_deployments_and_automations,
    deployment_id,
    deployment_runs,
    events_named,
    format_timeline,
    timestamp,
    wait_for,
)
from conveyor.adapters.registry import ModelRegistry
from conveyor.demo.synthetic import CovariateDrift, Scenario
from conveyor.ops.local_stack import LocalStack, free_port, stop_process_group
from conveyor.services.ingest import land_synthetic
from conveyor.services.retraining import ledger_prefix, read_ledger

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DATA_START = dt.date(2026, 1, 1)
DRIFT_START = dt.date(2026, 3, 1)
SCORED_DAY = dt.date(2026, 3, 10)
MODEL = "churn"
# Small and fast: fewer customers, a short retraining window, runner polling every second.
LOOP_ENV = {
    "CONVEYOR_GENERATOR__N_ENTITIES": "2000",
    "CONVEYOR_RETRAINING__TRAINING_WINDOW_DAYS": "45",
    "CONVEYOR_RETRAINING__COOLDOWN_HOURS": "24",
    "CONVEYOR_TRAINING__MODEL_CONFIG_NAME": "quick",  # a small model: the loop is under test, not the fit
    "OMP_NUM_THREADS": "1",  # several flow-run processes share 2 cores: no thread oversubscription
    "PREFECT_RUNNER_POLL_FREQUENCY": "1",
}


@pytest.fixture(scope="module")
def loop(s3_server: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A private Prefect server + `python -m conveyor.ops.serve_loop` (batch-inference, drift-monitor, retraining)."""
    state = tmp_path_factory.mktemp("loop")
    settings = s3_server.model_copy(
        update={
            "local_stack": s3_server.local_stack.model_copy(update={"state_dir": state, "prefect_port": free_port()})
        }
    )
    server = LocalStack(settings)
    started = time.monotonic()
    server.up(services=("prefect",))
    server_seconds = time.monotonic() - started
    # Own bucket and Feast state: other tests of the session land other data in theirs.
    own = {
        **LOOP_ENV,
        "CONVEYOR_STORAGE__BUCKET": f"loop-{uuid.uuid4().hex[:10]}",
        "CONVEYOR_FEATURES__STATE_DIR": str(state / "feast"),
    }
    env = {**os.environ, **own, **server.client_env(), "PREFECT_HOME": str(state / "client")}
    saved = {k: os.environ.get(k) for k in own}
    os.environ.update(own)
    log = open(state / "serve.log", "wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "conveyor.ops.serve_loop", "batch-inference", "drift-monitor", "retraining"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = httpx.Client(base_url=server.prefect_api_url, timeout=120)  # SQLite server on a busy machine
    try:
        yield {
            "api": api,
            "env": env,
            "settings": load_settings(),
            "serve_log": state / "serve.log",
            "server_seconds": server_seconds,
            "serve_pid": serve.pid,
        }
    finally:
        stop_process_group(serve.pid, 30, serve)  # serve() pauses its deployments on SIGTERM, while the server is up
        log.close()
        delete_deployments_and_automations(api)
        api.close()
        server.down(services=("prefect",))
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@pytest.fixture(scope="module")
def champion(loop: dict[str, Any]) -> dict[str, Any]:
    """Raw data (stationary until DRIFT_START, then one feature shifts by one standard deviation) and a champion
    trained on the stationary window with the training flow's own functions: what each test here starts from,
    so each runs alone (setup, not under test: the retraining runs the whole training flow)."""
    settings = loop["settings"]
    store = ObjectStore(settings.storage)
    scenario = Scenario(covariate_drift=[CovariateDrift(feature="days_since_last_login", start=DRIFT_START)])
    land_synthetic(settings, store, DATA_START, (SCORED_DAY - DATA_START).days + 1, scenario, "loop-test")
    landed_at = time.time()
    version = _register_champion(store, settings, ModelRegistry(store, settings), DATA_START, dt.date(2026, 2, 15))
    assert version is not None
    return {"version": version, "landed_at": landed_at, "trained_at": time.time()}


def _new_cooldown_period(store: ObjectStore, settings: Settings) -> None:
    # The ledger is the cooldown's whole state: the other test's retraining must not suppress this one's.
    store.delete_prefix(ledger_prefix(settings, MODEL))


def _register_champion(
    store: ObjectStore, settings: Settings, registry: ModelRegistry, start: dt.date, end: dt.date
) -> int | None:
    from conveyor.adapters.raw_data import read_raw_window
    from conveyor.services.training import evaluate_gates, fit_and_evaluate, training_metadata

    apply_definitions(settings)  # what the training flow does first; batch inference reads through it

    candidate = fit_and_evaluate(
        read_raw_window(store, settings, start, end), settings, settings.training.model_config_name
    )
    decision = evaluate_gates(candidate, None, settings)
    assert decision.passed, decision
    version = registry.register(
        MODEL,
        candidate.model,
        training_metadata(candidate, decision, settings, start, end, settings.features.feature_service),
        candidate.reference,
        actor="loop-test",
    )
    registry.promote(MODEL, version.version, actor="loop-test", reason="initial champion")
    return registry.champion_version(MODEL)


def _python(env: dict[str, str], code: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_drifted_batch_leads_to_retraining_and_a_gate_decision(loop: dict[str, Any], champion: dict[str, Any]) -> None:
    api, settings = loop["api"], loop["settings"]
    store = ObjectStore(settings.storage)
    registry = ModelRegistry(store, settings)
    _new_cooldown_period(store, settings)
    champion_before = registry.champion_version(MODEL)
    timeline: list[tuple[str, float]] = [
        ("data landed", champion["landed_at"]),
        (f"champion v{champion['version']} trained", champion["trained_at"]),
    ]
    since = dt.datetime.now(dt.UTC).isoformat()
    before = {r["id"] for r in deployment_runs(api, "retraining")}

    wait_for(
        lambda: all(deployment_id(api, n) for n in ("batch-inference", "drift-monitor", "retraining")),
        90,
        "the served deployments",
        loop["serve_log"],
    )
    created = create_deployment_run(api, "batch-inference", {"scoring_date": SCORED_DAY.isoformat()})
    assert created["parameters"] == {"scoring_date": SCORED_DAY.isoformat()}
    timeline.append(("batch-inference run requested (the only manual step)", time.time()))

    def retraining_done() -> list[dict[str, Any]]:
        upstream = deployment_runs(api, "batch-inference") + deployment_runs(api, "drift-monitor")
        failed = [r for r in upstream if r["state_type"] in TERMINAL_STATES - {"COMPLETED"}]
        assert not failed, f"{failed[0]['name']} ended {failed[0]['state_type']}; see {loop['serve_log']}"
        runs = [r for r in deployment_runs(api, "retraining") if r["id"] not in before]
        return runs if runs and all(r["state_type"] in TERMINAL_STATES for r in runs) else []

    runs = wait_for(retraining_done, 240, "a retraining run to finish", loop["serve_log"])
    scoring = deployment_runs(api, "batch-inference")
    monitor = deployment_runs(api, "drift-monitor")
    assert [r["state_type"] for r in scoring] == ["COMPLETED"]
    assert [r["state_type"] for r in monitor] == ["COMPLETED"], monitor
    drift_events = events_named(api, "conveyor.drift.detected", since)
    assert len(drift_events) == 1
    payload = drift_events[0]["payload"]
    assert payload["drifted_features"] == ["days_since_last_login"]
    assert drift_events[0]["resource"]["prefect.resource.id"] == f"conveyor.model.{MODEL}"
    assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED", runs
    assert runs[0]["parameters"]["drifted_features"] == ["days_since_last_login"]
    assert runs[0]["parameters"]["window_end"] == SCORED_DAY.isoformat()
    assert runs[0]["parameters"]["trigger_event_id"] == drift_events[0]["id"]

    # The gate decided, and the registry agrees with what the ledger recorded.
    ledger = read_ledger(store, settings, MODEL)
    assert [e.kind for e in ledger] == ["started", "completed"]
    status = ledger[-1].detail["status"]
    champion_after = registry.champion_version(MODEL)
    if status == "promoted":
        assert champion_after == int(ledger[-1].detail["version"]) != champion_before
    else:
        assert status == "kept_champion" and champion_after == champion_before and ledger[-1].detail["reasons"]

    # Reports on the object store: JSON verdict + HTML with the histograms.
    report_root = f"{settings.storage.prefixes.reports}/drift/{MODEL}/dt={SCORED_DAY.isoformat()}"
    report = store.get_json(f"{report_root}/drift.json")
    assert report["verdict"] == "drift" and report["drifted_features"] == ["days_since_last_login"]
    assert b"data:image/png;base64," in store.get_bytes(f"{report_root}/drift.html")

    event_at = timestamp(drift_events[0]["occurred"])
    retrain_start = timestamp(runs[0]["start_time"])
    timeline += [
        ("scoring completed", timestamp(scoring[0]["end_time"])),
        ("drift monitor started", timestamp(monitor[0]["start_time"])),
        ("conveyor.drift.detected emitted", event_at),
        ("retraining run created", timestamp(runs[0]["created"])),
        ("retraining run started", retrain_start),
        (
            f"retraining finished: {status}, champion v{champion_before} -> v{champion_after}",
            timestamp(runs[0]["end_time"]),
        ),
    ]
    print("\ntimeline:\n" + "\n".join(format_timeline(timeline)))
    latency = retrain_start - event_at
    print(
        f"event -> retraining start: {latency:.1f}s (run created after "
        f"{timestamp(runs[0]['created']) - event_at:.1f}s); Prefect server start {loop['server_seconds']:.1f}s"
    )
    assert latency < 60


def test_a_burst_of_ten_drift_events_is_one_retraining_and_nine_suppressions(
    loop: dict[str, Any], champion: dict[str, Any]
) -> None:
    api, env, settings = loop["api"], loop["env"], loop["settings"]
    store = ObjectStore(settings.storage)
    assert ModelRegistry(store, settings).champion_version(MODEL) is not None  # from the `champion` fixture
    _new_cooldown_period(store, settings)
    before = {r["id"] for r in deployment_runs(api, "retraining")}
    emitted_at = time.time()
    _python(
        env,
        "from conveyor.adapters import events\n"
        "for i in range(10):\n"
        f"    events.emit_drift_detected('{MODEL}', {{'window_end': '{SCORED_DAY.isoformat()}', "
        "'drifted_features': ['days_since_last_login'], 'scores': {}, 'burst': i})\n"
        "events.flush()\n",
    )

    def burst_done() -> list[dict[str, Any]]:
        runs = [r for r in deployment_runs(api, "retraining") if r["id"] not in before]
        return runs if len(runs) == 10 and all(r["state_type"] in TERMINAL_STATES for r in runs) else []

    runs = wait_for(burst_done, 240, "ten retraining runs to finish", loop["serve_log"])
    assert {r["state_type"] for r in runs} == {"COMPLETED"}
    ledger = read_ledger(store, settings, MODEL)
    kinds = [e.kind for e in ledger]
    assert kinds.count("started") == 1 and kinds.count("completed") == 1, kinds
    assert kinds.count("suppressed") == 9, kinds
    suppressed = [e for e in ledger if e.kind == "suppressed"]
    # Each says why: the cooldown (a retraining already started) or the model's slot was busy (one running).
    assert all(e.detail["reason"].startswith(("cooldown", "concurrency")) for e in suppressed), suppressed
    assert len({e.trigger_event_id for e in ledger if e.kind in ("started", "suppressed")}) == 10  # none lost
    took = max(timestamp(r["end_time"]) for r in runs) - emitted_at
    print(f"burst: 10 events -> 1 retraining + 9 suppressions, all runs finished {took:.1f}s after the burst")
