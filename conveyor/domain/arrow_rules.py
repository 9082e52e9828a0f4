"""The rule engine's shortcut for arrow chunks: "does any row break a row-level rule of this suite?", answered
with column-level arrow compute (null counts, min/max, set membership, sortedness): a few ms per 1e6 rows.

Only a sure "no row does" returns True; anything else returns False and the chunk goes through the pandas
engine (`rule_engine.row_rules`), which finds and names the rows. So this never decides a row on its own:
tests/unit/test_scoring_checks.py checks that it and the pandas engine agree on every fault kind.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.domain.duplicates import duplicated_rows
from conveyor.domain.rule_engine import ROW_LEVEL_TYPES


def arrow_rows_pass(table: pa.Table, suite: dict[str, Any]) -> bool:
    """True when no row of `table` is flagged by any row-level rule of `suite`, tolerated (`mostly`) ones too."""
    dtypes = table.slice(0, 0).to_pandas().dtypes  # the dtypes the pandas engine would see, at no cost
    names = set(table.column_names)
    for exp in suite["expectations"]:
        kind, kw = exp["type"], exp["kwargs"]
        if kind not in ROW_LEVEL_TYPES:
            continue
        if kind == "expect_compound_columns_to_be_unique":
            if set(kw["column_list"]) <= names and not _unique(table, list(kw["column_list"])):
                return False
        elif kw["column"] in names and not _column_passes(table.column(kw["column"]), dtypes[kw["column"]], kind, kw):
            return False
    return True


def _column_passes(column: pa.ChunkedArray, dtype: Any, kind: str, kw: dict[str, Any]) -> bool:
    if kind in ("expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type"):
        # A typed column is judged by its dtype (a batch-level verdict, no row flagged); text is judged per value.
        return not pd.api.types.is_object_dtype(dtype)
    if kind == "expect_column_values_to_not_be_null":
        return column.null_count == 0 and not _has_nan(column)
    if kind == "expect_column_values_to_be_between":
        return _between(column, kw.get("min_value"), kw.get("max_value"))
    if kind == "expect_column_values_to_be_in_set":
        values = pc.drop_null(column) if column.null_count else column  # nulls are the not-null rule's business
        value_type = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        try:
            members = pc.is_in(values, value_set=pa.array(kw["value_set"], type=value_type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return False
        return pc.all(members).as_py() is not False
    return False


def _has_nan(column: pa.ChunkedArray) -> bool:
    # pandas counts NaN as null: a float NaN is a flagged row for the not-null rule.
    return pa.types.is_floating(column.type) and bool(pc.any(pc.is_nan(column)).as_py())


def _between(column: pa.ChunkedArray, low: float | None, high: float | None) -> bool:
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)) or _has_nan(column):
        return False  # text or NaN: the pandas engine converts and excludes values as GX does
    bounds = pc.min_max(column).as_py()
    if bounds["min"] is None:  # every value null: nulls are not counted by a range rule
        return True
    return (low is None or bounds["min"] >= low) and (high is None or bounds["max"] <= high)


def _unique(table: pa.Table, columns: list[str]) -> bool:
    for name in columns:
        column = table.column(name)
        if column.null_count == 0 and (pa.types.is_integer(column.type) or pa.types.is_timestamp(column.type)):
            values = column.to_numpy()
            if len(values) < 2 or bool((values[1:] > values[:-1]).all()):  # strictly increasing: no repeats
                return True
    keys: pd.DataFrame = table.select(columns).to_pandas()
    return not duplicated_rows(keys).any()
