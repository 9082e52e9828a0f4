"""Drift monitor: the latest scored window (or each scored day of a date range: a backfill) vs the champion's
reference profile; every judgement goes to the monitoring table and the dashboard is rebuilt. When the latest
window drifted or its estimated performance dropped, emit the event that triggers retraining
(`conveyor.drift.detected`, see prefect.yaml)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from prefect import flow
from pydantic import Field

from configs.settings import load_settings
from conveyor.adapters import prefect_fixes  # noqa: F401  (installs the engine fix before any run)
from conveyor.adapters.notify import notify_on_failure
from conveyor.domain.drift import DriftReport
from tasks.monitoring import check_drift, days_to_judge, emit_drift_detected, publish_monitoring


@flow(
    name="drift-monitor",
    description="Compare the latest scored window (or a date range of them) with the champion's reference profile.",
    on_failure=[notify_on_failure],
    on_crashed=[notify_on_failure],
)
def drift_monitor(
    model_name: Annotated[str | None, Field(description="registry model; default scoring.model_name")] = None,
    scored_day: Annotated[dt.date | None, Field(description="scored day to judge; default the latest")] = None,
    start_day: Annotated[dt.date | None, Field(description="backfill: first scored day to judge")] = None,
    end_day: Annotated[dt.date | None, Field(description="backfill: last scored day; default the latest")] = None,
    source: Annotated[
        Literal["batch", "online"],
        Field(description="batch: the scored day's predictions; online: the online service's answers that day"),
    ] = "batch",
) -> DriftReport:
    """Judge the scored day (or each day of a backfill) against the champion's reference; emit the retraining
    event when the latest judgement asks for it.

    Args:
        model_name: Registry model (default: scoring.model_name).
        scored_day: Scored day to judge (default: the latest; online: the latest day of the prediction log).
        start_day: Backfill: first scored day to judge (batch only).
        end_day: Backfill: last scored day (default: the latest; batch only).
        source: batch (the day's published predictions and the raw window) or online (the online service's
            answers of that day and their inputs, from its prediction log).
    """
    settings = load_settings()
    name = model_name or settings.scoring.model_name
    days = days_to_judge(settings, name, scored_day, start_day, end_day, source)
    reports = [check_drift(settings, name, day, source) for day in days]
    latest = reports[-1]
    if source == "batch":  # the dashboard shows the monitoring table: batch judgements
        publish_monitoring(settings, name, dt.date.fromisoformat(latest.window_end))
    # A backfill judges history: only the latest window may ask for retraining.
    if latest.needs_retraining:
        emit_drift_detected(settings, latest)
    return latest
