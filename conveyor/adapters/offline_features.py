"""Point-in-time feature reads straight from the raw Delta table, without importing Feast.

The feature view's definition (feature_repo/definitions.py) is built from the same settings: its source is the
raw table, its TTL `features.ttl_days`, its fields the dataset's features. `FeatureSpec` is that definition as
data, so the scoring flow reads features with the semantics of Feast's point-in-time join but without Feast's
5 s import or its generic SQL (which re-reads the whole table per chunk of entities):
- `training_set`: many (entity, timestamp) rows -> one read of the window they need, then `pd.merge_asof`;
- `LatestFeatures`: the scoring population (entities with a row in the look-back window) and each one's latest
  row as of one time, in two streaming scans of the window (keys, then rows), memory bounded by the entities.
conveyor/adapters/feast_offline.py checks the spec against Feast's registry before using it for training, and
tests compare both with Feast's own `get_historical_features` on the same data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from configs.settings import Settings
from conveyor.adapters import raw_data
from conveyor.adapters.raw_data import PARTITION_COLUMN, RawTable, table_dataset
from conveyor.domain.point_in_time import LatestRows, as_of_join, rebatch


@dataclass(frozen=True)
class FeatureSpec:
    """What a feature view reads: the table, its key and timestamp columns, the features, the TTL."""

    table: RawTable
    keys: tuple[str, ...]  # the entity's key column(s)
    timestamp: str
    features: tuple[str, ...]
    ttl: dt.timedelta


def feature_spec(settings: Settings, features: Sequence[str] | None = None) -> FeatureSpec:
    """The dataset's feature view as feature_repo/definitions.py declares it (`features`: a service's subset)."""
    ds = settings.dataset
    return FeatureSpec(
        table=raw_data.raw_table(settings.storage, settings),
        keys=tuple(ds.entity_columns),
        timestamp=ds.timestamp_column,
        features=tuple(features or ds.feature_names),
        ttl=dt.timedelta(days=settings.features.ttl_days),
    )


def _window(spec: FeatureSpec, start: dt.datetime, end: dt.datetime, end_inclusive: bool = True) -> pds.Expression:
    """Rows with start <= timestamp <= end (or < end), pruned to the day folders that can hold them."""
    ts, us = pds.field(spec.timestamp), pa.timestamp("us", "UTC")
    day = pds.field(PARTITION_COLUMN)
    days = (day >= start.date().isoformat()) & (day <= end.date().isoformat())
    upper = ts <= pa.scalar(end, us) if end_inclusive else ts < pa.scalar(end, us)
    return days & (ts >= pa.scalar(start, us)) & upper


def training_set(spec: FeatureSpec, entity_df: pd.DataFrame, version: int | None = None) -> pd.DataFrame:
    """`entity_df` with the spec's features appended, point-in-time correct (see conveyor/domain/point_in_time)."""
    stamps = pd.to_datetime(entity_df[spec.timestamp], utc=True)
    dataset, _ = table_dataset(spec.table, version)
    start, end = (stamps.min() - spec.ttl).to_pydatetime(), stamps.max().to_pydatetime()
    source = dataset.to_table(columns=[*spec.keys, spec.timestamp, *spec.features], filter=_window(spec, start, end))
    return as_of_join(entity_df, source.to_pandas(), list(spec.keys), spec.timestamp, list(spec.features), spec.ttl)


