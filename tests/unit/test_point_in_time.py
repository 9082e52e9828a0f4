"""Conveyor's point-in-time reads (conveyor/adapters/offline_features.py) against independent references, on a
local raw Delta table: Feast's own join for training sets, a brute-force pandas scan for the scoring population."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters import feature_store as fsm
from conveyor.adapters import raw_data
from conveyor.adapters.offline_features import LatestFeatures, feature_spec
from conveyor.demo.synthetic import generate_day
from conveyor.domain.point_in_time import LatestRows, as_of_join, rebatch

START = dt.date(2026, 2, 1)
DAYS = 12
TTL_DAYS = 5


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """12 days of synthetic rows (600 customers, ~2.4 events each) in a local raw table, definitions applied."""
    table = raw_data.RawTable(str(tmp_path / "raw" / "churn"))
    monkeypatch.setattr(raw_data, "raw_table", lambda config, settings: table)
    base = load_settings("local")
    generator = base.generator.model_copy(update={"n_entities": 600, "events_per_entity_per_month": 6.0})
    features = base.features.model_copy(update={"state_dir": tmp_path / "feast", "ttl_days": TTL_DAYS})
    configured = base.model_copy(update={"features": features, "generator": generator})
    for offset in range(DAYS):
        day = START + dt.timedelta(days=offset)
        raw_data.write_raw_day(table, configured.dataset, day, generate_day(day, configured.dataset, generator), "t")
    fsm.apply_definitions(configured)
    return configured


def assert_same_values(left: pd.Series, right: pd.Series) -> None:
    assert (left.isna() == right.isna()).all(), left.name
    a, b = left[left.notna()], right[right.notna()]
    if pd.api.types.is_numeric_dtype(a) or pd.api.types.is_numeric_dtype(b):
        assert np.array_equal(a.astype(float).to_numpy(), b.astype(float).to_numpy()), left.name
    else:
        assert (a.astype(str).to_numpy() == b.astype(str).to_numpy()).all(), left.name


def raw_rows(settings: Settings) -> pd.DataFrame:
    table = raw_data.raw_table(settings.storage, settings)
    return raw_data.read_table_window(table, START, START + dt.timedelta(days=DAYS)).frame


def test_training_set_matches_feasts_own_join(settings: Settings) -> None:
    ds = settings.dataset
    rng = np.random.default_rng(3)
    n = 2_000
    horizon = pd.Timestamp(START, tz="UTC") + pd.to_timedelta(rng.integers(0, (DAYS + 2) * 86_400, n), unit="s")
    known = raw_rows(settings)[ds.entity_column].unique()
    ids = np.where(rng.random(n) < 0.9, rng.choice(known, n), -1)  # a tenth of the rows: an unknown entity
    entity_df = pd.DataFrame({ds.entity_column: ids, ds.timestamp_column: horizon})
    entity_df.index = pd.RangeIndex(100, 100 + n)  # the caller's index comes back
    ours = fsm.build_training_set(settings, entity_df)
    feast = fsm.feast_training_set(settings, entity_df)
    assert ours.index.equals(entity_df.index) and len(ours) == n
    for feature in ds.feature_names:
        assert_same_values(ours[feature], feast[feature])
    share = ours[ds.feature_names[0]].notna().mean()
    assert 0.3 < share < 1.0  # some rows see values, some are before the first row or past the TTL


def reference_latest(settings: Settings, as_of: dt.datetime, lookback_days: int) -> pd.DataFrame:
    """Brute force: rows in [as_of - lookback, as_of), latest per entity, values nulled past the TTL."""
    ds = settings.dataset
    raw = raw_rows(settings)
    stamps = raw[ds.timestamp_column]
    window = raw[(stamps >= as_of - dt.timedelta(days=lookback_days)) & (stamps < as_of)]
    latest = window.sort_values([ds.entity_column, ds.timestamp_column], kind="stable")
    latest = latest.drop_duplicates(ds.entity_column, keep="last").reset_index(drop=True)
    stale = latest[ds.timestamp_column] < as_of - dt.timedelta(days=TTL_DAYS)
    latest[ds.feature_names] = latest[ds.feature_names].astype(object).where(~stale, None)
    return latest


def read_all(source: LatestFeatures, chunk_rows: int) -> pd.DataFrame:
    chunks = list(source.chunks(chunk_rows))
    assert all(c.num_rows <= chunk_rows for c in chunks)
    return pa.concat_tables(chunks).to_pandas()


@pytest.mark.parametrize("lookback_days", [3, 8])  # inside the TTL, and past it (old rows: null features)
def test_latest_features_match_a_brute_force_scan(settings: Settings, lookback_days: int) -> None:
    ds = settings.dataset
    as_of = dt.datetime(2026, 2, 10, 6, tzinfo=dt.UTC)  # mid-day: rows later that day must not count
    source = LatestFeatures(feature_spec(settings), as_of, dt.timedelta(days=lookback_days))
    got = read_all(source, chunk_rows=1_000).sort_values(ds.entity_column).reset_index(drop=True)
    expected = reference_latest(settings, as_of, lookback_days)
    assert source.entities == len(expected) == len(got) > 100
    assert got[ds.entity_column].tolist() == expected[ds.entity_column].tolist()
    for feature in ds.feature_names:
        assert_same_values(got[feature], expected[feature])
    assert (got[ds.timestamp_column] == pd.Timestamp(as_of) - pd.Timedelta(microseconds=1)).all()
    if lookback_days > TTL_DAYS:
        assert got[ds.feature_names[0]].isna().any()


def test_latest_features_are_deterministic_and_fingerprinted_by_table_version(settings: Settings) -> None:
    as_of = dt.datetime(2026, 2, 11, tzinfo=dt.UTC)
    first = LatestFeatures(feature_spec(settings), as_of, dt.timedelta(days=4))
    again = LatestFeatures(feature_spec(settings), as_of, dt.timedelta(days=4))
    pd.testing.assert_frame_equal(read_all(first, 1_000), read_all(again, 1_000))
    assert first.fingerprint() == again.fingerprint()
    day = START + dt.timedelta(days=DAYS)  # a new commit: same question, another table version
    table = raw_data.raw_table(settings.storage, settings)
    raw_data.write_raw_day(table, settings.dataset, day, generate_day(day, settings.dataset, settings.generator), "t")
    later = LatestFeatures(feature_spec(settings), as_of, dt.timedelta(days=4))
    assert later.version == first.version + 1 and later.fingerprint() != first.fingerprint()
    pinned = LatestFeatures(feature_spec(settings), as_of, dt.timedelta(days=4), version=first.version)
    assert pinned.fingerprint() == first.fingerprint()


def test_latest_rows_keeps_one_row_per_entity_on_ties() -> None:
    us = pa.timestamp("us", "UTC")
    rows = pa.table(
        {
            "id": pa.array([1, 2, 1, 1, 2, 3], pa.int64()),
            "ts": pa.array([10, 5, 30, 30, 5, 1], pa.int64()).cast(us),
            "value": pa.array(["a", "b", "c", "d", "e", "f"]),
        }
    )
    latest = LatestRows(["id"], "ts")
    for start in (0, 3):
        latest.add_keys(rows.slice(start, 3).select(["id", "ts"]))
    assert latest.finish_keys() == 3
    picked = [latest.select(rows.slice(start, 3)) for start in (0, 3)]
    values = pa.concat_tables(picked).column("value").to_pylist()
    assert values == ["b", "c", "f"]  # entity 1: first of the two rows at ts 30; entity 2: first of its ties


@pytest.mark.parametrize("key_type", ["int", "str"])
@pytest.mark.parametrize("merge_rows", [1, 7, 1_000_000])
def test_latest_rows_matches_a_plain_pandas_selection(key_type: str, merge_rows: int) -> None:
    """Many entities over uneven batches; timestamps drawn from few values so ties span merge groups."""
    rng = np.random.default_rng(7)
    n = 500
    ids = rng.integers(0, 60, n)
    us = pa.timestamp("us", "UTC")
    rows = pa.table(
        {
            "id": pa.array(ids) if key_type == "int" else pa.array([f"C{i:06d}" for i in ids]),
            "ts": pa.array(rng.integers(0, 5, n), pa.int64()).cast(us),
            "row": pa.array(np.arange(n)),
        }
    )
    cuts = [0, 1, 2, 40, 41, 200, 333, n]
    latest = LatestRows(["id"], "ts", merge_rows=merge_rows)
    for a, b in itertools.pairwise(cuts):
        latest.add_keys(rows.slice(a, b - a).select(["id", "ts"]))
    frame = rows.to_pandas()
    expected = frame.sort_values(["id", "ts", "row"], ascending=[True, False, True]).drop_duplicates("id")["row"]
    assert latest.finish_keys() == frame["id"].nunique()
    picked = [latest.select(rows.slice(a, b - a)) for a, b in itertools.pairwise([0, 250, 251, n])]
    assert pa.concat_tables(picked).column("row").to_pylist() == sorted(expected)


def test_latest_rows_passes_over_empty_batches() -> None:
    """A filtered scan yields empty batches, last ones included: they must not break the merge."""
    us = pa.timestamp("us", "UTC")
    rows = pa.table({"id": pa.array([1, 2, 1], pa.int64()), "ts": pa.array([1, 2, 3], pa.int64()).cast(us)})
    latest = LatestRows(["id"], "ts", merge_rows=1)  # every non-empty batch merges at once: the last pending is empty
    for batch in (rows.slice(0, 0), rows.slice(0, 2), rows.slice(2, 0), rows.slice(2, 1), rows.slice(3, 0)):
        latest.add_keys(batch)
    assert latest.finish_keys() == 2
    picked = [latest.select(b) for b in (rows.slice(0, 0), rows.slice(0, 2), rows.slice(2, 1), rows.slice(3, 0))]
    assert pa.concat_tables(picked).column("ts").cast(pa.int64()).to_pylist() == [2, 3]


def test_latest_rows_refuses_a_second_pass_longer_than_the_first() -> None:
    us = pa.timestamp("us", "UTC")
    rows = pa.table({"id": pa.array([1, 2], pa.int64()), "ts": pa.array([1, 2], pa.int64()).cast(us)})
    latest = LatestRows(["id"], "ts")
    latest.add_keys(rows.slice(0, 1))
    latest.finish_keys()
    with pytest.raises(RuntimeError, match="pass 2 saw 2 rows, pass 1 only 1: the source changed"):
        latest.select(rows)


def test_rebatch_regroups_without_losing_rows() -> None:
    tables = [pa.table({"x": list(range(n))}) for n in (0, 5, 7, 0, 3)]
    out = list(rebatch(tables, 4))
    assert [t.num_rows for t in out] == [4, 4, 4, 3]
    assert sum((t.column("x").to_pylist() for t in out), []) == [*range(5), *range(7), *range(3)]


@pytest.mark.parametrize("merge_rows", [2, 2_000_000])  # merged as key pairs arrive, or once at the end
def test_latest_rows_with_a_composite_key_keeps_one_row_per_key_pair(merge_rows: int) -> None:
    """(store, sku) is the entity: store 1's sku 'a' and sku 'b' are two entities, sku 'a' of store 2 a third."""
    us = pa.timestamp("us", "UTC")
    rows = pa.table(
        {
            "store": pa.array([1, 1, 2, 1, 1, 2], pa.int64()),
            "sku": pa.array(["a", "b", "a", "a", "b", "a"]),
            "ts": pa.array([10, 20, 5, 30, 10, 5], pa.int64()).cast(us),
            "value": pa.array(["a10", "b20", "2a5", "a30", "b10", "2a5-tie"]),
        }
    )
    latest = LatestRows(["store", "sku"], "ts", merge_rows=merge_rows)
    for start in (0, 3):
        latest.add_keys(rows.slice(start, 3).select(["store", "sku", "ts"]))
    assert latest.finish_keys() == 3
    picked = pa.concat_tables([latest.select(rows.slice(start, 3)) for start in (0, 3)])
    assert sorted(picked.column("value").to_pylist()) == ["2a5", "a30", "b20"]


def test_as_of_join_matches_on_every_key_column() -> None:
    stamp = pd.Timestamp("2026-02-01", tz="UTC")
    source = pd.DataFrame(
        {
            "store": [1, 1, 2],
            "sku": ["a", "b", "a"],
            "ts": [stamp - pd.Timedelta(hours=h) for h in (3, 2, 1)],
            "value": [1.0, 2.0, 3.0],
        }
    )
    entity_df = pd.DataFrame({"store": [2, 1, 1, 2], "sku": ["a", "b", "a", "b"], "ts": [stamp] * 4})
    joined = as_of_join(entity_df, source, ["store", "sku"], "ts", ["value"], dt.timedelta(days=1))
    assert joined["value"].tolist()[:3] == [3.0, 2.0, 1.0] and np.isnan(joined["value"].iloc[3])  # (2, b): none
