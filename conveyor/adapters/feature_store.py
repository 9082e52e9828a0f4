"""The feature-store adapter: the only module that imports feast.

Features are declared once in `feature_repo/` and served from here to training (point-in-time joins through the
offline store) and to scoring (the online store), so both read the same definitions.

Layout (local profile, everything under `features.state_dir`, default `<local_stack.state_dir>/feast`):
    registry.db                      Feast file registry
    online.db                        SQLite online store (Feast's tables, written in batches)
    offline/<dataset>/dt=YYYY-MM-DD/ a parquet copy of each published raw partition; the duckdb offline store
                                     reads it. duckdb cannot read S3 here (its httpfs extension is a download),
                                     so `sync_offline` copies each partition once, re-copying only when its
                                     manifest changes.

Materialization (`materialize_window`) reads the window from the offline store in time slices of
`features.materialize_chunk_hours` (latest row per entity, the `pull_latest_features` knob), converts each slice
in batches of `features.online_write_batch_size` rows and writes them through the online store's own
`online_write_batch`, one transaction per slice on the SQLite store (`BatchedSqliteOnlineStore.one_transaction`).
Memory is bounded by one slice, not by the window. Windows are half-open [start, end) and
recorded in the registry, so `materialize_incremental` resumes exactly where the last run stopped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import logging
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from feast import FeatureService, FeatureStore, FeatureView, RepoConfig
from feast.data_source import DataSource
from feast.utils import _convert_arrow_to_proto

from configs.settings import Settings
from conveyor.adapters.feast_encoding import arrow_to_protos
from conveyor.adapters.feast_online_store import BatchedSqliteOnlineStore
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import published_days, raw_prefix, raw_root

log = logging.getLogger(__name__)

# Importing feast runs `warnings.simplefilter("once", DeprecationWarning)`, which overrides a filter set earlier
# (the CLI's); ibis 12 on duckdb 1.5 (the offline store) then prints a deprecation we cannot fix from here on
# every retrieval. Filtered after the import, so this filter comes first. Tests keep pytest's own filters.
warnings.filterwarnings("ignore", message=r"fetch_arrow_table\(\) is deprecated", category=DeprecationWarning)

ROW_ID = "__conveyor_row"
FEAST_TS = "event_timestamp"  # the entity-frame timestamp column name Feast looks for first
ONE_US = dt.timedelta(microseconds=1)
_SYNC_MARKER = "_source.json"


class FeatureStoreError(RuntimeError):
    """The feature store could not do what was asked; the message says what and where."""


# ---- configuration ------------------------------------------------------------------------------------
def state_dir(settings: Settings) -> Path:
    assert settings.features.state_dir is not None  # resolved by Settings
    return settings.features.state_dir


def offline_root(settings: Settings) -> Path:
    """Where the offline parquet copy of the raw partitions lives (one folder per day)."""
    return state_dir(settings) / "offline" / settings.dataset.name


def repo_config(settings: Settings) -> RepoConfig:
    """`feature_repo/feature_store[.<profile>].yaml` with the project from config and absolute paths."""
    repo = settings.features.repo_dir
    profile = settings.active_profile
    name = "feature_store.yaml" if profile == "local" else f"feature_store.{profile}.yaml"
    path = repo / name
    if not path.exists():
        raise FeatureStoreError(f"feature store config {path} not found (profile {settings.active_profile!r})")
    raw: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    state = state_dir(settings)
    raw["project"] = settings.features.project
    registry = raw.get("registry")
    if isinstance(registry, str):
        registry = {"registry_type": "file", "path": registry}
    if isinstance(registry, dict) and registry.get("registry_type") == "sql":
        if settings.features.registry_url is None:
            raise FeatureStoreError(
                f"{path} declares a SQL registry: set features.registry_url (CONVEYOR_FEATURES__REGISTRY_URL, "
                "e.g. postgresql+psycopg://user:password@host:5432/feast)"
            )
        registry = {**registry, "path": settings.features.registry_url.get_secret_value()}
    if isinstance(registry, dict) and registry.get("registry_type", "file") == "file":
        registry_path = str(registry["path"])
        if "://" not in registry_path and not Path(registry_path).is_absolute():
            registry = {**registry, "path": str(state / registry_path)}
    raw["registry"] = registry
    online = dict(raw.get("online_store") or {})
    if str(online.get("type", "")).endswith(("sqlite", "SqliteOnlineStore")):
        online_path = Path(online.get("path", "online.db"))
        online["path"] = str(online_path if online_path.is_absolute() else state / online_path)
    if online.get("type") == "redis":
        online["connection_string"] = settings.features.redis_connection_string
    raw["online_store"] = online
    state.mkdir(parents=True, exist_ok=True)
    return RepoConfig(repo_path=repo, **raw)


def _load_definitions_module(repo_dir: Path) -> Any:
    path = repo_dir / "definitions.py"
    spec = importlib.util.spec_from_file_location("conveyor_feature_repo_definitions", path)
    if spec is None or spec.loader is None:
        raise FeatureStoreError(f"cannot load Feast declarations from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def definitions(settings: Settings) -> list[Any]:
    """The Feast objects declared in `feature_repo/definitions.py` for the configured dataset."""
    module = _load_definitions_module(settings.features.repo_dir)
    glob = str(offline_root(settings) / "dt=*" / "*.parquet")
    objects: list[Any] = module.definitions(
        settings.dataset, offline_path=glob, ttl_days=settings.features.ttl_days, owner=settings.features.owner
    )
    return objects


_STORES: dict[str, FeatureStore] = {}


def feature_store(settings: Settings) -> FeatureStore:
    """A FeatureStore for these settings (one per distinct configuration, reused within the process)."""
    # The JSON dump masks secrets, so settings that differ only in the registry URL would share a store.
    registry_url = settings.features.registry_url
    secret = registry_url.get_secret_value() if registry_url is not None else ""
    key = settings.model_dump_json() + hashlib.sha256(secret.encode()).hexdigest()
    if key not in _STORES:
        _STORES[key] = FeatureStore(config=repo_config(settings))
    return _STORES[key]


def _service_name(settings: Settings, feature_service: str | None) -> str:
    return feature_service or settings.features.feature_service


def _service(store: FeatureStore, name: str) -> FeatureService:
    try:
        return store.get_feature_service(name)
    except Exception as exc:  # Feast raises FeatureServiceNotFoundException
        known = [s.name for s in store.list_feature_services()]
        raise FeatureStoreError(
            f"feature service {name!r} is not in the registry (known: {known}); declare it in "
            "feature_repo/definitions.py and run apply_definitions, or fix features.feature_service"
        ) from exc


def _service_features(store: FeatureStore, name: str) -> list[str]:
    service = _service(store, name)
    return [f.name for projection in service.feature_view_projections for f in projection.features]


# ---- apply --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppliedDefinitions:
    project: str
    entities: list[str]
    feature_views: list[str]
    feature_services: list[str]
    registry: str


def apply_definitions(settings: Settings) -> AppliedDefinitions:
    """Register the repo's declarations (FeatureStore.apply from Python: milliseconds, not the 6 s CLI)."""
    objects = definitions(settings)
    services = [o.name for o in objects if isinstance(o, FeatureService)]
    if settings.features.feature_service not in services:
        raise FeatureStoreError(
            f"features.feature_service {settings.features.feature_service!r} is not declared in "
            f"{settings.features.repo_dir / 'definitions.py'} (declared: {services})"
        )
    store = feature_store(settings)
    store.apply(objects)
    return AppliedDefinitions(
        project=store.project,
        entities=[e.name for e in store.list_entities()],
        feature_views=[v.name for v in store.list_feature_views()],
        feature_services=[s.name for s in store.list_feature_services()],
        registry=_without_password(str(store.config.registry.path)),
    )


