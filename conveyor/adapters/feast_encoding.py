"""Arrow -> Feast protobuf encoding, column-wise: a batch's cells serialized once per column, not per cell.

Checked against Feast's own bytes in tests/unit/test_feature_store.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from feast import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import adapt_datetime_epoch
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.utils import _convert_arrow_to_proto

from conveyor.domain.failures import InvalidInput

# Feast scalar types -> the ValueProto field Feast's own type map fills for them.
_PROTO_FIELDS = {
    "INT64": "int64_val",
    "INT32": "int32_val",
    "DOUBLE": "double_val",
    "FLOAT": "float_val",
    "STRING": "string_val",
    "BOOL": "bool_val",
}
_NULL = ValueProto()


_CASTS: dict[str, Callable[[Any], Any]] = {
    "int64_val": int,
    "int32_val": int,
    "double_val": float,
    "float_val": float,
    "string_val": str,
    "bool_val": bool,
}
# A double ValueProto serializes as one tag byte + 8 little-endian bytes (taken from protobuf, not hard-coded).
_DOUBLE_TAG = ValueProto(double_val=1.5).SerializeToString()[:1]


def value_text(value: ValueProto) -> str | None:
    # What Feast's helpers.extract_text_and_num stores in value_text (used by its text search).
    kind = value.WhichOneof("val")
    if kind == "string_val":
        return str(value.string_val)
    if kind in ("int64_val", "int32_val", "double_val", "float_val", "bool_val"):
        return str(getattr(value, kind))
    return None


class EncodedRows(Sequence[Any]):
    """The rows `online_write_batch` takes (a sequence of Feast's (entity key, {feature: value}, event_ts,
    created_ts) tuples, valid for any online store; its protos are built on first access only), plus each
    feature's serialized values and value_text per row, the event epochs and the serialized entity keys, which
    BatchedSqliteOnlineStore writes directly without building or re-encoding any proto."""

    def __init__(
        self,
        build: Callable[[], Iterable[Any]],
        n: int,
        encoded: dict[str, tuple[list[bytes], list[str | None]]],
        epochs: list[int],
        keys: Callable[[int], list[bytes]],
    ) -> None:
        self._build, self._n = build, n
        self._rows: list[Any] | None = None
        self.encoded, self.epochs, self._keys = encoded, epochs, keys

    def _materialized(self) -> list[Any]:
        if self._rows is None:
            self._rows = list(self._build())
        return self._rows

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> Any:
        return self._materialized()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._materialized())

    def serialized_keys(self, version: int) -> list[bytes]:
        """Each row's `serialize_entity_key(key, version)`, made column-wise."""
        return self._keys(version)


def _column_protos(values: pa.Array | pa.ChunkedArray, proto_field: str) -> np.ndarray:
    """One ValueProto per distinct value (nulls share an empty one), fanned out to every row."""
    codes, uniques = pd.factorize(values.to_pandas(), use_na_sentinel=True)
    protos = np.empty(len(uniques) + 1, dtype=object)
    cast = _CASTS[proto_field]
    for j, value in enumerate(uniques):
        protos[j] = ValueProto(**{proto_field: cast(value)})
    protos[-1] = _NULL  # code -1 (null) indexes the last slot
    return protos[codes]


def _column_encoded(values: pa.Array | pa.ChunkedArray, proto_field: str) -> tuple[list[bytes], list[str | None]]:
    """Each row's serialized ValueProto and value_text, as `_column_protos(...)[i].SerializeToString()` and
    `_value_text` would give them: doubles byte-wise with numpy (their values are mostly distinct), other types
    once per distinct value."""
    if proto_field == "double_val":
        array = values.to_pandas().to_numpy(dtype=np.float64, na_value=np.nan)
        n = len(array)
        cells = np.empty((n, 9), dtype=np.uint8)
        cells[:, 0] = _DOUBLE_TAG[0]
        cells[:, 1:] = array.astype("<f8").view(np.uint8).reshape(n, 8)
        raw = cells.tobytes()
        blobs = [raw[i : i + 9] for i in range(0, 9 * n, 9)]
        texts: list[str | None] = list(map(str, array.tolist()))
        for i in np.flatnonzero(np.isnan(array)).tolist():  # nulls (and NaN, as pd.factorize treats them)
            blobs[i], texts[i] = b"", None
        return blobs, texts
    codes, uniques = pd.factorize(values.to_pandas(), use_na_sentinel=True)
    cast = _CASTS[proto_field]
    protos = [ValueProto(**{proto_field: cast(value)}) for value in uniques] + [_NULL]
    blob_of = np.array([p.SerializeToString() for p in protos], dtype=object)
    text_of = np.array([value_text(p) for p in protos], dtype=object)
    return blob_of[codes].tolist(), text_of[codes].tolist()


