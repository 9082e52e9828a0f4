"""The prediction log's partitions on the real S3 server: one per UTC (day, hour) of the rows' logged time."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from conveyor.adapters.object_store import ObjectStore
from conveyor.domain.prediction_log_schema import LOG_COLUMNS
from conveyor.serving.prediction_log import PredictionLog

pytestmark = pytest.mark.integration


def _row(logged_at: dt.datetime, request_id: str) -> dict[str, Any]:
    return {c: None for c in LOG_COLUMNS} | {"request_id": request_id, "logged_at": logged_at.timestamp()}


def test_rows_land_in_the_partition_of_their_utc_day_and_hour(store: ObjectStore) -> None:
    log = PredictionLog(store, "logs", "m", capacity=100, wait_seconds=1, flush_seconds=60, flush_rows=100)
    late = dt.datetime(2026, 11, 30, 23, 59, 59, 900_000, tzinfo=dt.UTC)  # the last moment of one day
    log.append([_row(late, "a"), _row(late + dt.timedelta(seconds=1), "b"), _row(late, "c")])
    assert log.flush() == 3
    manifests = sorted(k for k in store.list_keys("logs/m/") if k.endswith("_manifest.json"))
    partitions = [k.rsplit("/batch=", 1)[0] for k in manifests]
    assert partitions == ["logs/m/dt=2026-11-30/hour=23", "logs/m/dt=2026-12-01/hour=00"]
    assert [store.get_json(k)["row_count"] for k in manifests] == [2, 1]
