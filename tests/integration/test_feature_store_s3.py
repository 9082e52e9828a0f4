"""Raw partitions on the real S3 server -> offline copy -> Feast: materialize, online reads, training sets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from configs.settings import Settings
from conveyor.adapters import feature_store as fsm
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import read_raw_window
from conveyor.demo.synthetic import Scenario
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


def test_published_partitions_materialize_and_train(settings: Settings, store: ObjectStore) -> None:
    land_synthetic(settings, store, START, DAYS, Scenario(), run_id="land-1")
    fsm.apply_definitions(settings)
    end = START + dt.timedelta(days=DAYS)
    result = fsm.materialize_window(settings, START, end)  # syncs the raw partitions first
    assert result.windows["churn_features"][1] == fsm._utc(end)

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

    # Syncing again copies nothing; republishing a day copies that day only.
    again = fsm.sync_offline(settings, START, end, store)
    assert again.copied_days == [] and again.current_days == DAYS
    land_synthetic(settings, store, START + dt.timedelta(days=1), 1, Scenario(), run_id="land-2")
    after = fsm.sync_offline(settings, START, end, store)
    assert after.copied_days == [START + dt.timedelta(days=1)]

    skew = fsm.check_skew(settings, sample_size=50)
    assert skew.passed, skew.reasons


def test_refresh_features_flow(s3_server: Settings, prefect_harness: None) -> None:
    from flows.features import refresh_features

    settings = s3_server.model_copy(update={"generator": s3_server.generator.model_copy(update={"n_entities": 200})})
    land_synthetic(settings, ObjectStore(settings.storage), START, 2, Scenario(), run_id="flow-land")
    report = refresh_features(start_date=START, end_date=START + dt.timedelta(days=2))
    assert report.passed, report.reasons
    assert report.entities_checked > 0
    assert fsm.materialized_until(settings)["churn_features"] == fsm._utc(START + dt.timedelta(days=2))