def _key_serializer(
    batch: pa.RecordBatch,
    key_types: dict[str, Any],
    key_fields: dict[str, str | None],
) -> Callable[[int], list[bytes]]:
    """Serialized entity keys per row. One int64 join key (the common case): Feast's serialization of the first
    row minus its 8 value bytes, then every row's little-endian value appended (checked against Feast on the
    first row). Anything else: Feast's serialize_entity_key per row."""

    def protos() -> list[EntityKeyProto]:
        columns = [_column_protos(batch.column(k), str(key_fields[k])) for k in key_types]
        join_keys = list(key_types)
        return [EntityKeyProto(join_keys=join_keys, entity_values=list(vals)) for vals in zip(*columns, strict=True)]

    def serialize(version: int) -> list[bytes]:
        fast = len(key_types) == 1 and next(iter(key_fields.values())) == "int64_val" and batch.num_rows > 0
        if fast:
            column = batch.column(next(iter(key_types)))
            if column.null_count == 0:
                values = column.to_numpy(zero_copy_only=False).astype("<i8")
                first = serialize_entity_key(
                    EntityKeyProto(join_keys=list(key_types), entity_values=[ValueProto(int64_val=int(values[0]))]),
                    entity_key_serialization_version=version,
                )
                prefix, raw = first[:-8], values.tobytes()
                if first == prefix + raw[:8]:
                    return [prefix + raw[i : i + 8] for i in range(0, len(raw), 8)]
        return [serialize_entity_key(k, entity_key_serialization_version=version) for k in protos()]

    serialize.protos = protos  # type: ignore[attr-defined]
    return serialize


def arrow_to_protos(
    batch: pa.RecordBatch, view: FeatureView
) -> Sequence[tuple[EntityKeyProto, dict[str, ValueProto], dt.datetime, dt.datetime | None]]:
    """The rows `OnlineStore.online_write_batch` takes, built column-wise: the same protos Feast's own
    `_convert_arrow_to_proto` makes for scalar types (tested), without one Python call per cell, built only if a
    store reads them. Views with other types (lists, timestamps...) go through Feast's converter."""
    key_types = {e.name: e.dtype.to_value_type() for e in view.entity_columns}
    fields = {f.name: _PROTO_FIELDS.get(f.dtype.to_value_type().name) for f in view.features}
    key_fields = {k: _PROTO_FIELDS.get(t.name) for k, t in key_types.items()}
    source = view.batch_source
    if source is None:
        raise InvalidInput(f"feature view {view.name!r} has no batch source")
    if None in fields.values() or None in key_fields.values() or source.created_timestamp_column:
        return list(_convert_arrow_to_proto(batch, view, key_types))
    n = batch.num_rows
    names = list(fields)
    stamps = pd.to_datetime(batch.column(source.timestamp_field).to_numpy(zero_copy_only=False), utc=True)
    event_ts = stamps.tz_convert(None).to_pydatetime().tolist()  # naive UTC, as Feast hands them over
    # The epoch seconds SQLite stores: the same adapter the stock store registers with sqlite3.
    epochs = [adapt_datetime_epoch(ts) for ts in event_ts]
    keys = _key_serializer(batch, key_types, key_fields)

    def build() -> Iterable[Any]:
        columns = [_column_protos(batch.column(name), str(fields[name])) for name in names]
        features = [dict(zip(names, cells, strict=True)) for cells in zip(*columns, strict=True)]
        return zip(keys.protos(), features, event_ts, [None] * n, strict=True)  # type: ignore[attr-defined]

    encoded = {name: _column_encoded(batch.column(name), str(fields[name])) for name in names}
    return EncodedRows(build, n, encoded, epochs, keys)