def _without_password(registry_path: str) -> str:
    """A registry path fit for logs: a SQL registry's URL carries its database password."""
    if "://" not in registry_path:
        return registry_path
    from sqlalchemy.engine import make_url

    try:
        return make_url(registry_path).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL (e.g. s3://): it has no password to hide
        return registry_path.split("://", 1)[0] + "://..." if "@" in registry_path else registry_path


# ---- offline data -------------------------------------------------------------------------------------
def _offline_frame(settings: Settings, frame: pd.DataFrame) -> pd.DataFrame:
    ds = settings.dataset
    missing = [c for c in (ds.entity_column, ds.timestamp_column, *ds.feature_names) if c not in frame.columns]
    if missing:
        raise KeyError(f"columns {missing} (from configs/dataset.yaml) are missing from the raw data")
    out = frame[[ds.entity_column, ds.timestamp_column, *ds.feature_names]].copy()
    out[ds.timestamp_column] = pd.to_datetime(out[ds.timestamp_column], utc=True).astype("datetime64[us, UTC]")
    return out


def write_offline_partition(
    settings: Settings, day: dt.date, frame: pd.DataFrame, source: dict[str, Any] | None = None
) -> Path:
    """Replace the offline copy of `day` (written to a temp file, then renamed: readers never see half)."""
    folder = offline_root(settings) / f"dt={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "part-00000.parquet"
    tmp = folder / ".part-00000.parquet.tmp"
    table = pa.Table.from_pandas(_offline_frame(settings, frame), preserve_index=False)
    pq.write_table(table, tmp, compression="zstd", coerce_timestamps="us", allow_truncated_timestamps=True)
    os.replace(tmp, target)
    (folder / _SYNC_MARKER).write_text(json.dumps(source or {}, sort_keys=True))
    return target


@dataclass(frozen=True)
class SyncResult:
    copied_days: list[dt.date]
    current_days: int
    rows_copied: int
    offline_path: str


def sync_offline(settings: Settings, start: dt.date, end: dt.date, store: ObjectStore | None = None) -> SyncResult:
    """Copy the published raw partitions with day in [start, end] to the offline location, skipping days whose
    manifest has not changed since the last copy."""
    store = store or ObjectStore(settings.storage)
    copied: list[dt.date] = []
    current, rows = 0, 0
    for day in published_days(store, settings):
        if not start <= day <= end:
            continue
        prefix = raw_prefix(settings, day)
        manifest = store.read_manifest(prefix)
        if manifest is None:
            continue
        source = {"uri": store.uri(prefix), "run_id": manifest.run_id, "created_at": manifest.created_at}
        marker = offline_root(settings) / f"dt={day.isoformat()}" / _SYNC_MARKER
        if marker.exists() and json.loads(marker.read_text()) == source:
            current += 1
            continue
        frame = store.read_published_parquet(prefix)
        write_offline_partition(settings, day, frame, source)
        copied.append(day)
        rows += len(frame)
    return SyncResult(copied, current, rows, str(offline_root(settings)))


def _require_offline_data(settings: Settings) -> None:
    if not any(offline_root(settings).glob("dt=*/*.parquet")):
        raise FeatureStoreError(
            f"no offline feature data at {offline_root(settings)}: land raw data "
            f"({raw_root(settings)}) and sync it first (sync_offline)"
        )


def _utc(value: dt.datetime | dt.date | pd.Timestamp) -> dt.datetime:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    result: dt.datetime = stamp.to_pydatetime()
    return result


# ---- training sets (point in time) --------------------------------------------------------------------
def build_training_set(
    settings: Settings, entity_df: pd.DataFrame, feature_service: str | None = None, *, sync: bool = True
) -> pd.DataFrame:
    """Point-in-time join: for each (entity, timestamp) row, each feature's latest value at or before that
    timestamp and within the TTL (else null). Every row comes back, in the input order, with its extra columns
    (e.g. the label) untouched; feature columns are appended. `sync` first copies the raw partitions the rows
    can reach (timestamps minus TTL) to the offline location."""
    ds = settings.dataset
    missing = [c for c in (ds.entity_column, ds.timestamp_column) if c not in entity_df.columns]
    if missing:
        raise KeyError(f"entity_df needs columns {missing} (dataset.entity_column / dataset.timestamp_column)")
    store = feature_store(settings)
    name = _service_name(settings, feature_service)
    features = _service_features(store, name)
    clash = sorted(set(features) & set(entity_df.columns))
    if clash:
        raise ValueError(f"entity_df already has feature columns {clash}; drop them before the point-in-time join")
    if entity_df.empty:
        return entity_df.assign(**{f: pd.Series(dtype="object") for f in features})
    stamps = pd.to_datetime(entity_df[ds.timestamp_column], utc=True)
    if stamps.isna().any():
        raise ValueError(f"entity_df column {ds.timestamp_column!r}: {int(stamps.isna().sum())} null timestamps")
    if sync:
        reach = dt.timedelta(days=settings.features.ttl_days)
        sync_offline(settings, (stamps.min() - reach).date(), stamps.max().date())
    _require_offline_data(settings)

    frame = pd.DataFrame(
        {
            ROW_ID: np.arange(len(entity_df), dtype=np.int64),
            ds.entity_column: entity_df[ds.entity_column].to_numpy(),
            FEAST_TS: stamps.to_numpy(),
        }
    )
    frame[FEAST_TS] = frame[FEAST_TS].dt.tz_localize("UTC") if frame[FEAST_TS].dt.tz is None else frame[FEAST_TS]
    job = store.get_historical_features(entity_df=frame, features=_service(store, name), full_feature_names=False)
    joined = job.to_df()
    if len(joined) != len(entity_df):
        raise FeatureStoreError(
            f"point-in-time join returned {len(joined)} rows for {len(entity_df)} entity rows "
            f"(offline store {store.config.offline_store.type}): rows were dropped or duplicated"
        )
    # Feast does not keep row order: put every row back where it came from.
    joined = joined.sort_values(ROW_ID, kind="stable").reset_index(drop=True)
    out = entity_df.reset_index(drop=True).copy()
    for name_ in features:
        out[name_] = joined[name_].to_numpy()
    out.index = entity_df.index
    return out


# ---- online store -------------------------------------------------------------------------------------
def online_features(
    settings: Settings, entity_ids: Iterable[int], feature_service: str | None = None, batch_size: int = 10_000
) -> pd.DataFrame:
    """Latest materialized feature values for each entity id, in the given order (null where none).
    Note: online reads ignore TTL (Feast); the skew check covers that gap."""
    ds = settings.dataset
    store = feature_store(settings)
    name = _service_name(settings, feature_service)
    service = _service(store, name)
    features = _service_features(store, name)
    ids = [int(i) for i in entity_ids]
    parts = []
    for lo in range(0, len(ids), batch_size):
        chunk = ids[lo : lo + batch_size]
        response = store.get_online_features(features=service, entity_rows=[{ds.entity_column: i} for i in chunk])
        part = response.to_df()
        # Feast can hand INT64 keys back as floats: restore them from the request (order is kept).
        part[ds.entity_column] = np.asarray(chunk, dtype=np.int64)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=[ds.entity_column, *features])
    return pd.concat(parts, ignore_index=True)[[ds.entity_column, *features]]


