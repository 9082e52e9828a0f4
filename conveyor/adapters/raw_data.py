"""The raw layer: one Delta Lake table per dataset on the object store, `s3://<bucket>/<raw>/<dataset>`,
partitioned by `dt` (the day a batch was published for, `YYYY-MM-DD`).

This is where every flow's data comes from: the synthetic generator or a user's own files land here first.
A day is published in one Delta commit (a predicate overwrite of `dt = '<day>'`), so readers see a day whole or
not at all, a rerun replaces the day instead of adding rows, and files no commit lists (a writer that crashed
before its commit) are never read. Every commit is a table version: training records the version it read, and
`read_raw_window(..., version=v)` reads exactly those rows again.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.dataset
from deltalake import CommitProperties, DeltaTable, write_deltalake

from configs.settings import DatasetConfig, Settings, StorageConfig
from conveyor.adapters.object_store import ObjectStore, credentials_from_block
from conveyor.domain.failures import MissingInput

log = logging.getLogger(__name__)

PARTITION_COLUMN = "dt"


@dataclass(frozen=True)
class RawTable:
    """Where the raw Delta table lives and how delta-rs reaches it (the options hold the keys: never logged)."""

    uri: str
    storage_options: dict[str, str] = field(repr=False, default_factory=dict)
    endpoint_url: str | None = None
    region: str = "us-east-1"

    @property
    def on_s3(self) -> bool:
        return self.uri.startswith("s3://")

    @property
    def bucket(self) -> str:
        return self.uri.removeprefix("s3://").split("/", 1)[0]


@dataclass(frozen=True)
class RawCommit:
    """One published day: the table version its commit created."""

    day: dt.date
    version: int
    rows: int
    prefix: str  # the day's folder under the bucket (`<raw>/<dataset>/dt=YYYY-MM-DD`)


@dataclass(frozen=True)
class RawSnapshot:
    """Rows read from one version of the raw table."""

    frame: pd.DataFrame
    uri: str
    version: int


def raw_root(settings: Settings) -> str:
    """`<raw>/<dataset>/`: the table's folder in the bucket."""
    return f"{settings.storage.prefixes.raw}/{settings.dataset.name}/"


def raw_prefix(settings: Settings, day: dt.date) -> str:
    """The folder of one day's files (`<raw>/<dataset>/dt=YYYY-MM-DD`); only the Delta log says which are live."""
    return f"{raw_root(settings)}{PARTITION_COLUMN}={day.isoformat()}"


@functools.lru_cache(maxsize=8)
def _block_credentials(block_name: str) -> tuple[str, str]:
    return credentials_from_block(block_name)


def s3_credentials(config: StorageConfig) -> tuple[str, str] | None:
    """The keys the ObjectStore uses: explicit, the credentials file, or the Prefect block (None: the default
    chain of whichever client reads)."""
    credentials = config.resolved_credentials()
    if credentials is None and config.credentials_block:
        credentials = _block_credentials(config.credentials_block)
    return credentials


def delta_storage_options(config: StorageConfig) -> dict[str, str]:
    """delta-rs object-store options for the configured endpoint (SeaweedFS, MinIO or AWS)."""
    options = {"AWS_REGION": config.region, "AWS_CONDITIONAL_PUT": "etag", "AWS_EC2_METADATA_DISABLED": "true"}
    if config.endpoint_url:
        options["AWS_ENDPOINT_URL"] = config.endpoint_url
        if config.endpoint_url.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if config.addressing_style == "virtual":
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "true"
    credentials = s3_credentials(config)
    if credentials is not None:
        options["AWS_ACCESS_KEY_ID"], options["AWS_SECRET_ACCESS_KEY"] = credentials
    else:
        options.pop("AWS_EC2_METADATA_DISABLED")  # no keys configured: the instance role may be the way in
    return options


def table_at(config: StorageConfig, uri: str) -> RawTable:
    """A Delta table at `uri`, reached with `config`'s endpoint and keys."""
    return RawTable(uri, delta_storage_options(config), config.endpoint_url, config.region)


def raw_table(config: StorageConfig, settings: Settings) -> RawTable:
    """The dataset's raw table in `config`'s bucket (the same StorageConfig the ObjectStore uses)."""
    return table_at(config, f"s3://{config.bucket}/{raw_root(settings).rstrip('/')}")


def _table(table: RawTable, version: int | None = None) -> DeltaTable | None:
    try:
        if not DeltaTable.is_deltatable(table.uri, storage_options=table.storage_options):
            return None
    except OSError as exc:
        if "NoSuchBucket" in str(exc):  # nothing was ever written to this bucket
            return None
        raise
    return DeltaTable(table.uri, version=version, storage_options=table.storage_options)


def arrow_day(frame: pd.DataFrame, dataset: DatasetConfig, day: dt.date) -> pa.Table:
    """The frame as the table stores it: timestamps `timestamp[us, UTC]`, categories as strings, `dt` added."""
    ts = dataset.timestamp_column
    if ts in frame.columns:
        frame = frame.assign(**{ts: pd.to_datetime(frame[ts], utc=True).astype("datetime64[us, UTC]")})
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    for i, column in enumerate(arrow.schema):
        if pa.types.is_dictionary(column.type):
            arrow = arrow.set_column(i, column.name, arrow.column(i).cast(column.type.value_type))
    return arrow.append_column(PARTITION_COLUMN, pa.array([day.isoformat()] * arrow.num_rows, pa.string()))


