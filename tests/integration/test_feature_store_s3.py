"""The raw Delta table on the real S3 server -> Feast (duckdb reading S3 directly): materialize, online reads,
training sets; and files of a crashed, uncommitted write are never read."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from configs.settings import Settings
from conveyor.adapters import feature_store as fsm
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import raw_prefix, raw_root, read_raw_window
from conveyor.demo.synthetic import Scenario, generate_day
from conveyor.services.ingest import land_synthetic

pytestmark = pytest.mark.integration

START = dt.date(2026, 1, 1)
DAYS = 4


@pytest.fixture
def settings(s3_server: Settings, store: ObjectStore, tmp_path: Path) -> Settings:
    return s3_server.model_copy(
        update={
            "storage": store.config,
            "features": s3_server.features.model_copy(update={"state_dir": tmp_path / "feast"}),
            "generator": s3_server.generator.model_copy(update={"n_entities": 300}),
        }
    )


def test_published_days_materialize_and_train(settings: Settings, store: ObjectStore) -> None:
    land_synthetic(settings, store, START, DAYS, Scenario(), run_id="land-1")
    fsm.apply_definitions(settings)
    end = START + dt.timedelta(days=DAYS)
    result = fsm.materialize_window(settings, START, end)
    assert result.windows["churn_features"][1] == fsm.utc(end)
    assert not list(settings.features.state_dir.rglob("*.parquet"))  # type: ignore[union-attr]  # no local copy

    ds = settings.dataset
    raw = read_raw_window(store, settings, START, end - dt.timedelta(days=1))
    latest = raw.sort_values(ds.timestamp_column).groupby(ds.entity_column).tail(1).reset_index(drop=True)
    online = fsm.online_features(settings, latest[ds.entity_column].tolist())
    numeric = ds.numeric_features
    assert np.allclose(online[numeric].to_numpy(float), latest[numeric].to_numpy(float))
    assert (online["region"] == latest["region"]).all()

    # Every raw row as a label row: the point-in-time features at the row's own timestamp are the row's values.
    entity_df = raw[[ds.entity_column, ds.timestamp_column, ds.label_column]].sample(frac=1.0, random_state=3)
    training = fsm.build_training_set(settings, entity_df)
    assert len(training) == len(raw)
    assert training.index.equals(entity_df.index)
    expected = raw.loc[entity_df.index]
    assert np.allclose(training[numeric].to_numpy(float), expected[numeric].to_numpy(float))
    assert (training[ds.label_column] == expected[ds.label_column]).all()

    # Republishing a day replaces it in one commit: the same rows, never twice.
    land_synthetic(settings, store, START + dt.timedelta(days=1), 1, Scenario(), run_id="land-2")
    assert len(read_raw_window(store, settings, START, end - dt.timedelta(days=1))) == len(raw)

    skew = fsm.check_skew(settings, sample_size=50)
    assert skew.passed, skew.reasons


def _ghost_parquet(settings: Settings, when: pd.Timestamp, entities: list[int]) -> bytes:
    """A well-formed parquet file of raw rows with values no real row has (region 'GHOST')."""
    frame = generate_day(when.date(), settings.dataset, settings.generator).head(len(entities)).copy()
    ds = settings.dataset
    frame[ds.entity_column] = np.asarray(entities, dtype="int64")
    frame[ds.timestamp_column] = when
    frame["region"], frame["monthly_charges"] = "GHOST", 499.99
    buffer = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(
        table.cast(pa.schema([f if f.name != "region" else pa.field("region", pa.string()) for f in table.schema])),
        buffer,
    )
    return buffer.getvalue()


def test_files_of_an_uncommitted_write_are_never_read(settings: Settings, store: ObjectStore) -> None:
    land_synthetic(settings, store, START, DAYS, Scenario(), run_id="land-1")
    fsm.apply_definitions(settings)
    ds = settings.dataset
    last_day = START + dt.timedelta(days=DAYS - 1)
    when = pd.Timestamp(last_day, tz="UTC") + pd.Timedelta(hours=23)
    known = read_raw_window(store, settings, last_day, last_day)[ds.entity_column].head(3).tolist()
    ghosts = [*known, 99_000_001]
    data = _ghost_parquet(settings, when, ghosts)
    # What a writer that died before its commit leaves: data files in the table's folders, no log entry.
    keys = [
        f"{raw_root(settings)}part-00000-crashed.c000.snappy.parquet",
        f"{raw_prefix(settings, last_day)}/part-00000-crashed.c000.snappy.parquet",
    ]
    for key in keys:
        store.put_bytes(key, data)
    assert all(store.get_parquet(k)["region"].eq("GHOST").all() for k in keys)  # readable files, there

    raw = read_raw_window(store, settings, START, last_day)
    assert "GHOST" not in set(raw["region"]) and 99_000_001 not in set(raw[ds.entity_column])

    entity_df = pd.DataFrame({ds.entity_column: ghosts, ds.timestamp_column: when + pd.Timedelta(minutes=5)})
    features = fsm.build_training_set(settings, entity_df)
    assert "GHOST" not in set(features["region"].dropna())
    assert features.loc[features[ds.entity_column] == 99_000_001, "region"].isna().all()

    fsm.materialize_window(settings, START, last_day + dt.timedelta(days=1))
    online = fsm.online_features(settings, ghosts)
    assert "GHOST" not in set(online["region"].dropna()) and online.loc[3, "region"] is None
    assert not (online["monthly_charges"] == 499.99).any()


def test_refresh_features_flow(s3_server: Settings, prefect_harness: None) -> None:
    from flows.features import refresh_features

    settings = s3_server.model_copy(update={"generator": s3_server.generator.model_copy(update={"n_entities": 200})})
    land_synthetic(settings, ObjectStore(settings.storage), START, 2, Scenario(), run_id="flow-land")
    report = refresh_features(start_date=START, end_date=START + dt.timedelta(days=2))
    assert report.passed, report.reasons
    assert report.entities_checked > 0
    assert fsm.materialized_until(settings)["churn_features"] == fsm.utc(START + dt.timedelta(days=2))
