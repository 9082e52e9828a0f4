"""Online store: reads and writes through Feast, and materialization from the raw Delta table.

Materialization (`materialize_window`) reads the window from the offline store in time slices of
`features.materialize_chunk_hours` (latest row per entity, the `pull_latest_features` knob), converts each slice
in batches of `features.online_write_batch_size` rows and writes them through the online store's own
`online_write_batch`, one transaction per slice on the SQLite store (`BatchedSqliteOnlineStore.one_transaction`).
Memory is bounded by one slice, not by the window. Windows are half-open [start, end) and recorded in the
registry, so `materialize_incremental` resumes exactly where the last run stopped.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, cast

import pandas as pd
import pyarrow as pa
from feast import FeatureStore, FeatureView
from feast.data_source import DataSource
from feast.utils import _convert_arrow_to_proto

from configs.settings import Settings
from conveyor.adapters.duckdb_s3 import offline_session
from conveyor.adapters.feast_encoding import arrow_to_protos
from conveyor.adapters.feast_offline import offline_frame, require_offline_data, spec_of_view
from conveyor.adapters.feast_online_store import BatchedSqliteOnlineStore
from conveyor.adapters.feast_repo import (
    FeatureStoreError,
    default_view,
    feature_store,
    service,
    service_features,
    service_name,
    utc,
)
from conveyor.adapters.offline_features import latest_rows
from conveyor.adapters.raw_data import RawTable, table_dataset
from conveyor.domain.entity_keys import key_frame, key_records
from conveyor.domain.failures import InvalidInput

ONE_US = dt.timedelta(microseconds=1)


def online_features(
    settings: Settings,
    entities: Iterable[int | str] | pd.DataFrame,
    feature_service: str | None = None,
    batch_size: int = 10_000,
) -> pd.DataFrame:
    """Latest materialized feature values for each entity, in the given order (null where none): `entities` are
    the ids of a one-column key, or a frame of the key columns (a composite key). Returns the key columns and
    the service's features. Note: online reads ignore TTL (Feast); the skew check covers that gap."""
    ds = settings.dataset
    store = feature_store(settings)
    name = service_name(settings, feature_service)
    feature_service_ = service(store, name)
    features = service_features(store, name)
    keys = key_frame(ds, entities)
    rows = key_records(keys)
    parts = []
    for lo in range(0, len(rows), batch_size):
        response = store.get_online_features(features=feature_service_, entity_rows=rows[lo : lo + batch_size])
        part = response.to_df()
        # Feast can hand INT64 keys back as floats: restore them from the request (order is kept).
        for key in ds.entity_columns:
            part[key] = keys[key].to_numpy()[lo : lo + batch_size]
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=[*ds.entity_columns, *features])
    return pd.concat(parts, ignore_index=True)[[*ds.entity_columns, *features]]


def write_online_rows(settings: Settings, frame: pd.DataFrame, feature_view: str | None = None) -> int:
    """Write rows (entity, timestamp, features) straight to the online store through Feast's write path.
    For pushes and corrections; materialization is the normal way in."""
    store = feature_store(settings)
    view = store.get_feature_view(feature_view or default_view(store, settings))
    table = pa.Table.from_pandas(offline_frame(settings, frame), preserve_index=False)
    _write_table(store, view, table, settings.features.online_write_batch_size)
    return len(frame)


def _write_table(store: FeatureStore, view: FeatureView, table: pa.Table, batch_size: int) -> None:
    """Convert batch k+1 while the online store writes batch k (one writer thread, at most two batches in
    memory). Stores that wait outside the GIL (SQLite's B-tree work, Redis round trips) overlap with it."""
    provider = store._get_provider()
    pending: Future[None] | None = None
    # BatchedSqliteOnlineStore takes the encoded rows as they are (their protos are never built) and commits once
    # per call; any other online store gets a plain list of Feast's tuples and commits the way it always does.
    online_store = getattr(provider, "online_store", None)
    batched = isinstance(online_store, BatchedSqliteOnlineStore)
    transaction = (
        online_store.one_transaction(store.config)
        if isinstance(online_store, BatchedSqliteOnlineStore)
        else nullcontext()
    )
    with transaction, ThreadPoolExecutor(max_workers=1, thread_name_prefix="online-write") as writer:
        for batch in table.to_batches(max_chunksize=batch_size):
            encoded = arrow_to_protos(batch, view)
            rows = cast(list[Any], encoded) if batched else list(encoded)
            if pending is not None:
                pending.result()
            pending = writer.submit(provider.online_write_batch, store.config, view, rows, None)
        if pending is not None:
            pending.result()


def compare_converters(settings: Settings, frame: pd.DataFrame) -> tuple[list[Any], list[Any]]:
    """The rows `arrow_to_protos` and Feast's own converter make from the same frame (a check for tests)."""
    store = feature_store(settings)
    view = store.get_feature_view(default_view(store, settings))
    batch = pa.Table.from_pandas(offline_frame(settings, frame), preserve_index=False).combine_chunks().to_batches()[0]
    key_types = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
    return list(arrow_to_protos(batch, view)), list(_convert_arrow_to_proto(batch, view, key_types))