def write_online_rows(settings: Settings, frame: pd.DataFrame, feature_view: str | None = None) -> int:
    """Write rows (entity, timestamp, features) straight to the online store through Feast's write path.
    For pushes and corrections; materialization is the normal way in."""
    store = feature_store(settings)
    view = store.get_feature_view(feature_view or _default_view(store, settings))
    table = pa.Table.from_pandas(_offline_frame(settings, frame), preserve_index=False)
    _write_table(store, view, table, settings.features.online_write_batch_size)
    return len(frame)


def _default_view(store: FeatureStore, settings: Settings) -> str:
    service = _service(store, settings.features.feature_service)
    return str(service.feature_view_projections[0].name)


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
    view = store.get_feature_view(_default_view(store, settings))
    batch = pa.Table.from_pandas(_offline_frame(settings, frame), preserve_index=False).combine_chunks().to_batches()[0]
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


def _materialize_view(
    store: FeatureStore, view: FeatureView, start: dt.datetime, end: dt.datetime, settings: Settings
) -> tuple[int, int]:
    """Stream [start, end) of one view into the online store, one time slice at a time. Returns (rows, chunks)."""
    config = store.config
    provider = store._get_provider()
    offline = provider.offline_store
    source = _batch_source(view)
    join_keys = [e.name for e in view.entity_columns]
    features = [f.name for f in view.features]
    latest_only = config.materialization_config.pull_latest_features
    pull = offline.pull_latest_from_table_or_query if latest_only else offline.pull_all_from_table_or_query
    batch_size = config.materialization_config.online_write_batch_size or settings.features.online_write_batch_size
    step = dt.timedelta(hours=settings.features.materialize_chunk_hours)
    rows = chunks = 0
    cursor = start
    while cursor < end:
        upper = min(cursor + step, end)
        job = pull(
            config=config,
            data_source=source,
            join_key_columns=join_keys,
            feature_name_columns=features,
            timestamp_field=source.timestamp_field,
            created_timestamp_column=source.created_timestamp_column or None,
            start_date=cursor,
            end_date=upper - ONE_US,
        )  # Feast's bounds are inclusive: make it [a, b)
        table = job.to_arrow()
        if source.field_mapping:
            table = table.rename_columns([source.field_mapping.get(c, c) for c in table.column_names])
        if not latest_only:
            table = table.sort_by(source.timestamp_field)  # older rows first, so the newest value lands last
        _write_table(store, view, table, batch_size)
        rows += table.num_rows
        chunks += 1
        del table, job
        cursor = upper
    return rows, chunks