def write_raw_day(table: RawTable, dataset: DatasetConfig, day: dt.date, frame: pd.DataFrame, run_id: str) -> int:
    """Replace `day` in the table in one commit (creating the table on first write); returns the new version.
    delta-rs refuses a frame whose columns or types differ from the table's, and commits nothing then."""
    arrow = arrow_day(frame, dataset, day)
    properties = CommitProperties(custom_metadata={"conveyor.run_id": run_id, "conveyor.day": day.isoformat()})
    options, partition_by = table.storage_options, [PARTITION_COLUMN]
    if _table(table) is None:
        write_deltalake(
            table.uri,
            arrow,
            mode="append",
            partition_by=partition_by,
            storage_options=options,
            commit_properties=properties,
        )
    else:
        write_deltalake(
            table.uri,
            arrow,
            mode="overwrite",
            predicate=f"{PARTITION_COLUMN} = '{day.isoformat()}'",
            partition_by=partition_by,
            storage_options=options,
            commit_properties=properties,
        )
    current = _table(table)
    assert current is not None
    return int(current.version())


def publish_raw_partition(
    store: ObjectStore, settings: Settings, day: dt.date, frame: pd.DataFrame, run_id: str
) -> RawCommit:
    """Replace the raw rows of `day` with `frame`, atomically (one Delta commit); reruns are idempotent."""
    store.ensure_bucket()
    version = write_raw_day(raw_table(store.config, settings), settings.dataset, day, frame, run_id)
    log.info("raw %s: %d rows of %s committed as version %d", settings.dataset.name, len(frame), day, version)
    return RawCommit(day, version, len(frame), raw_prefix(settings, day))


def table_days(table: RawTable, version: int | None = None) -> list[dt.date]:
    """Days with live rows in the table (at `version`, default the latest), sorted."""
    delta = _table(table, version)
    if delta is None:
        return []
    return sorted({dt.date.fromisoformat(p[PARTITION_COLUMN]) for p in delta.partitions()})


def published_days(store: ObjectStore, settings: Settings) -> list[dt.date]:
    return table_days(raw_table(store.config, settings))


def table_version(table: RawTable) -> int | None:
    """The latest committed version (None: no table yet)."""
    delta = _table(table)
    return None if delta is None else int(delta.version())


def read_table_window(
    table: RawTable, start: dt.date, end: dt.date, columns: list[str] | None = None, version: int | None = None
) -> RawSnapshot:
    """Rows with partition day in [start, end] at `version` (default: the latest); only committed files are read,
    and only the day folders in the window are opened."""
    delta = _table(table, version)
    if delta is None:
        raise MissingInput(f"no raw table at {table.uri}: run the ingest flow")
    filters = [(PARTITION_COLUMN, ">=", start.isoformat()), (PARTITION_COLUMN, "<=", end.isoformat())]
    arrow = delta.to_pyarrow_table(filters=filters, columns=columns)  # prunes to the day folders
    if arrow.num_rows == 0:
        raise MissingInput(f"no raw rows between {start} and {end} in {table.uri} (version {delta.version()})")
    if PARTITION_COLUMN in arrow.column_names:
        arrow = arrow.drop_columns([PARTITION_COLUMN])
    return RawSnapshot(arrow.to_pandas(), table.uri, int(delta.version()))


def read_raw_snapshot(
    store: ObjectStore, settings: Settings, start: dt.date, end: dt.date, version: int | None = None
) -> RawSnapshot:
    """The raw rows of days [start, end] and the table version they were read from."""
    return read_table_window(raw_table(store.config, settings), start, end, version=version)


def read_raw_window(
    store: ObjectStore,
    settings: Settings,
    start: dt.date,
    end: dt.date,
    columns: list[str] | None = None,
    version: int | None = None,
) -> pd.DataFrame:
    """All committed raw rows with partition day in [start, end]; LookupError when there are none."""
    return read_table_window(raw_table(store.config, settings), start, end, columns, version).frame


def raw_day_files(store: ObjectStore, settings: Settings, day: dt.date) -> list[str]:
    """Bucket keys of the parquet files the latest commit holds for `day` (what a validator reads byte by byte)."""
    table = raw_table(store.config, settings)
    delta = _table(table)
    if delta is None:
        return []
    uris = delta.file_uris(file_pruning_predicate=[(PARTITION_COLUMN, "=", day.isoformat())])
    return sorted(uri.removeprefix(f"s3://{store.bucket}/") for uri in uris)


def compact_table(table: RawTable) -> dict[str, object]:
    """Rewrite small files into larger ones (one new version; older versions still read their own files)."""
    delta = _table(table)
    if delta is None:
        raise MissingInput(f"no raw table at {table.uri}: nothing to compact")
    metrics: dict[str, object] = delta.optimize.compact()
    return metrics


def vacuum_table(table: RawTable, retention_hours: int | None, dry_run: bool) -> list[str]:
    """Delete files no version younger than `retention_hours` needs (default: the table's 7 days), and files
    no commit ever listed. Versions older than that can no longer be read back after it runs."""
    delta = _table(table)
    if delta is None:
        raise MissingInput(f"no raw table at {table.uri}: nothing to vacuum")
    removed: list[str] = delta.vacuum(
        retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=retention_hours is None
    )
    return removed


def table_dataset(table: RawTable, version: int | None = None) -> tuple[pyarrow.dataset.Dataset, int]:
    """The committed files of the table (at `version`, default the latest) as a pyarrow dataset, for streaming
    scans with filters on `dt` (file pruning) and any column; and the version it reads."""
    delta = _table(table, version)
    if delta is None:
        raise MissingInput(f"no raw table at {table.uri}: run the ingest flow")
    return delta.to_pyarrow_dataset(), int(delta.version())
