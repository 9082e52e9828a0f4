"""Drift monitor: the latest scored window vs the champion's reference profile; on drift, emit the event that
triggers retraining (`conveyor.drift.detected`, see prefect.yaml)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from prefect import flow
from pydantic import Field

from configs.settings import load_settings
from conveyor.adapters import prefect_fixes  # noqa: F401  (installs the engine fix before any run)
from conveyor.adapters.notify import notify_on_failure
from conveyor.domain.drift import DriftReport
from tasks.monitoring import check_drift, emit_drift_detected


@flow(
    name="drift-monitor",
    description="Compare the latest scored window with the champion's reference profile.",
    on_failure=[notify_on_failure],
    on_crashed=[notify_on_failure],
)
def drift_monitor(
    model_name: Annotated[str | None, Field(description="registry model; default scoring.model_name")] = None,
    scored_day: Annotated[dt.date | None, Field(description="scored day to judge; default the latest")] = None,
) -> DriftReport:
    settings = load_settings()
    report = check_drift(settings, model_name or settings.scoring.model_name, scored_day)
    if report.needs_retraining:
        emit_drift_detected(settings, report)
    return report
