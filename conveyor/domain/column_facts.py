"""The per-column facts the rule engine decides rules from — not-null masks, set membership, plain numbers, what
kind of values a text column holds — each computed once per batch, from the cheapest source that gives the same
answer.

Text columns (object dtype) are what costs: pandas looks at every Python string. When the batch also comes as
arrow (the table its frame was converted from: a stored parquet partition, a scoring chunk), a text column is an
arrow string or dictionary-of-strings array, and its facts come from arrow: nulls from the validity bitmap, set
membership from `pc.is_in` on the UTF-8 values (for a dictionary array, on its distinct values, then spread
through the indices). Without arrow, a column of nothing but strings is recognized in one pass
(`infer_dtype`) and needs no null mask; other text is factorized once. Every source gives the same masks
(tests/unit/test_column_facts.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.types import is_object_dtype


def _int64(value: Any) -> bool:
    return type(value) is int and -(2**63) <= value < 2**63


def _string_type(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_string(data_type) or pa.types.is_large_string(data_type))


def arrow_text(column: pa.ChunkedArray) -> bool:
    """True when every value of `column` converts to a Python `str` or to None in pandas: an arrow string array,
    or a dictionary array of strings whose dictionaries hold no nulls (a null is in the indices only)."""
    data_type = column.type
    if _string_type(data_type):
        return True
    if pa.types.is_dictionary(data_type) and _string_type(data_type.value_type):
        return all(chunk.dictionary.null_count == 0 for chunk in column.chunks)
    return False


def _encodable(values: list[Any]) -> list[str]:
    """The strings of `values` that an arrow string array can hold: only a `str` can equal a text value, and one
    that is not valid UTF-8 (a lone surrogate) equals none of them."""
    found = []
    for value in values:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                continue
            found.append(str(value))
    return found


def arrow_valid(column: pa.ChunkedArray) -> np.ndarray:
    """Not-null mask of an arrow column."""
    if column.null_count == 0:
        return np.ones(len(column), dtype=bool)
    return np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool)


def arrow_in_set(column: pa.ChunkedArray, value_set: list[Any]) -> np.ndarray:
    """Rows of an `arrow_text` column whose value is not null and equals a member of `value_set`, as
    `Series.isin` decides it on the same values converted to Python strings."""
    strings = _encodable(value_set)
    if not strings or len(column) == 0:
        return np.zeros(len(column), dtype=bool)
    parts = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            # Decided once per distinct value, by value, then spread through the indices.
            members = pa.array(strings, type=chunk.dictionary.type)
            allowed = pc.is_in(chunk.dictionary, value_set=members).to_numpy(zero_copy_only=False)
            allowed = np.asarray(allowed, dtype=bool)
            if allowed.all() or not allowed.any():  # usual case: no row needs looking up
                member = np.full(len(chunk), bool(allowed.all()))
            else:
                indices = chunk.indices.fill_null(0) if chunk.null_count else chunk.indices
                member = allowed[indices.to_numpy(zero_copy_only=False)]
            if chunk.null_count:
                member &= np.asarray(chunk.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        else:
            found = pc.is_in(chunk, value_set=pa.array(strings, type=chunk.type))  # a null is in no set
            member = np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
        parts.append(member)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)


class ColumnFacts:
    """Facts about the columns of one batch, each computed once (several rules ask for the same one).

    `arrow`, when given, holds the same rows as `frame` (the table `frame` was converted from); its text
    columns are read through arrow. A table of another length is ignored.
    """

    def __init__(self, frame: pd.DataFrame, arrow: pa.Table | None = None) -> None:
        self.frame = frame
        self.n = len(frame)
        self.arrow = arrow if arrow is not None and arrow.num_rows == self.n else None
        self._present: dict[str, np.ndarray] = {}
        self._codes: dict[str, tuple[np.ndarray, pd.Index]] = {}
        self._inferred: dict[tuple[str, bool], str] = {}

    def text(self, column: str) -> pa.ChunkedArray | None:
        """The arrow text array behind an object column of the frame, when the batch came with one."""
        if self.arrow is None or self.frame[column].dtype != object:
            return None
        if len(self.arrow.schema.get_all_field_indices(column)) != 1:
            return None
        found = self.arrow.column(column)
        return found if arrow_text(found) else None

    def numbers(self, column: str) -> np.ndarray | None:
        """The column's values, not copied, when its dtype is a numpy integer or float64: no pandas NA, no text,
        and compared with a float bound they compare as float64, as the general path converts them."""
        values = self.frame[column]
        if isinstance(values.dtype, np.dtype) and (values.dtype.kind in "iu" or values.dtype == np.float64):
            return values.to_numpy()
        return None

    def present(self, column: str) -> np.ndarray:
        """Not-null mask of a column."""
        if column not in self._present:
            values = self.frame[column]
            dtype = values.dtype
            if isinstance(dtype, np.dtype) and dtype.kind in "iub":  # cannot hold a null
                mask = np.ones(self.n, dtype=bool)
            elif isinstance(dtype, np.dtype) and dtype.kind == "f":
                mask = ~np.isnan(values.to_numpy())
            elif (text := self.text(column)) is not None:
                mask = arrow_valid(text)
            elif is_object_dtype(dtype) and self.inferred(column, skipna=False) == "string":  # no null
                mask = np.ones(self.n, dtype=bool)
            elif is_object_dtype(dtype):
                # One factorize pass gives both the null mask and, through the few distinct values, set
                # membership (`in_set`).
                try:
                    codes, uniques = pd.factorize(values, use_na_sentinel=True)
                    self._codes[column] = (codes, pd.Index(uniques))
                    mask = codes != -1
                except TypeError:  # unhashable values
                    mask = values.notna().to_numpy()
            else:
                mask = values.notna().to_numpy()
            self._present[column] = mask
        return self._present[column]

    def inferred(self, column: str, skipna: bool = True) -> str:
        """`pd.api.types.infer_dtype` of an object column (nulls skipped, or not)."""
        key = (column, skipna)
        if key not in self._inferred:
            if skipna and (text := self.text(column)) is not None:
                self._inferred[key] = "empty" if text.null_count == len(text) else "string"
            elif skipna and self._inferred.get((column, False)) == "string":
                self._inferred[key] = "string"  # only strings, whether nulls are skipped or not
            else:
                self._inferred[key] = pd.api.types.infer_dtype(self.frame[column], skipna=skipna)
        return self._inferred[key]

    def in_set(self, column: str, value_set: list[Any]) -> np.ndarray:
        """Rows whose value is not null and in `value_set` (`Series.isin` semantics)."""
        present = self.present(column)
        if (text := self.text(column)) is not None:
            return present & arrow_in_set(text, value_set)
        if column in self._codes:
            codes, uniques = self._codes[column]
            allowed = uniques.isin(value_set) if len(uniques) else np.zeros(0, dtype=bool)
            return present & np.append(allowed, False)[codes]  # code -1 (null) picks the appended False
        numbers = self.numbers(column)
        if (
            numbers is not None
            and numbers.dtype.kind == "i"
            and len(value_set) <= 8
            and all(_int64(v) for v in value_set)
        ):
            # A few integers: one comparison each instead of a hash lookup per row.
            member = np.zeros(self.n, dtype=bool)
            for value in value_set:
                member |= numbers == value
            return present & member
        return present & self.frame[column].isin(value_set).to_numpy()