# ---- materialization ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class MaterializationResult:
    windows: dict[str, tuple[dt.datetime, dt.datetime]]  # feature view -> [start, end) materialized
    rows_written: int
    chunks: int
    seconds: float
    skipped: list[str] = field(default_factory=list)  # views already up to date

    def summary(self) -> str:
        spans = ", ".join(f"{v} [{s:%Y-%m-%d %H:%M}, {e:%Y-%m-%d %H:%M})" for v, (s, e) in self.windows.items())
        return (
            f"materialized {self.rows_written:,} entity rows in {self.chunks} chunks, {self.seconds:.1f}s: "
            f"{spans or 'nothing to do'}"
        )


def _batch_source(view: FeatureView) -> DataSource:
    if view.batch_source is None:
        raise FeatureStoreError(f"feature view {view.name!r} has no batch source to materialize from")
    return view.batch_source


def _feast_slice(store: FeatureStore, view: FeatureView, raw: RawTable, lo: dt.datetime, hi: dt.datetime) -> pa.Table:
    """[lo, hi) of a view through Feast's offline store (latest row per entity, or every row oldest first)."""
    config = store.config
    offline = store._get_provider().offline_store
    source = _batch_source(view)
    latest_only = config.materialization_config.pull_latest_features
    pull = offline.pull_latest_from_table_or_query if latest_only else offline.pull_all_from_table_or_query
    with offline_session(raw):  # one reader of the shared duckdb connection at a time
        table = pull(
            config=config,
            data_source=source,
            join_key_columns=[e.name for e in view.entity_columns],
            feature_name_columns=[f.name for f in view.features],
            timestamp_field=source.timestamp_field,
            created_timestamp_column=source.created_timestamp_column or None,
            start_date=lo,
            end_date=hi - ONE_US,
        ).to_arrow()  # Feast's bounds are inclusive: make it [lo, hi)
    if source.field_mapping:
        table = table.rename_columns([source.field_mapping.get(c, c) for c in table.column_names])
    return table if latest_only else table.sort_by(source.timestamp_field)  # the newest value lands last


def _materialize_view(
    store: FeatureStore, view: FeatureView, window: tuple[dt.datetime, dt.datetime], settings: Settings, raw: RawTable
) -> tuple[int, int]:
    """Stream [start, end) of one view into the online store, one time slice at a time. Returns (rows, chunks).
    The repo's raw-table view is read straight from the table (conveyor/adapters/offline_features.latest_rows:
    the same latest row per entity as Feast's pull, without its SQL); any other view through Feast."""
    config = store.config
    batch_size = config.materialization_config.online_write_batch_size or settings.features.online_write_batch_size
    step = dt.timedelta(hours=settings.features.materialize_chunk_hours)
    spec = spec_of_view(settings, view) if config.materialization_config.pull_latest_features else None
    dataset = table_dataset(spec.table)[0] if spec is not None else None  # the Delta log read once, not per slice
    rows = chunks = 0
    cursor, end = window
    while cursor < end:
        upper = min(cursor + step, end)
        if spec is not None and dataset is not None:
            table = latest_rows(dataset, spec, cursor, upper)
        else:
            table = _feast_slice(store, view, raw, cursor, upper)
        _write_table(store, view, table, batch_size)
        rows += table.num_rows
        chunks += 1
        del table
        cursor = upper
    return rows, chunks


def materialize_window(
    settings: Settings,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    *,
    feature_views: Sequence[str] | None = None,
) -> MaterializationResult:
    """Load feature values with event time in [start, end) into the online store and record the window in the
    registry. Bounded memory: one `materialize_chunk_hours` slice at a time."""
    begin = time.perf_counter()
    lo, hi = utc(start), utc(end)
    if lo >= hi:
        raise InvalidInput(f"materialize_window: start {lo} must be before end {hi}")
    raw = require_offline_data(settings)
    store = feature_store(settings)
    windows: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    rows = chunks = 0
    for view in store.list_feature_views():
        if not view.online or (feature_views is not None and view.name not in feature_views):
            continue
        written, pieces = _materialize_view(store, view, (lo, hi), settings, raw)
        store.registry.apply_materialization(view, store.project, lo, hi)
        windows[view.name] = (lo, hi)
        rows += written
        chunks += pieces
    return MaterializationResult(windows, rows, chunks, time.perf_counter() - begin)


def materialized_until(settings: Settings) -> dict[str, dt.datetime | None]:
    """For each online feature view, the end of the last materialized window (None: never materialized)."""
    store = feature_store(settings)
    store.refresh_registry()
    return {
        v.name: (utc(v.most_recent_end_time) if v.most_recent_end_time else None)
        for v in store.list_feature_views()
        if v.online
    }


def materialize_incremental(
    settings: Settings, start: dt.datetime | dt.date, end: dt.datetime | dt.date
) -> MaterializationResult:
    """Materialize up to `end`, each view from where its last window stopped. A view never materialized starts
    at `start` (Feast's own incremental would start at end - TTL and skip older history)."""
    begin = time.perf_counter()
    hi = utc(end)
    windows: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    starts = {name: until or utc(start) for name, until in materialized_until(settings).items()}
    skipped = [name for name, lo in starts.items() if lo >= hi]
    due = {name: lo for name, lo in starts.items() if lo < hi}
    rows = chunks = 0
    for name, lo in due.items():
        result = materialize_window(settings, lo, hi, feature_views=[name])
        windows.update(result.windows)
        rows += result.rows_written
        chunks += result.chunks
    return MaterializationResult(windows, rows, chunks, time.perf_counter() - begin, skipped)
