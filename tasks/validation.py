"""Prefect tasks of this stage: thin wrappers over `conveyor.services.validation`."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import raw_prefix
from conveyor.domain.expectations import SuiteName
from conveyor.services.validation import ValidatedBatch, check_or_quarantine, check_stored_partition


# ---- Prefect tasks (no task retries: the object store retries its own transient errors) --------------------------
@task(name="validate", cache_policy=NO_CACHE)
def validate_or_quarantine(
    frame: pd.DataFrame,
    suite: SuiteName,
    settings: Settings,
    batch_key: str,
    run_id: str,
    as_of: dt.datetime | dt.date | None = None,
) -> ValidatedBatch:
    """Validate a batch; on failure quarantine it (unchanged) with its report and raise DataValidationError."""
    return check_or_quarantine(ObjectStore(settings.storage), frame, suite, settings, batch_key, run_id, as_of)


@task(name="validate-raw-partition", cache_policy=NO_CACHE)
def validate_raw_partition(
    settings: Settings, day: dt.date, run_id: str, suite: SuiteName = "raw", as_of: dt.datetime | dt.date | None = None
) -> ValidatedBatch:
    """Validate the published raw partition of `day` from its stored bytes (see `check_stored_partition`)."""
    return check_stored_partition(
        ObjectStore(settings.storage), settings, raw_prefix(settings, day), suite, run_id, as_of
    )
