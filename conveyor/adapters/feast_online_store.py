"""Conveyor's Feast online store: Feast's SQLite store writing each batch with one sorted `executemany`.

Referenced by `feature_repo/feature_store.yaml` (`online_store: type: conveyor.adapters.feast_online_store.
BatchedSqliteOnlineStore`), so Feast imports this module whenever it loads the repo: it imports feast and
sqlite3 only, never Prefect.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, repeat
from typing import Any, Literal

from feast import Entity, FeatureView, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import compute_table_id
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig, adapt_datetime_epoch
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.utils import to_naive_utc

from conveyor.adapters.feast_encoding import EncodedRows, value_text


class BatchedSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """`online_store: {type: <this module>.BatchedSqliteOnlineStore, path: ...}` in feature_store.yaml."""

    # A selector of its own (narrower than the parent's Literal, hence the ignore).
    type: Literal["conveyor.adapters.feast_online_store.BatchedSqliteOnlineStore"] = (
        "conveyor.adapters.feast_online_store.BatchedSqliteOnlineStore"  # type: ignore[assignment]
    )


class BatchedSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite online store (same tables, same reads) writing each batch with one `executemany`.

    The stock store runs one `execute` per entity x feature. Here a batch becomes one sorted `executemany`
    (sorted by primary key, so the B-tree fills in order), in WAL mode. Cells come pre-encoded column-wise from
    `arrow_to_protos` (`EncodedRows`): no proto is built or serialized per cell. An upsert never replaces a value
    with an older one (`event_ts` guard), so re-running an old window cannot roll the online store back.
    """

    def _get_conn(self, config: RepoConfig) -> sqlite3.Connection:
        fresh = self._conn is None
        conn: sqlite3.Connection = super()._get_conn(config)
        if fresh:
            # Bulk upserts touch pages all over the key space: keep them cached (256 MB) instead of the 2 MB
            # default. The online store is a cache rebuilt from the offline store, so NORMAL sync is enough.
            conn.execute("PRAGMA page_size=16384")  # takes effect on a new database file only
            conn.execute("PRAGMA cache_size=-262144")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    _deferred = False

    @contextmanager
    def one_transaction(self, config: RepoConfig) -> Iterator[None]:
        """The batches written inside commit once, at the end (rolled back on error). Keys of a slice land all
        over the tree, so a commit per batch rewrites most pages once per batch; one per slice, once per slice."""
        conn = self._get_conn(config)
        self._deferred = True
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
        finally:
            self._deferred = False

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        """Feast's tables, created WITHOUT ROWID (rows live in the primary-key B-tree: one tree to fill, not two)
        and without Feast's extra index on entity_key (the primary key already starts with it). Same columns,
        so Feast's reads, filters and the stock store work on them unchanged."""
        store_config = config.online_store
        if not (store_config.vector_enabled or getattr(store_config, "enable_openai_compatible_store", False)):
            conn = self._get_conn(config)
            versioning = config.registry.enable_online_feature_view_versioning
            for view in tables_to_keep:
                quoted = _quote(compute_table_id(config.project, view, versioning))
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {quoted} (entity_key BLOB, feature_name TEXT, value BLOB, "
                    "value_text TEXT, vector_value BLOB, event_ts timestamp, created_ts timestamp, "
                    "PRIMARY KEY(entity_key, feature_name)) WITHOUT ROWID"
                )
        super().update(config, tables_to_delete, tables_to_keep, entities_to_delete, entities_to_keep, partial)
        if not (store_config.vector_enabled or getattr(store_config, "enable_openai_compatible_store", False)):
            for view in tables_to_keep:
                name = compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
                self._get_conn(config).execute(f"DROP INDEX IF EXISTS {_quote(name + '_ek')}")

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], dt.datetime, dt.datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        store_config = config.online_store
        if store_config.vector_enabled or getattr(store_config, "enable_openai_compatible_store", False):
            super().online_write_batch(config, table, data, progress)  # vector columns: the stock path
            return
        table_name = compute_table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        sql = (
            f"INSERT INTO {_quote(table_name)} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, "
            "created_ts = excluded.created_ts WHERE excluded.event_ts >= event_ts"
        )
        version = config.entity_key_serialization_version
        rows = _encoded_rows(data, version) if isinstance(data, EncodedRows) else _proto_rows(data, version)
        self._execute(self._get_conn(config), sql, rows)
        if progress:
            progress(len(data))

    def _execute(self, conn: sqlite3.Connection, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self._deferred:  # inside one_transaction: sqlite3 opens the transaction, one_transaction commits
            conn.executemany(sql, rows)
            return
        with conn:
            conn.executemany(sql, rows)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _encoded_rows(data: EncodedRows, version: int) -> Iterable[tuple[Any, ...]]:
    """Rows from arrow_to_protos carry each cell's serialized value, value_text and serialized key, made
    column-wise: stream them to SQLite in primary-key order without a Python call per cell (the rows' protos are
    never built on this path)."""
    keys = data.serialized_keys(version)
    order = sorted(range(len(data)), key=keys.__getitem__)
    sorted_keys = [keys[i] for i in order]
    epochs = [data.epochs[i] for i in order]
    per_feature = []
    for name in sorted(data.encoded):
        blobs, texts = data.encoded[name]
        per_feature.append(
            zip(sorted_keys, repeat(name), [blobs[i] for i in order], [texts[i] for i in order], epochs, repeat(None))
        )
    return chain.from_iterable(zip(*per_feature, strict=True))


def _proto_rows(
    data: list[tuple[EntityKeyProto, dict[str, ValueProto], dt.datetime, dt.datetime | None]], version: int
) -> list[tuple[bytes, str, bytes, str | None, int, int | None]]:
    """Rows of Feast's own (proto) batches, in primary-key order so the B-tree fills page by page."""
    keys = [serialize_entity_key(entity_key, entity_key_serialization_version=version) for entity_key, _, _, _ in data]
    # Value protos are often shared (one per distinct value): serialize each object once.
    encoded: dict[int, tuple[bytes, str | None]] = {}
    rows: list[tuple[bytes, str, bytes, str | None, int, int | None]] = []
    common = sorted(data[0][1]) if data else []
    for i in sorted(range(len(data)), key=keys.__getitem__):
        _, values, event_ts, created_ts = data[i]
        # The same conversion the stock store's registered sqlite3 adapter applies (epoch seconds).
        event_epoch = adapt_datetime_epoch(to_naive_utc(event_ts))
        created_epoch = None if created_ts is None else adapt_datetime_epoch(to_naive_utc(created_ts))
        key = keys[i]
        for name in common if len(values) == len(common) else sorted(values):
            value = values[name]
            hit = encoded.get(id(value))
            if hit is None:
                hit = encoded[id(value)] = (value.SerializeToString(), value_text(value))
            rows.append((key, name, hit[0], hit[1], event_epoch, created_epoch))
    return rows
