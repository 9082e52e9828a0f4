"""Event-driven retraining: `conveyor.drift.detected` -> (cooldown, one per model) -> train on a fresh window ->
the training flow's gates against the champion decide -> optionally wait for a person's approval."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from prefect import flow
from pydantic import Field

from configs.settings import load_settings
from conveyor.adapters import prefect_fixes  # noqa: F401  (installs the engine fix before any run)
from conveyor.adapters.notify import notify_on_failure
from conveyor.adapters.prefect_runtime import current_run_id
from conveyor.services.retraining import RetrainingOutcome, training_window
from tasks.retraining import await_approval, claim_retraining, finish_retraining, retraining_slot, suppress_busy


@flow(
    name="retraining",
    description="Retrain a model after drift, behind a cooldown, one run per model at a time.",
    on_failure=[notify_on_failure],
    on_crashed=[notify_on_failure],
)
def retraining(
    model_name: Annotated[str, Field(description="registry model to retrain")],
    window_end: Annotated[dt.date | None, Field(description="last day of the drifted window; default today")] = None,
    drifted_features: Annotated[list[str] | None, Field(description="what the drift monitor flagged")] = None,
    trigger_event_id: Annotated[str | None, Field(description="the conveyor.drift.detected event")] = None,
) -> RetrainingOutcome:
    settings, run_id, drifted = load_settings(), current_run_id(), drifted_features or []
    # Fast path outside the slot: a trigger inside the cooldown is recorded and dropped without queueing.
    if not claim_retraining(settings, model_name, run_id, trigger_event_id, drifted, final=False).allowed:
        return RetrainingOutcome(model_name, "suppressed", run_id)
    with retraining_slot(settings, model_name) as acquired:
        if not acquired:  # another retraining of this model is running: recorded, not queued
            suppress_busy(settings, model_name, run_id, trigger_event_id, drifted)
            return RetrainingOutcome(model_name, "suppressed", run_id)
        if not claim_retraining(settings, model_name, run_id, trigger_event_id, drifted, final=True).allowed:
            return RetrainingOutcome(model_name, "suppressed", run_id)
        # Imported here, not at module top: the training stack (Feast, GX, sklearn) takes seconds to import, and
        # a burst of suppressed triggers must stay cheap.
        from flows.training import training

        start, end = training_window(settings, window_end)
        outcome = training(
            start_date=start, end_date=end, model_name=model_name, promote=not settings.retraining.require_approval
        )
        if settings.retraining.require_approval and outcome.version is not None:
            decided = await_approval(settings, model_name, trigger_event_id, outcome)
            return finish_retraining(settings, model_name, run_id, trigger_event_id, decided)
        return finish_retraining(settings, model_name, run_id, trigger_event_id, outcome)