class LatestBatches:
    """Each entity's latest row with start <= timestamp < end, with its own event timestamp, streamed in two
    scans (keys, then rows) in batches of at most `rows` source rows; after the keys scan, `entities` is how
    many there are."""

    def __init__(self, dataset: pds.Dataset, spec: FeatureSpec, start: dt.datetime, end: dt.datetime, rows: int):
        self.dataset, self.spec, self.rows = dataset, spec, rows
        self.window = _window(spec, start, end, end_inclusive=False)
        self.entities = 0

    def _scan(self, columns: list[str], rows: int) -> Iterator[pa.Table]:
        scanner = self.dataset.scanner(
            columns=columns,
            filter=self.window,
            batch_size=rows,
            batch_readahead=2,  # pyarrow's defaults (16 batches, 4 files ahead) hold ~1 GB more at 1e7 rows
            fragment_readahead=1,
        )
        for batch in scanner.to_batches():  # in file order: both passes see rows in the same order
            yield pa.Table.from_batches([batch])

    def _select(self) -> Iterator[pa.Table]:
        spec = self.spec
        latest = LatestRows(list(spec.keys), spec.timestamp)
        for keys in self._scan([*spec.keys, spec.timestamp], max(self.rows, 1_000_000)):
            latest.add_keys(keys)
        self.entities = latest.finish_keys()
        for batch in self._scan([*spec.keys, spec.timestamp, *spec.features], self.rows):
            yield latest.select(batch)

    def __iter__(self) -> Iterator[pa.Table]:
        return self._select()


def latest_rows(dataset: pds.Dataset, spec: FeatureSpec, start: dt.datetime, end: dt.datetime) -> pa.Table:
    """Each entity's latest row in [start, end) of `dataset` (opened once by the caller: `table_dataset`) as one
    table: a materialization slice, what Feast's `pull_latest_from_table_or_query` returns, in two scans."""
    parts = list(LatestBatches(dataset, spec, start, end, 1_000_000))
    columns = [*spec.keys, spec.timestamp, *spec.features]
    return pa.concat_tables(parts) if parts else dataset.schema.empty_table().select(columns)


class LatestFeatures:
    """A scoring input (conveyor/services/feature_sources.FeatureSource): every entity with a source row in
    [as_of - lookback, as_of), with its latest row before `as_of` (features null when older than the TTL). The
    timestamp column holds the as-of time, as Feast's point-in-time join returns it. The fingerprint names the
    table version, the time and the columns: the same fingerprint reads the same rows."""

    def __init__(
        self, spec: FeatureSpec, as_of: dt.datetime, lookback: dt.timedelta, version: int | None = None
    ) -> None:
        self.spec = spec
        self.as_of = as_of
        self.start = as_of - lookback
        self.dataset, self.version = table_dataset(spec.table, version)
        self.description = f"{spec.table.uri} version {self.version}, latest rows before {as_of.isoformat()}"
        self.entities = 0

    def columns(self) -> list[str]:
        return [*self.spec.keys, self.spec.timestamp, *self.spec.features]

    def chunks(self, chunk_rows: int) -> Iterator[pa.Table]:
        selected = LatestBatches(self.dataset, self.spec, self.start, self.as_of, chunk_rows)
        for chunk in rebatch(selected, chunk_rows):
            yield self._as_of(chunk)
        self.entities = selected.entities

    def _as_of(self, chunk: pa.Table) -> pa.Table:
        """Null the features of rows older than the TTL; stamp the rows with the as-of time."""
        spec = self.spec
        stale = pc.less(chunk.column(spec.timestamp), pa.scalar(self.as_of - spec.ttl, pa.timestamp("us", "UTC")))
        if pc.any(stale).as_py():
            for name in spec.features:
                column = chunk.column(name)
                chunk = chunk.set_column(
                    chunk.schema.get_field_index(name),
                    name,
                    pc.if_else(stale, pa.nulls(len(chunk), column.type), column),
                )
        stamp = pa.repeat(pa.scalar(self.as_of - dt.timedelta(microseconds=1), pa.timestamp("us", "UTC")), len(chunk))
        return chunk.set_column(chunk.schema.get_field_index(spec.timestamp), spec.timestamp, stamp)

    def fingerprint(self) -> str:
        identity = [self.spec.table.uri, self.version, self.as_of.isoformat(), self.start.isoformat()]
        identity += [list(self.spec.features), self.spec.ttl.total_seconds()]
        return hashlib.sha256(json.dumps(identity).encode()).hexdigest()
