"""The ingest flow, run by Prefect against the real test S3 server."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import published_days, raw_table, read_raw_window, table_version
from conveyor.demo.synthetic import Fault, Scenario, generate_day
from conveyor.ops import cli
from conveyor.services.ingest import IngestRejected
from conveyor.services.quarantine import list_quarantined
from flows.ingest import ingest

pytestmark = pytest.mark.integration


def test_ingest_lands_daily_partitions_and_is_idempotent(s3_server: Settings, prefect_harness: None) -> None:
    start = dt.date(2026, 1, 1)
    first = ingest(start_date=start, days=3)
    second = ingest(start_date=start, days=3)  # rerun: replaces, never duplicates
    assert first.days == [start + dt.timedelta(days=i) for i in range(3)]
    assert first.rows == second.rows > 0
    # One Delta commit per day: the rerun made three new versions and no duplicate rows.
    assert first.table_version is not None and second.table_version == first.table_version + 3
    store = ObjectStore(s3_server.storage)
    assert table_version(raw_table(store.config, s3_server)) == second.table_version
    assert published_days(store, s3_server)[:3] == first.days
    window = read_raw_window(store, s3_server, start, start + dt.timedelta(days=2))
    assert len(window) == first.rows
    ds = s3_server.dataset
    assert not window.duplicated([ds.entity_column, ds.timestamp_column]).any()
    assert str(window[ds.timestamp_column].dtype) == "datetime64[us, UTC]"
    expected = generate_day(start, ds, s3_server.generator)
    landed = read_raw_window(store, s3_server, start, start)
    pd.testing.assert_frame_equal(
        landed.sort_values([ds.entity_column, ds.timestamp_column]).reset_index(drop=True),
        expected.sort_values([ds.entity_column, ds.timestamp_column]).reset_index(drop=True),
        check_dtype=False,
    )


def test_ingest_scenario_is_a_typed_parameter(s3_server: Settings, prefect_harness: None) -> None:
    day = dt.date(2026, 5, 1)
    tolerated = Scenario(faults=[Fault(kind="nulls", column="age", fraction=0.005)])  # under max_null_share
    result = ingest(start_date=day, days=1, scenario=tolerated)
    landed = read_raw_window(ObjectStore(s3_server.storage), s3_server, day, day)
    assert len(landed) == result.rows
    assert landed["age"].isna().sum() == round(0.005 * result.rows) > 0
    assert str(landed["age"].dtype) in ("float64", "Int64")  # an integer column with nulls: one table schema


def test_a_faulty_day_is_quarantined_before_it_is_published(s3_server: Settings, prefect_harness: None) -> None:
    good, bad = dt.date(2026, 5, 10), dt.date(2026, 5, 11)
    store = ObjectStore(s3_server.storage)
    scenario = Scenario(faults=[Fault(kind="nulls", column="age", fraction=0.2, day=bad)])
    state = ingest(start_date=good, days=2, scenario=scenario, return_state=True)
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, IngestRejected) and error.landed.days == [good]
    assert f"not published: {bad}" in str(error) and "column 'age'" in str(error)
    assert good in published_days(store, s3_server) and bad not in published_days(store, s3_server)
    (batch,) = [b for b in list_quarantined(store, s3_server) if b.batch_key == bad.isoformat()]
    assert batch.landing is not None and batch.landing["kind"] == "synthetic"
    assert cli.main(["data", "reland", bad.isoformat()]) == 0  # the clean generator is the fixed source
    assert bad in published_days(store, s3_server)
