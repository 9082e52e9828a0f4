"""Point-in-time correctness, as Feast defines it, on frames and arrow tables already in memory (pure).

An entity is its key columns' values (one column, or several for a composite key). For an (entity, timestamp)
row, a feature's value is the one of the entity's latest source row at or before that timestamp and no older
than the feature view's TTL; otherwise null. `as_of_join` does that for many timestamps
(training sets) with `pd.merge_asof`; `LatestRows` does it for one timestamp over a whole population (batch
scoring) in two streaming passes, so memory holds one key pair per source row, not the rows themselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from conveyor.domain.failures import InvalidInput

ROW_ORDER = "__conveyor_row"


def _utc_us(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")


def as_of_join(
    entity_df: pd.DataFrame,
    source: pd.DataFrame,
    keys: list[str],
    timestamp: str,
    features: list[str],
    ttl: dt.timedelta,
) -> pd.DataFrame:
    """`entity_df` (any extra columns kept, order and index kept) with `features` appended, point-in-time
    correct against `source` (key columns, timestamp, features). Source rows with the same (key, timestamp): the
    last one in `source` order wins."""
    stamps = _utc_us(entity_df[timestamp])
    if stamps.isna().any():
        raise InvalidInput(f"entity_df column {timestamp!r}: {int(stamps.isna().sum())} null timestamps")
    left = pd.DataFrame(
        {ROW_ORDER: np.arange(len(entity_df)), **{k: entity_df[k].to_numpy() for k in keys}, timestamp: stamps}
    )
    right = source[[*keys, timestamp, *features]].assign(**{timestamp: _utc_us(source[timestamp])})
    for key in keys:
        if right[key].dtype != left[key].dtype:
            right[key] = right[key].astype(left[key].dtype)
    joined = pd.merge_asof(
        left.sort_values(timestamp, kind="stable"),
        right.sort_values(timestamp, kind="stable"),
        on=timestamp,
        by=keys,
        direction="backward",
        tolerance=pd.Timedelta(ttl),
        allow_exact_matches=True,
    ).sort_values(ROW_ORDER, kind="stable")
    out = entity_df.copy()
    for feature in features:
        out[feature] = joined[feature].to_numpy()
    return out


class LatestRows:
    """The latest row per entity at or before one time, from source rows streamed twice in the same order.

    Pass 1 (`add_keys`) sees only the key and timestamp columns and keeps each entity's latest timestamp;
    pass 2 (`select`) sees every column and keeps, per entity, the first row carrying that timestamp. Rows are
    returned in source order, so the output is deterministic for a given source (e.g. one Delta table version).
    An entity is its key columns' values together (`keys`: one column, or several for a composite key).
    """

    def __init__(self, keys: list[str], timestamp: str) -> None:
        self.keys = list(keys)
        self.timestamp = timestamp
        self._key_parts: list[pa.Table] = []
        self._entities: pd.Index | None = None
        self._latest: np.ndarray | None = None
        self._taken: np.ndarray | None = None

    def add_keys(self, keys: pa.Table) -> None:
        """Pass 1: a batch of (key columns, timestamp) rows (16 bytes a row for one integer key, reduced in one
        group-by)."""
        self._key_parts.append(keys.select([*self.keys, self.timestamp]))

    def finish_keys(self) -> int:
        """End of pass 1: the number of entities found."""
        if self._key_parts:
            grouped = pa.concat_tables(self._key_parts).group_by(self.keys).aggregate([(self.timestamp, "max")])
            keys = grouped.rename_columns([*self.keys, self.timestamp])
        else:
            keys = pa.table({**{k: [] for k in self.keys}, self.timestamp: []})
        self._key_parts = []
        # A hash index built once: each pass-2 lookup is O(1), for integer, string and composite keys alike.
        self._entities = self._index(keys)
        self._latest = _as_int64(keys.column(self.timestamp))
        self._taken = np.zeros(len(self._entities), dtype=bool)
        return len(self._entities)

    def _index(self, table: pa.Table) -> pd.Index:
        columns = [table.column(k).to_numpy(zero_copy_only=False) for k in self.keys]
        return pd.Index(columns[0]) if len(columns) == 1 else pd.MultiIndex.from_arrays(columns)

    def select(self, batch: pa.Table) -> pa.Table:
        """Pass 2: the rows of `batch` that are their entity's latest (each entity at most once overall)."""
        if self._entities is None or self._latest is None or self._taken is None:
            raise RuntimeError("select() before finish_keys()")
        if batch.num_rows == 0 or len(self._entities) == 0:
            return batch.slice(0, 0)
        pos = self._entities.get_indexer(self._index(batch))
        found = pos >= 0  # every entity was seen in pass 1, unless the source changed in between
        pos = np.where(found, pos, 0)
        hit = found & (self._latest[pos] == _as_int64(batch.column(self.timestamp))) & ~self._taken[pos]
        rows = np.flatnonzero(hit)
        # Two rows of one entity with the same latest timestamp: keep the first.
        _, first = np.unique(pos[rows], return_index=True)
        rows = rows[np.sort(first)]
        self._taken[pos[rows]] = True
        return batch.take(pa.array(rows))


def _as_int64(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def rebatch(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Tables regrouped into tables of `rows` rows (the last one shorter); empty input tables are skipped."""
    pending: list[pa.Table] = []
    held = 0
    for table in tables:
        if table.num_rows == 0:
            continue
        pending.append(table)
        held += table.num_rows
        while held >= rows:
            merged = pa.concat_tables(pending)
            yield merged.slice(0, rows).combine_chunks()
            rest = merged.slice(rows)
            pending, held = ([rest] if rest.num_rows else []), rest.num_rows
    if held:
        yield pa.concat_tables(pending).combine_chunks()
