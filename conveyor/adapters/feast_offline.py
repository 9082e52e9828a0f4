"""Training sets: point-in-time joins of the feature services in Feast's registry over the raw Delta table on the
object store (Conveyor's merge_asof read for the repo's own view, Feast's duckdb offline store otherwise)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from feast import FeatureStore, FeatureView

from configs.settings import Settings
from conveyor.adapters import raw_data
from conveyor.adapters.duckdb_s3 import offline_session
from conveyor.adapters.feast_repo import (
    FeatureStoreError,
    default_view,
    feature_store,
    raw_table,
    service,
    service_features,
    service_name,
)
from conveyor.adapters.offline_features import FeatureSpec, feature_spec, training_set
from conveyor.domain.failures import InvalidInput, MissingColumns

ROW_ID = "__conveyor_row"
FEAST_TS = "event_timestamp"  # the entity-frame timestamp column name Feast looks for first


def offline_frame(settings: Settings, frame: pd.DataFrame) -> pd.DataFrame:
    """Entity, timestamp (`timestamp[us, UTC]`) and feature columns of raw rows, as Feast's views hold them."""
    ds = settings.dataset
    missing = [c for c in (*ds.entity_columns, ds.timestamp_column, *ds.feature_names) if c not in frame.columns]
    if missing:
        raise MissingColumns(f"columns {missing} (from configs/dataset.yaml) are missing from the raw data")
    out = frame[[*ds.entity_columns, ds.timestamp_column, *ds.feature_names]].copy()
    out[ds.timestamp_column] = pd.to_datetime(out[ds.timestamp_column], utc=True).astype("datetime64[us, UTC]")
    return out


def require_offline_data(settings: Settings) -> raw_data.RawTable:
    """The raw table, or an error naming where it was looked for."""
    table = raw_table(settings)
    if raw_data.table_version(table) is None:
        raise FeatureStoreError(f"no offline feature data: no raw Delta table at {table.uri} (run the ingest flow)")
    return table


def _entity_frame(settings: Settings, entity_df: pd.DataFrame) -> pd.DataFrame:
    ds = settings.dataset
    stamps = pd.to_datetime(entity_df[ds.timestamp_column], utc=True)
    if stamps.isna().any():
        raise InvalidInput(f"entity_df column {ds.timestamp_column!r}: {int(stamps.isna().sum())} null timestamps")
    return pd.DataFrame(
        {
            ROW_ID: np.arange(len(entity_df), dtype=np.int64),
            **{key: entity_df[key].to_numpy() for key in ds.entity_columns},
            FEAST_TS: stamps.to_numpy(),
        }
    ).assign(**{FEAST_TS: lambda f: f[FEAST_TS].dt.tz_localize("UTC") if f[FEAST_TS].dt.tz is None else f[FEAST_TS]})


def _prepare(
    settings: Settings, entity_df: pd.DataFrame, feature_service: str | None
) -> tuple[FeatureStore, str, list[str]]:
    ds = settings.dataset
    missing = [c for c in (*ds.entity_columns, ds.timestamp_column) if c not in entity_df.columns]
    if missing:
        raise MissingColumns(f"entity_df needs columns {missing} (dataset.entity_columns / dataset.timestamp_column)")
    store = feature_store(settings)
    name = service_name(settings, feature_service)
    features = service_features(store, name)
    clash = sorted(set(features) & set(entity_df.columns))
    if clash:
        raise InvalidInput(f"entity_df already has feature columns {clash}; drop them before the point-in-time join")
    return store, name, features


def spec_of_view(settings: Settings, view: FeatureView, features: list[str] | None = None) -> FeatureSpec | None:
    """`view` (or `features` of it) as a FeatureSpec when it is the repo's view over the raw table: same source,
    key, timestamp and TTL as the spec the settings give; None otherwise (Feast's own reads then decide)."""
    spec = feature_spec(settings, features or [f.name for f in view.features])
    source = view.batch_source
    same = (
        source is not None
        and not source.field_mapping
        and str(getattr(source, "path", "")).rstrip("/") == spec.table.uri.rstrip("/")
        and source.timestamp_field == spec.timestamp
        and sorted(view.join_keys) == sorted(spec.keys)
        and view.ttl == spec.ttl
    )
    return spec if same else None


