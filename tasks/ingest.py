"""Prefect tasks of this stage: thin wrappers over `conveyor.services.ingest`."""

from __future__ import annotations

import datetime as dt

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.prefect_runtime import retry_transient
from conveyor.adapters.raw_data import raw_table
from conveyor.demo.synthetic import Scenario
from conveyor.services.ingest import LandedData, ingest_summary, ingest_table, land_files, land_synthetic


@task(name="land-raw-data", retries=2, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def land_raw_data(settings: Settings, start: dt.date, days: int, scenario: Scenario, run_id: str) -> LandedData:
    """Land the configured source into raw partitions (synthetic window, or the user's files)."""
    store = ObjectStore(settings.storage)
    source = settings.dataset.source
    if source.kind == "files":
        assert source.path is not None  # guaranteed by DataSource validation
        landed = land_files(settings, store, source.path, run_id)
    else:
        landed = land_synthetic(settings, store, start, days, scenario, run_id)
    get_run_logger().info(
        "landed %d rows in %d daily partitions of %s (table version %s)",
        landed.rows,
        len(landed.days),
        raw_table(store.config, settings).uri,
        landed.table_version,
    )
    # What the run landed and what it quarantined, on the run's Artifacts tab in the UI.
    create_table_artifact(key="ingest", description=ingest_summary(landed), table=ingest_table(landed, store))
    return landed
