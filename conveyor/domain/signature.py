"""A model's input signature, derived from the dataset's feature specs (configs/dataset.yaml): which fields a
row of feature values may carry, of which type and in which range. Pure: the online service checks request rows
with it before anything is scored, and every violation names the row, the field and the rule."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from configs.settings import DatasetConfig, FeatureSpec


@dataclass(frozen=True)
class Violation:
    """One value a signature refuses: `rows[row][field]` breaks `rule`."""

    row: int
    field: str
    rule: str
    value: Any

    def describe(self) -> str:
        return f"row {self.row}, field {self.field!r}: {self.rule} (got {self.value!r})"

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "rule": self.rule, "value": _jsonable(self.value)}


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) or value is None else repr(value)


# dataset.entity_dtype: int64 or string; a composite key: an object of every key column, {store_id: 3, sku: "a"}.
EntityKey = int | str | dict[str, int | str]
_KEY_RULES: dict[str, tuple[type, str]] = {
    "int64": (int, "type: an integer id (int64)"),
    "string": (str, "type: a string id"),
}


def key_violations(entity_ids: Sequence[Any], dataset: DatasetConfig) -> list[Violation]:
    """Entity ids of the wrong shape or type for the dataset's key (`entity_columns`, `entity_dtype`): named by
    their position and key column. A composite key's id is an object with exactly the key columns."""
    found = []
    for i, key in enumerate(entity_ids):
        if dataset.composite_key:
            if not isinstance(key, Mapping) or set(key) != set(dataset.entity_columns):
                found.append(Violation(i, ",".join(dataset.entity_columns), "an object of the key columns", key))
                continue
            values = dict(key)
        else:
            values = {dataset.entity_column: key}
        for column, value in values.items():
            wanted, rule = _KEY_RULES[dataset.key_dtypes[column]]
            if isinstance(value, bool) or not isinstance(value, wanted):
                found.append(Violation(i, column, rule, value))
    return found


def _value_violation(spec: FeatureSpec, value: Any) -> str | None:
    """The rule `value` breaks for `spec`, or None; null (None / NaN) is the missing-features policy's call."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if spec.dtype == "category":
        if not isinstance(value, str):
            return f"type: a string, one of {spec.categories}"
        if spec.categories is not None and value not in spec.categories:
            return f"category: one of {spec.categories}"
        return None
    if spec.dtype == "bool":
        return None if isinstance(value, bool) else "type: a boolean"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"type: a number ({spec.dtype})"
    if spec.dtype == "int64" and isinstance(value, float) and not value.is_integer():
        return "type: an integer (int64)"
    if spec.min is not None and value < spec.min:
        return f"range: >= {spec.min:g}"
    if spec.max is not None and value > spec.max:
        return f"range: <= {spec.max:g}"
    return None


def violations(rows: Sequence[Mapping[str, Any]], dataset: DatasetConfig, limit: int = 50) -> list[Violation]:
    """Every unknown field and every value outside its feature's type, categories or [min, max], first `limit`.
    An absent field is a missing feature (null), not a violation."""
    specs = {spec.name: spec for spec in dataset.features}
    found: list[Violation] = []
    for index, row in enumerate(rows):
        for field, value in row.items():
            spec = specs.get(field)
            rule = (
                f"unknown field: not a feature of {dataset.name!r}" if spec is None else _value_violation(spec, value)
            )
            if rule is not None:
                found.append(Violation(index, field, rule, value))
                if len(found) >= limit:
                    return found
    return found


def rows_frame(rows: Sequence[Mapping[str, Any]], dataset: DatasetConfig) -> pd.DataFrame:
    """Checked rows as the model's input frame: every feature column in dataset order, absent fields null,
    numbers as float64 (what the model sees either way), categories as strings. Built column by column from
    plain lists: per-column pandas conversions cost more than the model on a one-row request."""
    columns: dict[str, np.ndarray] = {}
    for spec in dataset.features:
        values = [np.nan if (v := row.get(spec.name)) is None else v for row in rows]
        if spec.is_numeric:
            columns[spec.name] = np.asarray(values, dtype="float64")
        else:
            column = np.empty(len(values), dtype=object)
            column[:] = values
            columns[spec.name] = column
    return pd.DataFrame(columns, columns=dataset.feature_names)


def column_lists(frame: pd.DataFrame, names: Sequence[str] | None = None) -> dict[str, list[Any]]:
    """`names` (default: all columns) -> that column's values as Python objects. On a request's few rows, one
    `frame[name].tolist()` per column costs ~5 us where `to_dict("records")` costs ~0.5 ms and `frame[names]`
    (a take) ~0.2 ms: this is how the serving path reads rows out of a frame."""
    return {name: frame[name].tolist() for name in (frame.columns if names is None else names)}


def frame_violations(frame: pd.DataFrame, dataset: DatasetConfig) -> list[Violation]:
    """The first value per row of a typed frame (values read from a store) outside its feature's [min, max] or
    categories; nulls are the policies' call. Column-wise: what request serving affords per call."""
    found: dict[int, Violation] = {}
    for spec in dataset.features:
        column = frame[spec.name]
        if spec.is_numeric:
            values = column.to_numpy(dtype="float64", na_value=np.nan)
            low = values < spec.min if spec.min is not None else np.zeros(len(values), bool)
            high = values > spec.max if spec.max is not None else np.zeros(len(values), bool)
            for row in np.flatnonzero(low | high):
                rule = f"range: >= {spec.min:g}" if low[row] else f"range: <= {spec.max:g}"
                found.setdefault(int(row), Violation(int(row), spec.name, rule, float(values[row])))
        elif spec.categories is not None:
            allowed = set(spec.categories)
            bad = [i for i, v in enumerate(column.to_numpy()) if isinstance(v, str) and v not in allowed]
            for index in bad:
                rule = f"category: one of {spec.categories}"
                found.setdefault(index, Violation(index, spec.name, rule, column.iloc[index]))
    return [found[row] for row in sorted(found)]
