"""The outputs of scoring one partition: prediction rows streamed as one parquet part into a publication (and
the challenger's into a shadow publication), published atomically at the end or dropped; quarantined rows
spooled to a local file and uploaded once.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import Manifest, Publication
from conveyor.domain.task_types import DECISION, PREDICTED_CLASS, ModelTask

PART_NAME = "part-00000.parquet"


_BINARY = ModelTask("binary", ("0", "1"))
_OUTPUT_TYPES = {DECISION: pa.bool_(), PREDICTED_CLASS: pa.string()}  # every other output column is float64


def output_schema(keys: dict[str, pa.DataType], task: ModelTask = _BINARY) -> pa.Schema:
    """The key column(s) (name -> type, in key order), the task's output columns (`ModelTask.output_columns`),
    then the audit columns."""
    # Constant audit columns are dictionary-encoded in memory (no per-row hashing when written); the parquet
    # file stores plain strings (store_schema=False), so every reader sees `string`, not a categorical.
    text = pa.dictionary(pa.int32(), pa.string())
    return pa.schema(
        [
            *keys.items(),
            *((name, _OUTPUT_TYPES.get(name, pa.float64())) for name in task.output_columns),
            ("model_version", text),
            ("feature_service", text),
            ("run_id", text),
            ("scored_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def _constant(value: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string()))


def prediction_table(
    schema: pa.Schema,
    entities: pd.DataFrame,
    outputs: pd.DataFrame,
    audit: tuple[str, str, str],
    scored_at: dt.datetime,
) -> pa.Table:
    """Prediction rows: the key columns (`entities`, in the schema's order), the output columns `schema` names
    (taken from `outputs`, the task's outputs of the same rows) and the audit columns `audit` = (model_version,
    feature_service, run_id)."""
    n = len(outputs)
    if len(entities) != n:
        raise ValueError(f"prediction rows: {len(entities)} entities but {n} output rows")
    keys = entities.shape[1]
    output_fields = [schema.field(i) for i in range(keys, len(schema) - len(audit) - 1)]
    missing = [f.name for f in output_fields if f.name not in outputs.columns]
    if missing:
        raise ValueError(f"prediction rows: outputs lack column(s) {missing} of the task's output columns")
    return pa.Table.from_arrays(
        [
            *(pa.array(entities.iloc[:, i].to_numpy(), type=schema.field(i).type) for i in range(keys)),
            *(pa.array(outputs[f.name].to_numpy(), type=f.type) for f in output_fields),
            *(_constant(value, n) for value in audit),
            pa.repeat(pa.scalar(scored_at, pa.timestamp("us", tz="UTC")), n),
        ],
        schema=schema,
    )


class PartSink:
    """One streamed parquet part of a publication."""

    def __init__(self, publication: Publication, part_size: int) -> None:
        self.part = publication.open_part(PART_NAME, part_size)
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.closed = False

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.part, table.schema, compression="zstd", store_schema=False)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self, schema: pa.Schema) -> None:
        if self.writer is None:  # empty partition: still a valid (empty) parquet file
            self.writer = pq.ParquetWriter(self.part, schema, compression="zstd", store_schema=False)
        self.writer.close()
        self.part.rows = self.rows
        self.part.close()
        self.closed = True

    def abort(self) -> None:
        self.part.abort()
        if self.writer is not None:
            # Close into the aborted part (which discards the footer) now, not in ParquetWriter.__del__ at
            # garbage collection, where writing to a closed part printed an "Exception ignored" traceback.
            self.writer.close()


class PartitionWriter:
    """The predictions part, and the shadow part when a challenger is shadowed, as a context manager: every
    staged part is dropped on any exit without `commit`."""

    def __init__(self, store: ObjectStore, prefix: str, run_id: str, part_size: int, shadow: str | None) -> None:
        self._stack = ExitStack()
        try:
            self.publication = self._stack.enter_context(Publication(store, prefix, run_id))
            self.sink = PartSink(self.publication, part_size)
            self.shadow_publication: Publication | None = None
            self.shadow_sink: PartSink | None = None
            if shadow is not None:
                self.shadow_publication = self._stack.enter_context(Publication(store, shadow, run_id))
                self.shadow_sink = PartSink(self.shadow_publication, part_size)
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> PartitionWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> bool | None:
        if error is not None:
            for sink in (self.sink, self.shadow_sink):
                if sink is not None and not sink.closed:
                    sink.abort()
        return self._stack.__exit__(kind, error, trace)

    def write(self, predictions: pa.Table, shadow: pa.Table | None = None) -> None:
        self.sink.write(predictions)
        if shadow is not None and self.shadow_sink is not None:
            self.shadow_sink.write(shadow)

    def close_parts(self, schema: pa.Schema, shadow_schema: pa.Schema | None = None) -> None:
        """Finish the streamed parts (uploaded and staged, not yet visible); each schema is its model's (the
        shadow part's is the challenger's: its task may differ)."""
        self.sink.close(schema)
        if self.shadow_sink is not None:
            self.shadow_sink.close(shadow_schema or schema)

    def commit(self, metadata: dict[str, Any], shadow_metadata: dict[str, Any] | None) -> tuple[Manifest, str | None]:
        """Publish the shadow scores (when any), then the predictions; returns (manifest, shadow prefix)."""
        shadow_prefix = None
        if self.shadow_publication is not None and shadow_metadata is not None:
            shadow_prefix = self.shadow_publication.commit(shadow_metadata).prefix
        return self.publication.commit(metadata), shadow_prefix


class QuarantineSink:
    """Quarantined rows, spooled to a local file (bounded memory) and uploaded once at the end."""

    def __init__(self) -> None:
        self._tmp = tempfile.NamedTemporaryFile(prefix="conveyor-quarantine-", suffix=".parquet", delete=False)
        self._tmp.close()
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.samples: list[dict[str, Any]] = []

    def write(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self._tmp.name, table.schema, compression="zstd")
        self.writer.write_table(table.cast(self.writer.schema))
        self.rows += len(frame)
        if len(self.samples) < 20:
            self.samples.extend(frame.head(20 - len(self.samples)).to_dict(orient="records"))

    def upload(self, store: ObjectStore, key: str) -> str | None:
        if self.writer is None:
            return None
        self.writer.close()
        self.writer = None
        store.put_file(key, self._tmp.name)
        return store.uri(key)

    def cleanup(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if os.path.exists(self._tmp.name):
            os.remove(self._tmp.name)
