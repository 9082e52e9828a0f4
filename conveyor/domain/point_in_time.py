"""Point-in-time correctness, as Feast defines it, on frames and arrow tables already in memory (pure).

An entity is its key columns' values (one column, or several for a composite key). For an (entity, timestamp)
row, a feature's value is the one of the entity's latest source row at or before that timestamp and no older
than the feature view's TTL; otherwise null. `as_of_join` does that for many timestamps
(training sets) with `pd.merge_asof`; `LatestRows` does it for one timestamp over a whole population (batch
scoring) in two streaming passes, so memory holds a few numbers per entity, not the rows themselves.
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

    Pass 1 (`add_keys`) sees only the key and timestamp columns and finds, per entity, the position (in
    stream order) of its latest row; pass 2 (`select`) then only counts rows and takes those positions, with no
    lookup by entity. Ties (one entity, two rows at its latest timestamp): the first row in stream order wins.
    Rows come back in stream order, so the output is deterministic for a given source (one Delta table version).

    Memory is bounded by the entities, not the source rows: pass 1 merges each group of `merge_rows` key pairs
    into sorted arrays (entity, latest timestamp, position: 24 bytes an entity for integer keys), and pass 2
    holds the sorted positions alone (8 bytes an entity). One hash group-by over all key pairs, which this
    replaces, peaked at ~1.2 GB above the key pairs themselves for 2e7 pairs of 8.6e6 entities.
    An entity is its key columns' values together (`keys`: one column, or several for a composite key, whose
    values are compared as tuples: slower than one integer column, the same bounds).
    """

    def __init__(self, keys: list[str], timestamp: str, merge_rows: int = 2_000_000) -> None:
        self.keys = list(keys)
        self.timestamp = timestamp
        self.merge_rows = merge_rows
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_rows = 0
        self._keys_seen = 0
        self._entities = np.empty(0, dtype=np.int64)  # sorted; the dtype follows the first batch
        self._latest = np.empty(0, dtype=np.int64)
        self._position = np.empty(0, dtype=np.int64)
        self._selected: np.ndarray | None = None  # sorted positions of the latest rows (after finish_keys)
        self._rows_seen = 0

    def add_keys(self, keys: pa.Table) -> None:
        """Pass 1: a batch of (key columns, timestamp) rows, in stream order."""
        if keys.num_rows == 0:  # a filtered scan yields empty batches; they hold no position
            return
        positions = np.arange(self._keys_seen, self._keys_seen + keys.num_rows, dtype=np.int64)
        self._keys_seen += keys.num_rows
        entities = _entity_values(keys, self.keys)
        self._pending.append((entities, _as_int64(keys.column(self.timestamp)), positions))
        self._pending_rows += keys.num_rows
        if self._pending_rows >= self.merge_rows:
            self._merge_pending()

    def _merge_pending(self) -> None:
        if not self._pending:
            return
        entities, latest, position = _latest_per_entity(
            np.concatenate([keys for keys, _, _ in self._pending]),
            np.concatenate([stamps for _, stamps, _ in self._pending]),
            np.concatenate([positions for _, _, positions in self._pending]),
        )
        self._pending, self._pending_rows = [], 0
        if len(self._entities) == 0:
            self._entities, self._latest, self._position = entities, latest, position
            return
        at = np.searchsorted(self._entities, entities)
        known = np.zeros(len(entities), dtype=bool)
        inside = at < len(self._entities)
        known[inside] = self._entities[at[inside]] == entities[inside]
        # A known entity moves to a newer row only if strictly newer: on a tie the earlier position stays.
        slot, newer = at[known], latest[known] > self._latest[at[known]]
        self._latest[slot[newer]] = latest[known][newer]
        self._position[slot[newer]] = position[known][newer]
        fresh, where = ~known, at[~known]  # new entities, inserted where they sort
        self._entities = np.insert(self._entities, where, entities[fresh])
        self._latest = np.insert(self._latest, where, latest[fresh])
        self._position = np.insert(self._position, where, position[fresh])

    def finish_keys(self) -> int:
        """End of pass 1: the number of entities found."""
        self._merge_pending()
        count = len(self._entities)
        self._selected = np.sort(self._position)
        self._entities = self._latest = self._position = np.empty(0, dtype=np.int64)
        return count

    def select(self, batch: pa.Table) -> pa.Table:
        """Pass 2: the rows of `batch` that are their entity's latest (each entity exactly once overall)."""
        if self._selected is None:
            raise RuntimeError("select() before finish_keys()")
        first = self._rows_seen
        self._rows_seen += batch.num_rows
        if self._rows_seen > self._keys_seen:
            raise RuntimeError(f"pass 2 saw {self._rows_seen} rows, pass 1 only {self._keys_seen}: the source changed")
        low, high = np.searchsorted(self._selected, [first, self._rows_seen])
        return batch.take(pa.array(self._selected[low:high] - first))


def _entity_values(table: pa.Table, keys: list[str]) -> np.ndarray:
    """One value per row naming its entity: the key column's values, or a composite key's values as tuples."""
    columns = [table.column(k).to_numpy(zero_copy_only=False) for k in keys]
    if len(columns) == 1:
        return columns[0]
    return pd.MultiIndex.from_arrays(columns).to_numpy()  # an object array of tuples: sortable, comparable


def _latest_per_entity(
    entities: np.ndarray, latest: np.ndarray, position: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per entity (sorted), its latest timestamp and the first position carrying it, from key pairs in any order.

    One unstable argsort by entity and per-group reductions: `np.lexsort` on (entity, timestamp) does the same
    ~6x slower (450 vs 80 ms per 1e6 pairs here)."""
    order = np.argsort(entities)
    ordered, latest, position = entities[order], latest[order], position[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    newest = np.maximum.reduceat(latest, starts)
    counts = np.diff(np.append(starts, len(ordered)))
    at_newest = latest == np.repeat(newest, counts)
    first = np.minimum.reduceat(np.where(at_newest, position, np.iinfo(np.int64).max), starts)
    return ordered[starts], newest, first


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
