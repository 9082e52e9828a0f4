"""Land raw data: the synthetic generator (with optional drift/fault scenario) or the user's own files."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from configs.settings import load_settings
from flows.runtime import current_run_id
from tasks.ingest import LandedData, land_raw_data
from tasks.synthetic import Scenario


@flow(name="ingest", description="Land raw data as daily partitions on the object store.")
def ingest(start_date: dt.date | None = None, days: int | None = None,
           scenario: Scenario | None = None) -> LandedData:
    settings = load_settings()
    return land_raw_data(
        settings,
        start=start_date or settings.generator.start_date,
        days=days or settings.generator.days,
        scenario=scenario or Scenario(),
        run_id=current_run_id(),
    )
