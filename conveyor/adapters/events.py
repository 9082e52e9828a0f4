"""The one module that emits Prefect events. Automations (prefect.yaml triggers) react to these names.

- `conveyor.drift.detected`: the drift monitor's verdict was "drift"; the retraining deployment's trigger.
- `conveyor.retraining.started|suppressed|completed`: what the retraining flow did with a trigger (a timeline
  in the Prefect UI's event feed; the durable record is the retraining ledger on the object store).

Every event's resource is the model: `{"prefect.resource.id": "conveyor.model.<name>"}`.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event
from prefect.events.worker import EventsWorker

DRIFT_DETECTED = "conveyor.drift.detected"
RETRAINING_PREFIX = "conveyor.retraining"


def model_resource(model_name: str) -> dict[str, str]:
    return {"prefect.resource.id": f"conveyor.model.{model_name}", "prefect.resource.name": model_name}


def emit(event: str, model_name: str, payload: dict[str, Any]) -> str | None:
    """Send one event about `model_name`; returns its id (None when events are disabled in this process)."""
    sent = emit_event(event=event, resource=model_resource(model_name), payload=payload)
    return str(sent.id) if sent is not None else None


def emit_drift_detected(model_name: str, payload: dict[str, Any]) -> str | None:
    """`payload` carries model_name, model_version, drifted_features, scores, window_start/end, report_uri."""
    return emit(DRIFT_DETECTED, model_name, {"model_name": model_name, **payload})


def emit_retraining(kind: str, model_name: str, payload: dict[str, Any]) -> str | None:
    return emit(f"{RETRAINING_PREFIX}.{kind}", model_name, {"model_name": model_name, **payload})


def flush(timeout: float = 10.0) -> None:
    """Deliver queued events now (a short-lived process may exit before the background sender runs)."""
    EventsWorker.drain_all(timeout=timeout)
