"""Land raw data: the synthetic generator (with optional drift/fault scenario) or the user's own files, validated
day by day before anything is published."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from prefect import flow
from pydantic import Field

from configs.settings import load_settings
from conveyor.adapters import prefect_fixes  # noqa: F401  (installs the engine fix before any run)
from conveyor.adapters.notify import notify_on_failure
from conveyor.adapters.prefect_runtime import current_run_id
from conveyor.demo.synthetic import Scenario
from conveyor.services.ingest import IngestRejected, LandedData
from tasks.ingest import land_raw_data


@flow(
    name="ingest",
    description="Land raw data as daily partitions on the object store.",
    on_failure=[notify_on_failure],
    on_crashed=[notify_on_failure],
)
def ingest(
    start_date: dt.date | None = None,
    days: Annotated[int | None, Field(ge=1, le=3660)] = None,
    scenario: Scenario | None = None,
) -> LandedData:
    """Land raw data (the synthetic generator or your files) as daily partitions, each validated against the raw
    suite before it is published. A day (or file) that fails is quarantined and the run ends Failed naming it,
    after every other day has landed.

    Args:
        start_date: First day to land (YYYY-MM-DD). Empty: generator.start_date from the config.
        days: How many days from start_date (1-3660). Empty: generator.days from the config.
        scenario: Synthetic source only: covariate/concept drift and data faults to inject. Empty: clean data.
    """
    settings = load_settings()
    landed = land_raw_data(
        settings,
        start=start_date or settings.generator.start_date,
        days=days or settings.generator.days,
        scenario=scenario or Scenario(),
        run_id=current_run_id(),
    )
    if landed.rejected:
        raise IngestRejected(landed)
    return landed
