"""The main job, end to end on the configured profile. Grows with each stage of the lifecycle."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from flows.ingest import ingest
from tasks.ingest import LandedData


@flow(name="conveyor-pipeline", description="Conveyor end to end: land data (then train, score, monitor).")
def conveyor_pipeline(start_date: dt.date | None = None, days: int | None = None) -> LandedData:
    return ingest(start_date=start_date, days=days)
