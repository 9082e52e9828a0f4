"""Operate it: prefect.yaml deployed with the documented commands to a real Prefect server, runs executed by a
real process worker, a cron schedule that fires by itself, parameters validated with clear errors."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from configs.settings import load_settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.prefect_api import TERMINAL_STATES, wait_for
from conveyor.adapters.publication import read_manifest
from conveyor.ops.local_stack import LocalStack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> list[dict[str, Any]]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]


def _deployment(stack: LocalStack, name: str) -> dict[str, Any]:
    status, body = stack.api("POST", "/deployments/filter", {"deployments": {"name": {"any_": [name]}}})
    assert status == 200 and isinstance(body, list) and len(body) == 1, (status, body)
    return body[0]


def _flow_runs(stack: LocalStack, deployment_id: str) -> list[dict[str, Any]]:
    query = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"}
    status, body = stack.api("POST", "/flow_runs/filter", query)
    assert status == 200 and isinstance(body, list), (status, body)
    return body


def test_every_declared_deployment_is_on_the_server(served_stack: LocalStack) -> None:
    pool = served_stack.settings.prefect.work_pool
    for declared in _declared():
        deployment = _deployment(served_stack, declared["name"])
        assert deployment["work_pool_name"] == pool
        assert deployment["description"], f"{declared['name']}: no description"
        assert "conveyor" in deployment["tags"]
        assert deployment["enforce_parameter_schema"] is True
        # The worker tells where the code is: the pull step is not resolved at deploy time.
        assert deployment["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $CONVEYOR_PROJECT_ROOT }}"}}
        ]
        schema = deployment["parameter_openapi_schema"]
        assert schema["type"] == "object" and schema["properties"], f"{declared['name']}: no parameter form"
    ingest_form = _deployment(served_stack, "ingest")["parameter_openapi_schema"]["properties"]
    assert all(prop.get("description") for prop in ingest_form.values()), ingest_form
    assert ingest_form["days"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 3660}


def test_invalid_parameters_are_refused_with_the_field_and_rule(served_stack: LocalStack) -> None:
    deployment = _deployment(served_stack, "ingest")
    status, body = served_stack.api(
        "POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"days": 0}}
    )
    assert status == 409, (status, body)
    assert "field 'days'" in str(body) and "less than the minimum of 1" in str(body), body
    # JSON schema cannot check a date's format: the run is created, and refused when the flow validates it.
    status, body = served_stack.api(
        "POST", f"/deployments/{deployment['id']}/create_flow_run", {"parameters": {"start_date": "yesterday"}}
    )
    assert status == 201, (status, body)
    assert isinstance(body, dict)

    def finished() -> dict[str, Any] | None:
        _, run = served_stack.api("GET", f"/flow_runs/{body['id']}")
        return run if isinstance(run, dict) and run["state_type"] in TERMINAL_STATES else None

    run = wait_for(finished, 90, "the run with an invalid start_date to finish")
    assert run["state_type"] == "FAILED", run["state"]
    message = run["state"]["message"]
    assert "invalid parameters" in message and "start_date: Input should be a valid date" in message, message


def test_cron_schedules_fire_by_themselves_and_the_worker_runs_them(served_stack: LocalStack) -> None:
    """Done-when: the daily batch-inference (and ingest) schedules, shortened to every minute, create runs at
    their cron time that the worker picks up and completes, with nobody pressing Run."""
    from tests.integration.scoring_data import DAYS, publish_snapshots, register

    settings = load_settings()
    model = f"churn_{uuid.uuid4().hex[:8]}"
    register(settings, model, seed=0, promote=True)  # a champion to score with
    features = f"features-{uuid.uuid4().hex[:8]}/churn"
    publish_snapshots(ObjectStore(settings.storage), settings, features, n=500)

    ingest, scoring = _deployment(served_stack, "ingest"), _deployment(served_stack, "batch-inference")
    # As an operator would: a schedule added with Prefect's CLI (every minute, for the test) ...
    env = {**os.environ, **served_stack.client_env()}
    prefect = str(Path(sys.executable).parent / "prefect")
    subprocess.run(
        [
            prefect,
            "--no-prompt",
            "deployment",
            "schedule",
            "create",
            "ingest/ingest",
            "--cron",
            "* * * * *",
            "--timezone",
            "UTC",
        ],
        check=True,
        env=env,
        timeout=60,
        capture_output=True,
    )
    # ... and batch inference's daily cron replaced by a per-minute one carrying parameters (API).
    status, body = served_stack.api(
        "POST",
        f"/deployments/{scoring['id']}/schedules",
        [
            {
                "schedule": {"cron": "* * * * *", "timezone": "UTC"},
                "active": True,
                "parameters": {"scoring_date": DAYS[0].isoformat(), "model_name": model, "features_prefix": features},
            }
        ],
    )
    assert status in (200, 201), body
    added = dt.datetime.now(dt.UTC)
    try:

        def first_finished(deployment: dict[str, Any]) -> dict[str, Any] | None:
            runs = [
                r
                for r in _flow_runs(served_stack, deployment["id"])
                if r["auto_scheduled"] and dt.datetime.fromisoformat(r["expected_start_time"]) > added
            ]
            done = [r for r in runs if r["state_type"] in TERMINAL_STATES]
            return done[0] if done else None

        runs = {
            "ingest": wait_for(lambda: first_finished(ingest), 150, "the first cron run of ingest"),
            "batch-inference": wait_for(lambda: first_finished(scoring), 150, "the first cron batch inference"),
        }
        for name, run in runs.items():
            assert run["state_type"] == "COMPLETED", (name, run["state"])
            expected = dt.datetime.fromisoformat(run["expected_start_time"])
            assert expected.second == 0 and expected.microsecond == 0  # it ran at its cron time, not on demand
            # The worker submits due runs up to PREFECT_WORKER_PREFETCH_SECONDS (10 s) early, so infrastructure
            # is ready on time: the run starts at its cron time, give or take that.
            lag = (dt.datetime.fromisoformat(run["start_time"]) - expected).total_seconds()
            assert -15 <= lag <= 120, (name, lag)
        status, artifacts = served_stack.api(
            "POST", "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [runs["ingest"]["id"]]}}}
        )
        assert status == 200 and [a["key"] for a in artifacts] == ["ingest"]
        assert "3 daily partitions" in artifacts[0]["description"]
        prefix = f"{settings.storage.prefixes.predictions}/{model}/dt={DAYS[0].isoformat()}"
        assert read_manifest(ObjectStore(settings.storage), prefix) is not None  # the scheduled run published
    finally:
        for name in ("ingest/ingest", "batch-inference/batch-inference"):
            subprocess.run(
                [prefect, "--no-prompt", "deployment", "schedule", "clear", name, "-y"],
                env=env,
                timeout=60,
                capture_output=True,
            )


def test_a_flow_run_whose_heartbeats_stop_is_marked_crashed(served_stack: LocalStack) -> None:
    """`conveyor deploy` installed the zombie-run automation (3 missed heartbeats of 180 s). The same trigger with
    a 10 s window, scoped to two probe runs (so no real run of this server can be hit), is evaluated by the real
    server: the run that went silent after a heartbeat is marked Crashed; the one that completed is left alone."""
    from conveyor.adapters.prefect_api import ZOMBIE_AUTOMATION, api_client, zombie_automation

    status, automations = served_stack.api("POST", "/automations/filter", {})
    installed = [a for a in automations if a["name"] == ZOMBIE_AUTOMATION]  # type: ignore[union-attr]
    assert status == 200 and len(installed) == 1, automations
    trigger = installed[0]["trigger"]
    assert (trigger["posture"], trigger["within"], trigger["after"]) == (
        "Proactive",
        540.0,
        ["prefect.flow-run.heartbeat"],
    )
    assert installed[0]["actions"][0]["type"] == "change-flow-run-state"

    with api_client(served_stack.prefect_api_url) as api:
        flow_id = api.post("/flows/", json={"name": "conveyor-zombie-probe"}).raise_for_status().json()["id"]
        silent, finished = (
            api.post(
                "/flow_runs/", json={"flow_id": flow_id, "name": name, "state": {"type": "RUNNING", "name": "Running"}}
            )
            .raise_for_status()
            .json()["id"]
            for name in ("silent", "finished")
        )
        probe = zombie_automation(within_seconds=10)
        probe["name"] = f"zombie-probe-{uuid.uuid4().hex[:6]}"
        probe["trigger"]["match"] = {
            "prefect.resource.id": [f"prefect.flow-run.{silent}", f"prefect.flow-run.{finished}"]
        }
        automation_id = api.post("/automations/", json=probe).raise_for_status().json()["id"]
        try:
            # A few heartbeats, as a live run sends them (the server's trigger cache may load the new automation
            # a moment after it is created, so a single first heartbeat could go unseen), then silence.
            for _ in range(4):
                now = dt.datetime.now(dt.UTC).isoformat()
                api.post(
                    "/events",
                    json=[
                        {
                            "id": str(uuid.uuid4()),
                            "occurred": now,
                            "event": "prefect.flow-run.heartbeat",
                            "resource": {"prefect.resource.id": f"prefect.flow-run.{run}"},
                            "related": [],
                            "payload": {},
                        }
                        for run in (silent, finished)
                    ],
                ).raise_for_status()
                last_heartbeat = time.monotonic()
                time.sleep(3)
            api.post(
                f"/flow_runs/{finished}/set_state",
                json={"state": {"type": "COMPLETED", "name": "Completed"}, "force": True},
            ).raise_for_status()

            def state(run: str) -> str:
                return str(api.get(f"/flow_runs/{run}").raise_for_status().json()["state_type"])

            wait_for(lambda: state(silent) == "CRASHED", 90, "the silent run to be marked Crashed")
            print(
                f"silent run seen Crashed {time.monotonic() - last_heartbeat:.1f}s after its last heartbeat "
                "(window 10s, polled every 1s)"
            )
            assert state(finished) == "COMPLETED"
            message = api.get(f"/flow_runs/{silent}").json()["state"]["message"]
            assert "no heartbeat for 10s" in message, message
        finally:
            api.delete(f"/automations/{automation_id}")
