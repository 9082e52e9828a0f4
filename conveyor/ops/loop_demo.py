"""Show the closed loop on the running stack: drifted data -> scored by a deployment run -> drift monitor (event
trigger on scoring's completion) -> conveyor.drift.detected -> retraining (event trigger) -> gate decision.

The deployments are served by `python -m conveyor.ops.serve_loop` in a child process started and stopped by PID here;
everything after the one scoring request happens through Prefect triggers, with no manual step.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectNotFound, ObjectStore
from conveyor.adapters.prefect_api import (
    TERMINAL_STATES,
    api_client,
    create_deployment_run,
    delete_deployments_and_automations,
    deployment_id,
    deployment_runs,
    events_named,
    format_timeline,
    timestamp,
    wait_for,
)
from conveyor.adapters.prefect_runtime import current_run_id
from conveyor.demo.synthetic import CovariateDrift, Scenario
from conveyor.domain.drift import report_prefix
from conveyor.ops.local_stack import stop_process_group
from conveyor.services.ingest import land_synthetic
from conveyor.services.retraining import read_ledger

LOOP_DEPLOYMENTS = ("batch-inference", "drift-monitor", "retraining")
DRIFTED_FEATURE = "days_since_last_login"


@dataclass(frozen=True)
class LoopResult:
    decision: str
    timeline: list[str]
    event_to_retraining_start_s: float | None


def demonstrate_retraining_loop(
    settings: Settings, api_url: str, drift_start: dt.date, days: int = 7, timeout: float = 900
) -> LoopResult:
    log_path = settings.local_stack.state_dir / "logs" / "serve-loop.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "2", "OMP_NUM_THREADS": "1"}
    with open(log_path, "ab") as log:
        runner = subprocess.Popen(
            [sys.executable, "-m", "conveyor.ops.serve_loop", *LOOP_DEPLOYMENTS],
            cwd=settings.project_root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    with api_client(api_url) as api:
        try:
            return _drive(settings, api, drift_start, days, timeout, log_path)
        finally:
            # serve() pauses its deployments on SIGTERM; it must go while the server is still up.
            stop_process_group(runner.pid, 60, runner)
            # Left in place, their triggers would queue runs nobody serves (e.g. the next pipeline's scoring
            # would trigger a drift monitor). `conveyor deploy` creates them again for a worker.
            delete_deployments_and_automations(api, LOOP_DEPLOYMENTS)


def _runs_since(api: httpx.Client, deployment: str, since: float) -> list[dict[str, Any]]:
    """Runs of `deployment` caused by this demonstration: created after its scoring request."""
    return [r for r in deployment_runs(api, deployment) if timestamp(r["created"]) >= since]


def _drive(
    settings: Settings, api: httpx.Client, drift_start: dt.date, days: int, timeout: float, log_path: Any
) -> LoopResult:
    store = ObjectStore(settings.storage)
    began = time.time()
    since = dt.datetime.fromtimestamp(began, dt.UTC).isoformat()
    timeline: list[tuple[str, float]] = [("loop runner started", began)]
    wait_for(lambda: all(deployment_id(api, n) for n in LOOP_DEPLOYMENTS), 180, "the served deployments", log_path)

    scenario = Scenario(covariate_drift=[CovariateDrift(feature=DRIFTED_FEATURE, start=drift_start, shift=1.0)])
    landed = land_synthetic(settings, store, drift_start, days, scenario, current_run_id())
    timeline.append(
        (f"drifted data landed: {DRIFTED_FEATURE} +1 std from {drift_start} ({landed.rows} rows)", time.time())
    )
    scored_day = landed.days[-1]
    requested_at = time.time()
    scoring_id = create_deployment_run(api, "batch-inference", {"scoring_date": scored_day.isoformat()})["id"]
    timeline.append((f"batch-inference run requested for {scored_day} (the only manual step)", time.time()))

    def finished() -> tuple[str, list[dict[str, Any]]] | None:
        # Stage by stage: our scoring run, then the monitor its completion triggered, then the retraining.
        scoring = api.get(f"/flow_runs/{scoring_id}").json()
        monitors = _runs_since(api, "drift-monitor", requested_at)
        failed = [r for r in [scoring, *monitors] if r["state_type"] in TERMINAL_STATES - {"COMPLETED"}]
        if failed:
            raise RuntimeError(f"flow run {failed[0]['name']} ended {failed[0]['state_type']}; see {log_path}")
        if (
            scoring["state_type"] != "COMPLETED"
            or not monitors
            or any(r["state_type"] != "COMPLETED" for r in monitors)
        ):
            return None
        retrains = _runs_since(api, "retraining", requested_at)
        if retrains and all(r["state_type"] in TERMINAL_STATES for r in retrains):
            return "retrained", retrains
        # The monitor finished; without an event within a grace period, no drift was detected.
        done_at = max(timestamp(r["end_time"]) for r in monitors)
        if not retrains and not events_named(api, "conveyor.drift.detected", since) and time.time() - done_at > 30:
            return "no drift detected", []
        return None

    outcome, retrains = wait_for(finished, timeout, "the drift monitor and retraining runs", log_path, interval=2)
    timeline += _monitor_judgement(settings, store, scored_day, api, requested_at)
    return _result(settings, store, api, (since, requested_at), outcome, retrains, timeline)


def _monitor_judgement(
    settings: Settings, store: ObjectStore, scored_day: dt.date, api: httpx.Client, since: float
) -> list[tuple[str, float]]:
    """What the monitor concluded, from its JSON report: verdict and the performance estimated without labels."""
    monitors = [r for r in _runs_since(api, "drift-monitor", since) if r["end_time"]]
    if not monitors:
        return []
    model = settings.scoring.model_name
    try:
        report = store.get_json(f"{report_prefix(settings, model, scored_day.isoformat())}/drift.json")
    except ObjectNotFound:
        return []
    estimated = report.get("estimated") or {}
    line = f"drift monitor verdict {report['verdict']}"
    if estimated:
        expected = estimated.get("expected_roc_auc")
        line += (
            f"; estimated ROC AUC without labels {estimated['roc_auc']:.3f} +/- "
            f"{estimated['z'] * estimated['roc_auc_se']:.3f}" + ("" if expected is None else f" (test {expected:.3f})")
        )
    multivariate = report.get("multivariate") or {}
    if multivariate:
        line += f"; multivariate {'DRIFT' if multivariate['drifted'] else 'ok'}"
    return [(line, timestamp(monitors[-1]["end_time"]))]


def _result(
    settings: Settings,
    store: ObjectStore,
    api: httpx.Client,
    since: tuple[str, float],
    outcome: str,
    retrains: list[dict[str, Any]],
    timeline: list[tuple[str, float]],
) -> LoopResult:
    """The timeline of what the server ran, and the decision the ledger recorded."""
    began_iso, requested_at = since
    for name, label in (("batch-inference", "scoring"), ("drift-monitor", "drift monitor")):
        for run in _runs_since(api, name, requested_at):
            if run["start_time"] and run["end_time"]:
                timeline += [
                    (f"{label} started", timestamp(run["start_time"])),
                    (f"{label} completed", timestamp(run["end_time"])),
                ]
    events = events_named(api, "conveyor.drift.detected", began_iso)
    latency = None
    decision = outcome
    if events:
        event_at = timestamp(events[-1]["occurred"])
        drifted = events[-1]["payload"].get("drifted_features")
        timeline.append((f"conveyor.drift.detected emitted (drifted: {drifted})", event_at))
        if retrains:
            run = retrains[0]
            latency = timestamp(run["start_time"]) - event_at
            ledger = read_ledger(store, settings, settings.training.model_name)
            last = ledger[-1] if ledger else None
            decision = _describe(last.kind, last.detail) if last is not None else run["state_type"]
            timeline += [
                ("retraining run created by the trigger", timestamp(run["created"])),
                ("retraining run started", timestamp(run["start_time"])),
                (f"retraining finished -> {decision}", timestamp(run["end_time"])),
            ]
    return LoopResult(decision, format_timeline(timeline), latency)


def _describe(kind: str, detail: dict[str, Any]) -> str:
    if kind == "completed":
        status = detail.get("status", "?")
        reasons = "; ".join(detail.get("reasons") or [])
        version = detail.get("version")
        return f"{status} (challenger v{version})" + (f": {reasons}" if reasons else "")
    return f"{kind}: {detail.get('reason', detail)}"