def materialize_window(
    settings: Settings,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    *,
    sync: bool = True,
    feature_views: Sequence[str] | None = None,
) -> MaterializationResult:
    """Load feature values with event time in [start, end) into the online store and record the window in the
    registry. Bounded memory: one `materialize_chunk_hours` slice at a time."""
    begin = time.perf_counter()
    lo, hi = _utc(start), _utc(end)
    if lo >= hi:
        raise ValueError(f"materialize_window: start {lo} must be before end {hi}")
    if sync:
        sync_offline(settings, lo.date(), (hi - ONE_US).date())
    _require_offline_data(settings)
    store = feature_store(settings)
    windows: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    rows = chunks = 0
    for view in store.list_feature_views():
        if not view.online or (feature_views is not None and view.name not in feature_views):
            continue
        written, pieces = _materialize_view(store, view, lo, hi, settings)
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
        v.name: (_utc(v.most_recent_end_time) if v.most_recent_end_time else None)
        for v in store.list_feature_views()
        if v.online
    }


def materialize_incremental(
    settings: Settings, start: dt.datetime | dt.date, end: dt.datetime | dt.date, *, sync: bool = True
) -> MaterializationResult:
    """Materialize up to `end`, each view from where its last window stopped. A view never materialized starts
    at `start` (Feast's own incremental would start at end - TTL and skip older history)."""
    begin = time.perf_counter()
    hi = _utc(end)
    windows: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    starts = {name: until or _utc(start) for name, until in materialized_until(settings).items()}
    skipped = [name for name, lo in starts.items() if lo >= hi]
    due = {name: lo for name, lo in starts.items() if lo < hi}
    if sync and due:  # once for every view's window, not once per view
        sync_offline(settings, min(due.values()).date(), (hi - ONE_US).date())
    rows = chunks = 0
    for name, lo in due.items():
        result = materialize_window(settings, lo, hi, sync=False, feature_views=[name])
        windows.update(result.windows)
        rows += result.rows_written
        chunks += result.chunks
    return MaterializationResult(windows, rows, chunks, time.perf_counter() - begin, skipped)


