"""Validate the published raw partitions of a window; a bad day is quarantined and fails the flow."""

from __future__ import annotations

import datetime as dt

from prefect import flow

from configs.settings import load_settings
from conveyor.adapters import prefect_fixes  # noqa: F401  (installs the engine fix before any run)
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.prefect_runtime import current_run_id
from conveyor.adapters.raw_data import published_days
from conveyor.domain.failures import MissingInput
from conveyor.services.validation import DataValidationError
from tasks.validation import validate_raw_partition


@flow(name="validate-raw", description="Validate raw daily partitions against configs/expectations/raw.json.")
def validate_raw(start_date: dt.date, end_date: dt.date) -> int:
    """Every published day in [start_date, end_date] is checked (so one report lists all bad days); returns the
    rows that passed. Raises DataValidationError naming each failed day and its quarantine location."""
    settings = load_settings()
    run_id = current_run_id()
    days = [d for d in published_days(ObjectStore(settings.storage), settings) if start_date <= d <= end_date]
    if not days:
        raise MissingInput(f"no published raw partitions of {settings.dataset.name!r} in [{start_date}, {end_date}]")
    states = [validate_raw_partition(settings, day, run_id, return_state=True) for day in days]
    failures = [s for s in states if s.is_failed()]
    if failures:
        errors = [s.result(raise_on_failure=False) for s in failures]
        first = next((e for e in errors if isinstance(e, DataValidationError)), None)
        message = f"{len(failures)} of {len(days)} raw partitions failed validation:\n" + "\n".join(map(str, errors))
        if first is None:
            raise RuntimeError(message)
        raise DataValidationError(message, first.result, first.quarantine_uri)
    return sum(s.result().rows_passed for s in states)
