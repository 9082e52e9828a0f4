"""Rows read from a user's files, brought to the types dataset.yaml declares before the raw suite judges them,
and the bookkeeping that lets an error name the file and row a bad value came from.

CSV holds text, and parquet files written by different tools disagree on types. `conform` converts each declared
column where every value converts (numbers stored as text become numbers, categories become text) and leaves
the values that do not convert as they were, next to the converted ones, so the suite's type rule flags exactly
those rows: `1 of 160 values ... are not numbers, e.g. ['abc']`, never the whole column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from configs.settings import DatasetConfig

TIMESTAMP_DTYPE = "datetime64[us, UTC]"  # what the raw table stores (duckdb/Feast read microseconds)


def declared_columns(dataset: DatasetConfig) -> list[str]:
    """The columns a source file must have, in the order the raw table stores them."""
    return [*dataset.entity_columns, dataset.timestamp_column, *dataset.feature_names, dataset.label_column]


def _numeric_label(dataset: DatasetConfig) -> bool:
    """The label holds numbers for a 0/1 binary target and for regression; class names otherwise (text)."""
    return dataset.task == "regression" or (dataset.task == "binary" and dataset.positive_class is None)


def numeric_columns(dataset: DatasetConfig) -> list[str]:
    """Declared columns that hold numbers: integer key columns, numeric features and a numeric label."""
    key = dataset.integer_keys
    return [*key, *dataset.numeric_features, *([dataset.label_column] if _numeric_label(dataset) else [])]


def parse_timestamps(values: pd.Series, timezone: str = "UTC") -> pd.Series:
    """Event times as UTC timestamps; NaT where a value is missing or not a timestamp. Text is read as ISO 8601;
    a time without an offset (text, or a parquet timestamp without a time zone) is a time in `timezone` (the
    dataset's `timezone`): a local time that does not exist or is ambiguous there (a DST change) becomes NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        stamps = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values):
        stamps = _localized(values, timezone)
    elif pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
        stamps = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        if timezone != "UTC":  # the ones without an offset were read as UTC: read them again as local times
            naive = ~values.astype("string").str.contains(_OFFSET, na=True).to_numpy(dtype=bool)
            if naive.any():
                local = pd.to_datetime(values[naive], errors="coerce", format="ISO8601")
                stamps[naive] = _localized(local, timezone)
    else:  # numbers: an epoch's unit is a guess this function does not make
        stamps = pd.Series(pd.NaT, index=values.index, dtype=TIMESTAMP_DTYPE)
    return stamps.astype(TIMESTAMP_DTYPE)


# An ISO 8601 time followed by its offset (Z, +02, +0200, -05:30); a date alone ("2026-01-31") has none.
_OFFSET = r"\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?\s*(?:Z|[+-]\d\d(?::?\d\d)?)\s*$"


def _localized(values: pd.Series, timezone: str) -> pd.Series:
    return values.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")


def _numbers(values: pd.Series, integer: bool) -> pd.Series:
    """Numbers where every value is one; otherwise the converted numbers next to the values that are not."""
    if pd.api.types.is_bool_dtype(values):
        return values
    if not pd.api.types.is_numeric_dtype(values):
        converted = pd.to_numeric(values, errors="coerce")
        not_numbers = values.notna().to_numpy() & converted.isna().to_numpy()
        if not_numbers.any():
            mixed = converted.astype(object)
            mixed[not_numbers] = values[not_numbers]
            return mixed
        values = converted
    if integer and pd.api.types.is_float_dtype(values) and not values.hasnans:
        whole = values.to_numpy()
        if np.array_equal(whole, np.round(whole)):
            return values.astype("int64")
    return values


def _text_or_null(value: Any) -> Any:
    return value if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _text(values: pd.Series) -> pd.Series:
    """Category values as text (a parquet dictionary or numbers in a CSV column become strings); nulls stay."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    if pd.api.types.is_object_dtype(values) and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        return values
    return values.map(_text_or_null).astype(object)


_BOOLS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _bools(values: pd.Series) -> pd.Series:
    """true/false, 1/0, yes/no text as booleans where every value is one; otherwise left as it is."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_object_dtype(values):
        return values
    present = values.notna()
    mapped = values[present].map(lambda v: _BOOLS.get(str(v).strip().lower()))
    if mapped.isna().any():
        return values
    if present.all():
        return mapped.astype(bool)
    return pd.Series(pd.array(mapped.reindex(values.index), dtype="boolean"), index=values.index)


def _integer_columns(dataset: DatasetConfig) -> list[str]:
    key = dataset.integer_keys
    label = [dataset.label_column] if dataset.task == "binary" and dataset.positive_class is None else []
    return [*key, *label, *(f.name for f in dataset.features if f.dtype == "int64")]


def _label_text(values: pd.Series) -> pd.Series:
    """Class names as text; integral floats lose their '.0' (a parquet float column of classes 1, 2, 3)."""
    if pd.api.types.is_float_dtype(values) and np.array_equal(values.dropna(), np.round(values.dropna())):
        present = values.dropna()
        return present.astype("int64").astype(str).astype(object).reindex(values.index)
    return _text(values)


def _text_key(dataset: DatasetConfig) -> set[str]:
    return set(dataset.string_keys)


def conform(frame: pd.DataFrame, dataset: DatasetConfig) -> pd.DataFrame:
    """`frame`'s declared columns in the table's order, each in its declared type where its values allow."""
    integer = set(_integer_columns(dataset))
    numeric = set(numeric_columns(dataset))
    text = {f.name for f in dataset.features if f.dtype == "category"} | _text_key(dataset)
    bools = {f.name for f in dataset.features if f.dtype == "bool"}
    columns: dict[str, pd.Series] = {}
    for name in (c for c in declared_columns(dataset) if c in frame.columns):
        values = frame[name]
        if name == dataset.timestamp_column:
            values = parse_timestamps(values, dataset.timezone)
        elif name in numeric:
            values = _numbers(values, name in integer)
        elif name == dataset.label_column and not _numeric_label(dataset):
            values = _label_text(values)
        elif name in text:
            values = _text(values)
        elif name in bools:
            values = _bools(values)
        columns[name] = values
    return pd.DataFrame(columns, index=frame.index).reset_index(drop=True)


def as_declared(frame: pd.DataFrame, dataset: DatasetConfig) -> pd.DataFrame:
    """A validated frame as the table stores it: integer columns with missing values become nullable integers
    (not floats), so every day of the table has one schema whether or not it has a null."""
    integer = _integer_columns(dataset)
    changed: dict[str, Any] = {}
    for name in integer:
        values = frame[name] if name in frame.columns else None
        if values is not None and pd.api.types.is_float_dtype(values):
            whole = values.dropna().to_numpy()
            if np.array_equal(whole, np.round(whole)):
                changed[name] = values.astype("Int64")
    return frame.assign(**changed) if changed else frame


def storable(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` as parquet can hold it: a column mixing numbers and text (what `conform` leaves for the type rule)
    becomes text, nulls kept, so rejected rows are kept as they were read."""
    mixed = {
        name: values.map(_text_or_null)
        for name, values in frame.items()
        if values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) in ("mixed", "mixed-integer")
    }
    return frame.assign(**mixed) if mixed else frame


@dataclass(frozen=True)
class RowOrigins:
    """Where each row of a batch was read: `files[file_index[i]]`, data row `row[i]` (1-based, header not
    counted)."""

    files: tuple[str, ...]
    file_index: np.ndarray
    row: np.ndarray

    def take(self, mask: np.ndarray) -> RowOrigins:
        return RowOrigins(self.files, self.file_index[mask], self.row[mask])

    def columns(self) -> dict[str, Any]:
        """`_source_file`, `_source_row`: what a quarantined row keeps of where it came from."""
        return {"_source_file": np.asarray(self.files, dtype=object)[self.file_index], "_source_row": self.row}

    def counts(self) -> list[tuple[str, int]]:
        """(file, rows) for each file the batch has rows of."""
        found = np.bincount(self.file_index, minlength=len(self.files))
        return [(self.files[i], int(n)) for i, n in enumerate(found) if n]

    def describe(self, mask: np.ndarray, limit: int = 3) -> str:
        """The rows `mask` flags: `poisoned.csv row 17` or `a.csv rows 3, 9, 12 (+40 more); b.csv row 2`."""
        parts = []
        for index in np.unique(self.file_index[mask]):
            rows = np.sort(self.row[mask & (self.file_index == index)])
            shown = ", ".join(str(r) for r in rows[:limit])
            more = f" (+{len(rows) - limit:,} more)" if len(rows) > limit else ""
            parts.append(f"{self.files[index]} row{'s' if len(rows) > 1 else ''} {shown}{more}")
        return "; ".join(parts)