# ---- training/serving skew ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SkewReport:
    """Online values vs the offline (training) values for a sample of entities, as of `as_of`."""

    passed: bool
    as_of: dt.datetime
    feature_service: str
    entities_checked: int
    mismatched_values: int
    mismatches: list[dict[str, Any]]  # first few: entity, feature, online, offline
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _same(online: Any, offline: Any, tolerance: float) -> bool:
    online_missing, offline_missing = pd.isna(online), pd.isna(offline)
    if online_missing or offline_missing:
        return bool(online_missing and offline_missing)
    if isinstance(online, int | float | np.number) and isinstance(offline, int | float | np.number):
        return bool(abs(float(online) - float(offline)) <= tolerance)
    return bool(online == offline)


def check_skew(
    settings: Settings,
    sample_size: int | None = None,
    as_of: dt.datetime | None = None,
    feature_service: str | None = None,
    seed: int = 0,
) -> SkewReport:
    """For a sample of entities with data within TTL of `as_of` (default: the end of the last materialized
    window), the online features must equal the point-in-time offline features the training path would read."""
    ds = settings.dataset
    name = _service_name(settings, feature_service)
    store = feature_store(settings)
    view = store.get_feature_view(_default_view(store, settings))
    if as_of is None:
        until = materialized_until(settings).get(view.name)
        if until is None:
            raise FeatureStoreError(f"feature view {view.name!r} was never materialized: nothing to compare")
        as_of = until
    cutoff = _utc(as_of) - ONE_US  # materialized windows are [start, end)
    ttl = dt.timedelta(days=settings.features.ttl_days)
    offline = store._get_provider().offline_store
    source = _batch_source(view)
    latest = offline.pull_latest_from_table_or_query(
        config=store.config,
        data_source=source,
        join_key_columns=[ds.entity_column],
        feature_name_columns=[],
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or None,
        start_date=cutoff - ttl,
        end_date=cutoff,
    ).to_arrow()
    ids = np.asarray(latest.column(ds.entity_column).to_numpy(), dtype=np.int64)
    rng = np.random.default_rng(seed)
    n = min(sample_size or settings.features.skew_sample_size, len(ids))
    sample = np.sort(rng.choice(ids, size=n, replace=False)) if n else ids[:0]
    entity_df = pd.DataFrame({ds.entity_column: sample, ds.timestamp_column: pd.Timestamp(cutoff)})
    offline_values = build_training_set(settings, entity_df, name, sync=False)
    online_values = online_features(settings, sample.tolist(), name)
    features = _service_features(store, name)
    mismatches: list[dict[str, Any]] = []
    count = 0
    for i in range(n):
        for feature in features:
            on, off = online_values.at[i, feature], offline_values.at[i, feature]
            if not _same(on, off, settings.features.skew_tolerance):
                count += 1
                if len(mismatches) < 20:
                    mismatches.append(
                        {
                            "entity": int(sample[i]),
                            "feature": feature,
                            "online": None if pd.isna(on) else str(on),
                            "offline": None if pd.isna(off) else str(off),
                        }
                    )
    reasons = []
    if count:
        bad_features = sorted({m["feature"] for m in mismatches})
        reasons.append(
            f"{count} of {n * len(features)} feature values differ between online and offline "
            f"for {n} sampled entities as of {cutoff:%Y-%m-%d %H:%M:%S} (e.g. {bad_features}); "
            "re-materialize the window or look for writes outside materialization"
        )
    if n == 0:
        reasons.append(f"no entity has offline data within the TTL ({settings.features.ttl_days} days) of {cutoff}")
    return SkewReport(count == 0 and n > 0, _utc(as_of), name, n, count, mismatches, reasons)
