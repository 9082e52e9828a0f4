"""A Prefect server's REST API: questions (runs of a deployment, events, waiting for a state) and the few
objects `conveyor deploy` manages outside prefect.yaml (the zombie-run automation).

Used by the run command's loop demonstration, by `conveyor deploy`, and by the tests of event-driven behaviour,
which must watch a real `prefect server start` (the test harness does not evaluate triggers).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
T = TypeVar("T")


ZOMBIE_AUTOMATION = "conveyor-crash-zombie-flow-runs"


def safe_to_resend(request: httpx.Request) -> bool:
    """A request that changes nothing, or changes the same thing however often it is applied: GET, PUT, DELETE,
    and Prefect's POST queries (`.../filter`, `.../count`), which are reads sent as POST to carry a body."""
    if request.method in {"GET", "HEAD", "PUT", "DELETE"}:
        return True
    return request.method == "POST" and request.url.path.rstrip("/").endswith(("/filter", "/count"))


class RetryBusyServer(httpx.HTTPTransport):
    """A busy SQLite-backed Prefect server answers 503 ("database is locked": the write was rolled back, so
    sending it again is safe); Prefect's own client retries it, and so does every client of this module. A
    request that timed out is sent again when that is safe (`safe_to_resend`): right after `prefect deploy`
    registered its triggers, a loaded server was seen to take over 30 s to answer POST /automations/filter."""

    def __init__(self, attempts: int = 5, backoff_seconds: float = 0.5) -> None:
        super().__init__()
        self.attempts, self.backoff_seconds = attempts, backoff_seconds

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(1, self.attempts):
            try:
                response = super().handle_request(request)
            except httpx.TimeoutException:
                # A create that timed out may have been applied: sent again, it could be applied twice.
                if not safe_to_resend(request):
                    raise
            else:
                if response.status_code != 503:
                    return response
                response.close()
            time.sleep(self.backoff_seconds * 2 ** (attempt - 1))
        return super().handle_request(request)


def api_client(api_url: str, auth_string: str | None = None, timeout: float = 30) -> httpx.Client:
    """`auth_string` ('user:password') is sent as basic auth, as PREFECT_API_AUTH_STRING is by Prefect clients.
    503s are retried with backoff (`RetryBusyServer`)."""
    auth = tuple(auth_string.split(":", 1)) if auth_string else None
    return httpx.Client(
        base_url=api_url.rstrip("/"),
        timeout=timeout,
        auth=auth,  # type: ignore[arg-type]
        transport=RetryBusyServer(),
    )


def zombie_automation(within_seconds: float) -> dict[str, Any]:
    """The automation Prefect documents for zombie flow runs: a run that sent a heartbeat and then neither another
    heartbeat nor a terminal state within `within_seconds` is marked Crashed (its process died: OOM kill, lost
    node), so it stops holding concurrency slots and looking alive in the UI."""
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    terminal = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed")}
    automation = AutomationCore(
        name=ZOMBIE_AUTOMATION,
        description="Marks a flow run Crashed when its heartbeats stop before it ends (installed by conveyor deploy).",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *terminal},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=dt.timedelta(seconds=within_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                name="Crashed",
                state=StateType.CRASHED,
                message=f"no heartbeat for {within_seconds:g}s: the flow run's process is gone",
                force=False,
            )
        ],
    )
    return automation.model_dump(mode="json")


def ensure_zombie_automation(api: httpx.Client, within_seconds: float) -> str:
    """Create the zombie-run automation, or update it in place (idempotent); returns 'created' or 'updated'."""
    body = zombie_automation(within_seconds)
    existing = [
        a for a in api.post("/automations/filter", json={}).raise_for_status().json() if a["name"] == ZOMBIE_AUTOMATION
    ]
    if existing:
        # The server's update schema forbids `owner_resource`, which only a create may set: sent, the PUT is a 422.
        update = {key: value for key, value in body.items() if key != "owner_resource"}
        api.put(f"/automations/{existing[0]['id']}", json=update).raise_for_status()
        for duplicate in existing[1:]:
            api.delete(f"/automations/{duplicate['id']}")
        return "updated"
    api.post("/automations/", json=body).raise_for_status()
    return "created"


def deployment_id(api: httpx.Client, name: str) -> str:
    found = api.post("/deployments/filter", json={"deployments": {"name": {"any_": [name]}}}).json()
    return str(found[0]["id"]) if found else ""


def deployment_runs(api: httpx.Client, deployment: str) -> list[dict[str, Any]]:
    dep_id = deployment_id(api, deployment)
    if not dep_id:
        return []
    return list(
        api.post(
            "/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [dep_id]}}, "sort": "START_TIME_ASC"}
        ).json()
    )


def events_named(api: httpx.Client, name: str, since: str = "2020-01-01T00:00:00Z") -> list[dict[str, Any]]:
    body = {"filter": {"event": {"name": [name]}, "occurred": {"since": since}}, "limit": 50}
    return list(api.post("/events/filter", json=body).json()["events"])


def create_deployment_run(api: httpx.Client, deployment: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Request a run of `deployment` (`api` from `api_client`: a busy server's 503 is retried)."""
    url = f"/deployments/{deployment_id(api, deployment)}/create_flow_run"
    return dict(api.post(url, json={"parameters": parameters}).raise_for_status().json())


def delete_deployments_and_automations(api: httpx.Client, names: tuple[str, ...] | None = None) -> None:
    """Delete the named deployments (all when None) and the automations their triggers created: deleting a
    deployment leaves its trigger's automation behind (STACK.md)."""
    body = {"deployments": {"name": {"any_": list(names)}}} if names is not None else {}
    doomed = {d["id"] for d in api.post("/deployments/filter", json=body).json()}
    for dep_id in doomed:
        api.delete(f"/deployments/{dep_id}")
    for automation in api.post("/automations/filter", json={}).json():
        targets = {a.get("deployment_id") for a in automation.get("actions", [])}
        if names is None or targets & doomed:
            api.delete(f"/automations/{automation['id']}")


def wait_for(
    predicate: Callable[[], T | None], timeout: float, what: str, log: Path | None = None, interval: float = 1.0
) -> T:
    """Poll `predicate` until it returns something truthy; on time-out say what we waited for (and the log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise TimeoutError(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f"\n--- log tail ---\n{tail}" if tail else "")
    )


def timestamp(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def format_timeline(timeline: list[tuple[str, float]]) -> list[str]:
    t0 = min(at for _, at in timeline)
    return [f"  +{at - t0:7.1f}s  {what}" for what, at in sorted(timeline, key=lambda item: item[1])]
