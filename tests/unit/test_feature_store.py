"""Feature store on temporary paths (real Feast: file registry, duckdb offline store, SQLite online store).

Hand-made rows make every point-in-time expectation checkable by eye:
    entity 1: age 30 on day 1, 31 on day 5, 32 on day 10
    entity 2: age 40 on day 1 only
    entity 4: age 50 at exactly day 6 00:00 (the boundary between two materialization windows)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from pydantic import SecretStr

from configs.settings import Settings, load_settings
from conveyor.adapters import feast_encoding, raw_data
from conveyor.adapters import feature_store as fsm

DAY0 = pd.Timestamp("2026-01-01", tz="UTC")
TTL_DAYS = 3


def day(n: float) -> pd.Timestamp:
    return DAY0 + pd.Timedelta(days=n)


def make_row(entity: int, when: pd.Timestamp, age: int) -> dict[str, object]:
    return {
        "customer_id": entity,
        "event_timestamp": when,
        "age": age,
        "tenure_months": age - 20,
        "monthly_charges": age * 1.5,
        "total_charges": age * 10.25,
        "support_calls_30d": 1,
        "avg_session_minutes": 12.5,
        "days_since_last_login": 2,
        "num_products": 1,
        "contract_type": "one_year",
        "payment_method": "card",
        "region": "north",
        "churned": 0,
    }


ROWS = [
    make_row(1, day(1) + pd.Timedelta(hours=9), 30),
    make_row(1, day(5) + pd.Timedelta(hours=9), 31),
    make_row(1, day(10) + pd.Timedelta(hours=9), 32),
    make_row(2, day(1) + pd.Timedelta(hours=12), 40),
    make_row(4, day(6), 50),
]


@pytest.fixture
def local_raw_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> raw_data.RawTable:
    """The raw Delta table on a local path (same writer, same Feast source and duckdb reader as on S3; the S3
    path itself is tests/integration/test_feature_store_s3.py)."""
    table = raw_data.RawTable(str(tmp_path / "raw" / "churn"))
    monkeypatch.setattr(raw_data, "raw_table", lambda config, settings: table)
    return table


@pytest.fixture
def settings(tmp_path: Path, local_raw_table: raw_data.RawTable) -> Settings:
    base = load_settings("local")
    features = base.features.model_copy(update={"state_dir": tmp_path / "feast", "ttl_days": TTL_DAYS})
    configured = base.model_copy(update={"features": features})
    frame = pd.DataFrame(ROWS)
    for partition_day, part in frame.groupby(frame["event_timestamp"].dt.date):
        raw_data.write_raw_day(local_raw_table, configured.dataset, partition_day, part, run_id="fixture")
    fsm.apply_definitions(configured)
    return configured


@pytest.fixture(params=["conveyor", "feast"])
def engine(request: pytest.FixtureRequest) -> str:
    """Each point-in-time test runs on Conveyor's merge_asof read and on Feast's own join: same expectations."""
    return str(request.param)


def training(settings: Settings, rows: list[tuple[int, pd.Timestamp]], engine: str = "conveyor") -> pd.DataFrame:
    entity_df = pd.DataFrame(
        {
            "customer_id": [e for e, _ in rows],
            "event_timestamp": [t for _, t in rows],
            "churned": np.arange(len(rows)) % 2,
        }
    )
    join = fsm.build_training_set if engine == "conveyor" else fsm.feast_training_set
    return join(settings, entity_df)


def test_point_in_time_never_leaks_a_later_value(settings: Settings, engine: str) -> None:
    label_times = [
        day(7),
        day(8) + pd.Timedelta(hours=8),
        day(10) + pd.Timedelta(hours=8),
        day(10) + pd.Timedelta(hours=9),
    ]
    out = training(settings, [(1, t) for t in label_times], engine)
    # days 7 and 8 see the day-5 value; one hour before the day-10 row nothing is visible (day 5 expired, day 10
    # is in the future: it must not leak); at the exact timestamp of the day-10 row it is visible.
    assert out["age"].tolist()[:2] == [31, 31]
    assert pd.isna(out.loc[2, "age"])
    assert out.loc[3, "age"] == 32


def test_values_older_than_ttl_are_null(settings: Settings, engine: str) -> None:
    rows = [(2, day(1) + pd.Timedelta(hours=13)), (2, day(1 + TTL_DAYS) + pd.Timedelta(hours=13)), (1, day(9))]
    out = training(settings, rows, engine)
    assert out.loc[0, "age"] == 40
    assert pd.isna(out.loc[1, "age"])  # the only value is older than the TTL
    assert pd.isna(out.loc[2, "age"])  # entity 1's day-5 value expired by day 9 (TTL 3 days)


def test_every_entity_row_comes_back_in_order_with_extra_columns(settings: Settings, engine: str) -> None:
    rows = [(3, day(7)), (1, day(7)), (2, day(2)), (1, day(7)), (99, day(2)), (1, day(2))]
    out = training(settings, rows, engine)
    assert len(out) == len(rows)
    assert out["customer_id"].tolist() == [e for e, _ in rows]
    assert out["churned"].tolist() == [0, 1, 0, 1, 0, 1]
    assert out["age"].tolist()[1:4] == [31, 40, 31]
    assert pd.isna(out.loc[0, "age"]) and pd.isna(out.loc[4, "age"])  # unknown entities keep their row
    assert list(out.columns[:3]) == ["customer_id", "event_timestamp", "churned"]


def test_entity_frame_without_timestamp_is_rejected(settings: Settings) -> None:
    with pytest.raises(KeyError, match="event_timestamp"):
        fsm.build_training_set(settings, pd.DataFrame({"customer_id": [1]}))


def test_materialize_then_online_read_returns_latest_values(settings: Settings) -> None:
    result = fsm.materialize_window(settings, day(0), day(11))
    assert result.rows_written == 3 + 2  # 11 one-day slices, each writes the latest row per entity it holds
    online = fsm.online_features(settings, [1, 2, 4, 3])
    assert online["customer_id"].tolist() == [1, 2, 4, 3]
    assert online["age"].tolist()[:3] == [32, 40, 50]
    assert online.loc[0, "contract_type"] == "one_year"
    assert online.loc[0, "monthly_charges"] == pytest.approx(48.0)
    assert online.iloc[3].drop("customer_id").isna().all()


def test_incremental_materialization_is_exactly_once_over_two_windows(settings: Settings) -> None:
    first = fsm.materialize_incremental(settings, day(0), day(6))
    assert first.windows == {"churn_features": (day(0).to_pydatetime(), day(6).to_pydatetime())}
    assert first.rows_written == 3  # entity 1 (day 1, day 5 slices) + entity 2; entity 4 sits at day 6: not yet
    assert fsm.online_features(settings, [1, 4])["age"].tolist()[0] == 31
    assert pd.isna(fsm.online_features(settings, [4]).loc[0, "age"])

    second = fsm.materialize_incremental(settings, day(0), day(11))  # start is ignored: resumes
    assert second.windows == {"churn_features": (day(6).to_pydatetime(), day(11).to_pydatetime())}
    assert second.rows_written == 2  # entity 4 at the boundary and entity 1 on day 10, each once
    assert fsm.online_features(settings, [1, 4])["age"].tolist() == [32, 50]

    again = fsm.materialize_incremental(settings, day(0), day(11))
    assert again.rows_written == 0 and again.skipped == ["churn_features"]


def test_online_store_never_goes_back_in_time(settings: Settings) -> None:
    fsm.materialize_window(settings, day(0), day(11))
    fsm.materialize_window(settings, day(0), day(6))  # an old window re-run
    assert fsm.online_features(settings, [1])["age"].tolist() == [32]


def test_skew_check_passes_then_fails_when_a_value_is_tampered_with(settings: Settings) -> None:
    fsm.materialize_window(settings, day(0), day(11))
    clean = fsm.check_skew(settings, sample_size=10)
    assert clean.passed, clean.reasons
    assert clean.entities_checked == 1  # only entity 1 has data within TTL (3 days) of day 11

    tampered = pd.DataFrame([make_row(1, day(10) + pd.Timedelta(hours=10), 32)])
    tampered["monthly_charges"] = 999.0
    fsm.write_online_rows(settings, tampered)
    report = fsm.check_skew(settings, sample_size=10)
    assert not report.passed
    assert report.mismatched_values == 1
    assert report.mismatches[0]["entity"] == 1 and report.mismatches[0]["feature"] == "monthly_charges"
    assert "1 of 11 feature values differ" in report.reasons[0]


def test_fast_conversion_matches_feast_converter(settings: Settings) -> None:
    frame = pd.DataFrame(ROWS)
    frame.loc[0, "region"] = None
    frame["age"] = frame["age"].astype("float64")
    frame.loc[1, "age"] = np.nan
    frame["age"] = frame["age"].astype("Int64")
    fast, reference = fsm.compare_converters(settings, frame)
    assert len(fast) == len(reference) == len(frame)
    for mine, theirs in zip(fast, reference, strict=True):
        assert mine[0] == theirs[0]
        assert {k: v.SerializeToString() for k, v in mine[1].items()} == {
            k: v.SerializeToString() for k, v in theirs[1].items()
        }
        assert mine[2] == theirs[2]


def test_encoded_cells_and_keys_are_feasts_bytes(settings: Settings) -> None:
    """BatchedSqliteOnlineStore writes column-wise encoded bytes without building protos: they must be exactly
    what Feast's serialization of the same rows' protos gives (nulls, NaN and -0.0 included)."""
    frame = pd.DataFrame(ROWS)
    frame.loc[0, "monthly_charges"] = np.nan
    frame.loc[1, "monthly_charges"] = -0.0
    frame.loc[2, "region"] = None
    store = fsm.feature_store(settings)
    view = store.get_feature_view(fsm.default_view(store, settings))
    table = pa.Table.from_pandas(fsm.offline_frame(settings, frame), preserve_index=False).combine_chunks()
    rows = feast_encoding.arrow_to_protos(table.to_batches()[0], view)
    assert isinstance(rows, feast_encoding.EncodedRows) and len(rows) == len(frame)
    keys = rows.serialized_keys(3)
    assert rows.encoded["monthly_charges"][0][0] == b"" and rows.encoded["monthly_charges"][1][0] != b""
    for i, (key, values, _, _) in enumerate(rows):
        assert keys[i] == serialize_entity_key(key, entity_key_serialization_version=3)
        assert set(values) == set(rows.encoded)
        for name, value in values.items():
            blobs, texts = rows.encoded[name]
            assert (blobs[i], texts[i]) == (value.SerializeToString(), feast_encoding.value_text(value)), (i, name)


def test_unknown_feature_service_is_named(settings: Settings) -> None:
    other = settings.model_copy(
        update={"features": settings.features.model_copy(update={"feature_service": "churn_v9"})}
    )
    with pytest.raises(fsm.FeatureStoreError, match="churn_v9.*declared"):
        fsm.apply_definitions(other)


def test_prod_profile_uses_redis_and_a_sql_registry_from_the_environment(tmp_path: Path) -> None:
    prod = load_settings("prod")
    assert prod.features.registry_url is None  # nothing in the repo: it must come from the environment
    with pytest.raises(fsm.FeatureStoreError, match=r"features.registry_url \(CONVEYOR_FEATURES__REGISTRY_URL"):
        fsm.repo_config(prod)
    url = "postgresql+psycopg://feast:s3cr3t-pw@db.internal:5432/feast"
    prod = prod.model_copy(
        update={"features": prod.features.model_copy(update={"state_dir": tmp_path, "registry_url": SecretStr(url)})}
    )
    config = fsm.repo_config(prod)
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == prod.features.redis_connection_string
    assert (config.registry.registry_type, config.registry.path) == ("sql", url)
    assert config.offline_store.type == "duckdb"
    assert "s3cr3t-pw" not in repr(prod.features) and "s3cr3t-pw" not in fsm.without_password(url)
    assert fsm.without_password(url) == "postgresql+psycopg://feast:***@db.internal:5432/feast"


def test_materialize_without_offline_data_says_where(tmp_path: Path, local_raw_table: raw_data.RawTable) -> None:
    base = load_settings("local")
    empty = base.model_copy(update={"features": base.features.model_copy(update={"state_dir": tmp_path})})
    fsm.apply_definitions(empty)
    with pytest.raises(fsm.FeatureStoreError, match=f"no raw Delta table at {local_raw_table.uri}"):
        fsm.materialize_window(empty, dt.date(2026, 1, 1), dt.date(2026, 1, 2))


def test_online_rows_keep_feasts_layout(settings: Settings) -> None:
    import sqlite3

    fsm.materialize_window(settings, day(0), day(11))
    assert settings.features.state_dir is not None
    with sqlite3.connect(settings.features.state_dir / "online.db") as conn:
        rows = conn.execute(
            "SELECT feature_name, value_text, event_ts FROM conveyor_churn_features "
            "WHERE feature_name IN ('age', 'region') ORDER BY event_ts DESC, feature_name"
        ).fetchall()
    # value_text (Feast's text filters read it) and epoch-second event_ts, as the stock store writes them.
    assert rows[:2] == [
        ("age", "32", int((day(10) + pd.Timedelta(hours=9)).timestamp())),
        ("region", "north", int((day(10) + pd.Timedelta(hours=9)).timestamp())),
    ]