def _spec_of_service(store: FeatureStore, settings: Settings, name: str, features: list[str]) -> FeatureSpec | None:
    """The service's features as a FeatureSpec, when they all come from the repo's raw-table view."""
    views = {projection.name for projection in service(store, name).feature_view_projections}
    if len(views) != 1:
        return None
    return spec_of_view(settings, store.get_feature_view(views.pop()), features)


def build_training_set(
    settings: Settings,
    entity_df: pd.DataFrame,
    feature_service: str | None = None,
    *,
    data_version: int | None = None,
) -> pd.DataFrame:
    """Point-in-time join: for each (entity, timestamp) row, each feature's latest value at or before that
    timestamp and within the TTL (else null). Every row comes back, in the input order, with its extra columns
    (e.g. the label) untouched; feature columns are appended. `data_version` reads that version of the raw table
    (default: the latest commit).

    The service's definitions come from Feast's registry; the join runs on conveyor/adapters/offline_features.py
    (one read of the window, `pd.merge_asof`) when the service reads the repo's raw-table view, else on Feast's
    own `get_historical_features` (`feast_training_set`). Tests check that both give the same values."""
    store, name, features = _prepare(settings, entity_df, feature_service)
    if entity_df.empty:
        return entity_df.assign(**{f: pd.Series(dtype="object") for f in features})
    spec = _spec_of_service(store, settings, name, features)
    if spec is None:
        return feast_training_set(settings, entity_df, feature_service, data_version=data_version)
    require_offline_data(settings)
    return training_set(spec, entity_df, data_version)


def feast_training_set(
    settings: Settings,
    entity_df: pd.DataFrame,
    feature_service: str | None = None,
    *,
    data_version: int | None = None,
) -> pd.DataFrame:
    """`build_training_set` through Feast's own point-in-time join (the duckdb offline store's SQL)."""
    store, name, features = _prepare(settings, entity_df, feature_service)
    if entity_df.empty:
        return entity_df.assign(**{f: pd.Series(dtype="object") for f in features})
    frame = _entity_frame(settings, entity_df)
    table = require_offline_data(settings)
    with offline_session(table, data_version):
        job = store.get_historical_features(entity_df=frame, features=service(store, name), full_feature_names=False)
        joined = job.to_df()
    if len(joined) != len(entity_df):
        raise FeatureStoreError(
            f"point-in-time join returned {len(joined)} rows for {len(entity_df)} entity rows "
            f"(offline store {store.config.offline_store.type}, {table.uri}): rows were dropped or duplicated"
        )
    # Feast does not keep row order: put every row back where it came from.
    joined = joined.sort_values(ROW_ID, kind="stable").reset_index(drop=True)
    out = entity_df.reset_index(drop=True).copy()
    for feature in features:
        out[feature] = joined[feature].to_numpy()
    out.index = entity_df.index
    return out


def latest_entities(settings: Settings, cutoff: dt.datetime, ttl: dt.timedelta) -> pd.DataFrame:
    """The key columns of the entities with a raw row in (cutoff - ttl, cutoff], through the offline store (as
    materialization reads), one row an entity, in the dataset's key types."""
    store = feature_store(settings)
    view = store.get_feature_view(default_view(store, settings))
    source = view.batch_source
    if source is None:
        raise FeatureStoreError(f"feature view {view.name!r} has no batch source")
    offline = store._get_provider().offline_store
    with offline_session(require_offline_data(settings)):
        latest = offline.pull_latest_from_table_or_query(
            config=store.config,
            data_source=source,
            join_key_columns=settings.dataset.entity_columns,
            feature_name_columns=[],
            timestamp_field=source.timestamp_field,
            created_timestamp_column=source.created_timestamp_column or None,
            start_date=cutoff - ttl,
            end_date=cutoff,
        ).to_arrow()
    types = settings.dataset.key_arrow_types
    return pd.DataFrame(
        {key: np.asarray(latest.column(key).cast(kind).to_numpy(zero_copy_only=False)) for key, kind in types.items()}
    )
