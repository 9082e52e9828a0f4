"""A parquet batch read for validation: the pandas frame a plain read gives, and the arrow table it came from with
its text columns left dictionary-encoded.

Parquet stores text columns as a dictionary of distinct values plus indices. Read with `read_dictionary`, the
reader keeps that form instead of building a string per row, and the rule engine decides text rules on the few
distinct values (`column_facts`). The frame handed on is the one `pq.read_table(...).to_pandas()` gives (object
columns of `str` and None), so everything downstream sees the same data as before.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Top-level string columns of the file that a plain read turns into object columns of the frame (not an
    index, not a pandas string dtype the file's pandas metadata restores)."""
    dtypes = schema.empty_table().to_pandas().dtypes  # what a plain read gives, at no cost
    names = [field.name for field in schema]
    return [
        field.name
        for field in schema
        if (pa.types.is_string(field.type) or pa.types.is_large_string(field.type))
        and names.count(field.name) == 1
        and "." not in field.name  # `read_dictionary` takes column paths
        and field.name in dtypes.index
        and pd.api.types.is_object_dtype(dtypes[field.name])
    ]


def _as_text(values: pd.Series) -> np.ndarray:
    """A categorical column of strings as the object column of `str` and None a plain read gives."""
    categorical = pd.Categorical(values)
    lookup = np.empty(len(categorical.categories) + 1, dtype=object)  # the last slot, None, is code -1's
    lookup[:-1] = np.asarray(categorical.categories, dtype=object)
    return lookup[categorical.codes]


def read_parquet_batch(data: bytes) -> tuple[pd.DataFrame, pa.Table]:
    """(the frame of a parquet file's bytes, as a plain read gives it; the arrow table it was converted from,
    text columns dictionary-encoded). Raises what pyarrow raises for a file it cannot read."""
    text = _dictionary_columns(pq.read_schema(io.BytesIO(data)))
    table = pq.read_table(io.BytesIO(data), read_dictionary=text or None)
    frame = table.to_pandas()
    converted = {
        name: _as_text(frame[name])
        for name in text
        if name in frame.columns and isinstance(frame[name].dtype, pd.CategoricalDtype)
    }
    if converted:
        frame = frame.assign(**converted)
    return frame, table


def concat_batches(batches: list[tuple[pd.DataFrame, pa.Table]]) -> tuple[pd.DataFrame, pa.Table | None]:
    """The frames of several files as one frame (`pd.concat`), and their tables as one table when they share a
    schema (None otherwise: the rule engine then reads the frame alone)."""
    frames = [frame for frame, _ in batches]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    tables = [table for _, table in batches]
    if not tables or any(not t.schema.equals(tables[0].schema) for t in tables[1:]):
        return frame, None
    return frame, pa.concat_tables(tables)
