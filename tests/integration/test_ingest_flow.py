"""The ingest flow, run by Prefect against the real test S3 server."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import published_days, raw_table, read_raw_window, table_version
from conveyor.demo.synthetic import Fault, Scenario, generate_day
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
    scenario = Scenario(faults=[Fault(kind="nulls", column="age", fraction=0.2)])
    result = ingest(start_date=day, days=1, scenario=scenario)
    landed = read_raw_window(ObjectStore(s3_server.storage), s3_server, day, day)
    assert len(landed) == result.rows
    assert landed["age"].isna().sum() == round(0.2 * result.rows)
