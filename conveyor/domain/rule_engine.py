"""The one rule engine: decides an expectation suite on a DataFrame with Great Expectations' semantics, and says
which rows break each row-level rule.

Why an engine of our own: Great Expectations computes every expectation through its metric graph, which on
1e6 rows costs a multiple of reading the data (bench/validation.py). For the expectation types below, the same
semantics (unexpected counts and percentages, `mostly`, nulls excluded from map rules) are a few vectorized
pandas operations. GX still renders the report and Data Docs whenever a batch fails, and `validation.engine: gx`
makes GX decide every batch; tests/unit/test_validation.py checks both engines agree on every fault kind.
A suite holding any other expectation type is decided by GX (`FAST_TYPES` lists what this module evaluates).

The same engine decides raw validation (`evaluate_fast`: the verdict and the row-level quarantine mask) and the
scoring row checks (`row_rules`: per rule, the rows it flags). `arrow_rules.arrow_rows_pass` answers "does any
row break a row-level rule" for an arrow chunk with column-level compute, from the same suite. The column facts
the rules are decided from (null masks, set membership; through arrow for text when the batch has an arrow
table) come from `column_facts.ColumnFacts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from conveyor.domain.column_facts import ColumnFacts
from conveyor.domain.duplicates import duplicated_rows
from conveyor.domain.expectations import ExpectationOutcome, camel, rule_text

# Rules a single row can break. Row-level quarantine takes the rows breaking the strict ones (no `mostly`).
ROW_LEVEL_TYPES = frozenset(
    {
        "expect_column_values_to_be_in_type_list",
        "expect_column_values_to_be_of_type",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_compound_columns_to_be_unique",
    }
)
# Everything this engine evaluates: the row-level rules plus the table- and column-level ones.
FAST_TYPES = ROW_LEVEL_TYPES | {
    "expect_table_row_count_to_be_between",
    "expect_column_to_exist",
    "expect_column_max_to_be_between",
}
NUMERIC_TYPE_NAMES = {"int64", "Int64", "int32", "float64", "float32", "Float64", "int", "float"}


@dataclass
class RuleRows:
    """The rows of a frame that one row-level expectation flags."""

    expectation: str
    column: str | None
    rule: str
    strict: bool  # no tolerated share (`mostly`): each flagged row breaks the suite on its own
    rows: np.ndarray

    def reason(self) -> str:
        """Why a flagged row is rejected: `age: breaks 'between 18.0 and 100.0' (ExpectColumnValuesToBeBetween)`."""
        return f"{self.column}: breaks {self.rule!r} ({camel(self.expectation)})"


@dataclass
class _Checked:
    outcome: ExpectationOutcome
    rows: np.ndarray | None = None  # the rows a row-level rule flags (None: a column- or table-level verdict)
    strict: bool = True


def _sample(values: pd.Series, n: int) -> list[Any]:
    out = []
    for v in values.head(n).tolist():
        out.append(
            None
            if v is None or (isinstance(v, float) and np.isnan(v))
            else v.isoformat()
            if isinstance(v, pd.Timestamp)
            else v.item()
            if isinstance(v, np.generic)
            else v
        )
    return out


def _pct(count: int, total: int) -> float | None:
    return 100.0 * count / total if total else None


def _accepts(dtype: Any, type_list: list[str]) -> bool:
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "Timestamp" in type_list or "DatetimeTZDtype" in type_list
    if isinstance(dtype, pd.CategoricalDtype):
        return "CategoricalDtype" in type_list or "category" in type_list
    if isinstance(dtype, pd.StringDtype):
        return "StringDtype" in type_list or "string" in type_list
    if isinstance(dtype, pd.BooleanDtype):
        return "BooleanDtype" in type_list or "boolean" in type_list
    return str(dtype) in type_list


def _python_types(type_list: list[str]) -> tuple[type, ...]:
    found: list[type] = []
    for name in type_list:
        if name in ("str", "string", "StringDtype", "object"):
            found.append(str)
        elif name in ("int", "int64", "Int64", "int32"):
            found += [int, np.integer]
        elif name in ("float", "float64", "float32", "Float64"):
            found += [float, np.floating]
        elif name in ("bool", "BooleanDtype", "boolean"):
            found += [bool, np.bool_]
    return tuple(found)


def numeric_or_nan(column: pd.Series) -> pd.Series:
    """The column as numbers; values that are not numbers become NaN."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column
    return pd.to_numeric(column, errors="coerce")


def _as_timestamp(value: Any, like: pd.Timestamp) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    if like.tzinfo is not None and stamp.tzinfo is None:
        return stamp.tz_localize("UTC")
    if like.tzinfo is None and stamp.tzinfo is not None:
        return stamp.tz_convert("UTC").tz_localize(None)
    return stamp


class FastEvaluator:
    """Evaluates the FAST_TYPES expectations of a suite on a DataFrame with pandas vectorized operations."""

    def __init__(
        self, frame: pd.DataFrame, parameters: dict[str, str], sample_size: int, arrow: pa.Table | None = None
    ) -> None:
        self.frame = frame
        self.n = len(frame)
        self.parameters = parameters
        self.sample_size = sample_size
        self.columns = ColumnFacts(frame, arrow)

    def check(self, exp: dict[str, Any]) -> _Checked:
        """One expectation's outcome on the frame, with the rows it flags when it is a row-level rule."""
        kind, kw = exp["type"], dict(exp["kwargs"])
        for key, value in kw.items():
            if isinstance(value, dict) and "$PARAMETER" in value:
                kw[key] = self.parameters[value["$PARAMETER"]]
        column = kw.get("column")
        if column is not None and column not in self.frame.columns:
            outcome = ExpectationOutcome(kind, column, rule_text(kind, kw), False, observed="column missing")
            if kind == "expect_column_to_exist":
                outcome.observed = f"not among the {len(self.frame.columns)} columns"
            return _Checked(outcome)
        handler = getattr(self, "_" + kind.removeprefix("expect_"))
        checked: _Checked = handler(kw, rule_text(kind, kw))
        mostly = kw.get("mostly")
        checked.strict = mostly is None or float(mostly) >= 1  # a tolerated share is a batch-level rule
        return checked

    def _map_outcome(
        self,
        kind: str,
        kw: dict[str, Any],
        rule: str,
        bad: np.ndarray,
        total: int,
        values: pd.Series,
        missing: int | None = None,
    ) -> _Checked:
        count = int(np.count_nonzero(bad))
        mostly = float(kw.get("mostly", 1.0))
        success = total == 0 or (total - count) / total >= mostly
        sample = _sample(values[bad], self.sample_size) if count and self.sample_size else []
        outcome = ExpectationOutcome(
            kind, kw.get("column"), rule, bool(success), count, _pct(count, total), total, sample=sample
        )
        if missing:
            outcome.observed = f"{missing:,} nulls not counted"
        return _Checked(outcome, bad)

    def _table_row_count_to_be_between(self, kw: dict[str, Any], rule: str) -> _Checked:
        lo, hi = kw.get("min_value"), kw.get("max_value")
        ok = (lo is None or self.n >= lo) and (hi is None or self.n <= hi)
        return _Checked(
            ExpectationOutcome("expect_table_row_count_to_be_between", None, rule, ok, observed=f"{self.n:,} rows")
        )

    def _column_to_exist(self, kw: dict[str, Any], rule: str) -> _Checked:
        return _Checked(ExpectationOutcome("expect_column_to_exist", kw["column"], rule, True))

    def _column_values_to_not_be_null(self, kw: dict[str, Any], rule: str) -> _Checked:
        values = self.frame[kw["column"]]
        bad = ~self.columns.present(kw["column"])
        return self._map_outcome("expect_column_values_to_not_be_null", kw, rule, bad, self.n, values)

    def _column_values_to_be_of_type(self, kw: dict[str, Any], rule: str) -> _Checked:
        return self._column_values_to_be_in_type_list(
            {**kw, "type_list": [kw["type_"]]}, rule, "expect_column_values_to_be_of_type"
        )

    def _column_values_to_be_in_type_list(
        self, kw: dict[str, Any], rule: str, kind: str = "expect_column_values_to_be_in_type_list"
    ) -> _Checked:
        values = self.frame[kw["column"]]
        type_list = list(kw.get("type_list") or [])
        if values.dtype != object:
            ok = _accepts(values.dtype, type_list)
            return _Checked(ExpectationOutcome(kind, kw["column"], rule, ok, observed=str(values.dtype)))
        # object dtype: GX checks the type of every non-null value, and so do we.
        present = self.columns.present(kw["column"])
        wanted = _python_types(type_list)
        inferred = self.columns.inferred(kw["column"])
        if inferred == "empty":
            bad = np.zeros(self.n, dtype=bool)
        elif inferred == "string":
            bad = present if str not in wanted else np.zeros(self.n, dtype=bool)
        else:
            bad = present & ~values.map(lambda v: isinstance(v, wanted)).to_numpy(dtype=bool)
        checked = self._map_outcome(kind, kw, rule, bad, int(np.count_nonzero(present)), values)
        if wanted and not (set(type_list) - NUMERIC_TYPE_NAMES) and bad.any():
            # Numbers stored as text: name the values that are not numbers at all, and flag exactly those rows
            # (`repair_numbers` converts the rest back to numbers).
            not_numeric = present & numeric_or_nan(values).isna().to_numpy()
            checked.outcome.observed = f"object; {int(not_numeric.sum()):,} values are not numbers"
            checked.outcome.sample = _sample(values[not_numeric], self.sample_size) or checked.outcome.sample
            checked.rows = not_numeric
        return checked

    def _column_values_to_be_between(self, kw: dict[str, Any], rule: str) -> _Checked:
        raw = self.frame[kw["column"]]
        present = self.columns.present(kw["column"])
        lo, hi = kw.get("min_value"), kw.get("max_value")
        arr = self.columns.numbers(kw["column"])
        if arr is not None and all(bound is None or isinstance(bound, int | float) for bound in (lo, hi)):
            lo, hi = (None if bound is None else float(bound) for bound in (lo, hi))
            # Plain numbers: every value that is not NaN is present and a number, so a row breaks the rule
            # exactly when it is outside the bounds (NaN compares false both ways). Most batches are inside:
            # the column's min and max say so without a mask per bound.
            bad = np.zeros(self.n, dtype=bool)
            within = self.n == 0 or (
                (lo is None or bool(arr.min() >= lo)) and (hi is None or bool(arr.max() <= hi))
            )  # NaN in a float column makes min/max NaN: not known to be inside, so the masks decide
            if not within:
                with np.errstate(invalid="ignore"):
                    if lo is not None:
                        bad |= arr < lo
                    if hi is not None:
                        bad |= arr > hi
        else:
            values = numeric_or_nan(raw)
            number = values.notna().to_numpy()
            inside = np.ones(self.n, dtype=bool)
            floats = values.to_numpy(dtype="float64", na_value=np.nan)
            with np.errstate(invalid="ignore"):
                if lo is not None:
                    inside &= floats >= lo
                if hi is not None:
                    inside &= floats <= hi
            bad = present & ~(number & inside)
        kind, counted = "expect_column_values_to_be_between", int(np.count_nonzero(present))
        return self._map_outcome(kind, kw, rule, bad, counted, raw, missing=self.n - counted)

    def _column_values_to_be_in_set(self, kw: dict[str, Any], rule: str) -> _Checked:
        values = self.frame[kw["column"]]
        present = self.columns.present(kw["column"])
        bad = present & ~self.columns.in_set(kw["column"], list(kw["value_set"]))
        kind, counted = "expect_column_values_to_be_in_set", int(np.count_nonzero(present))
        return self._map_outcome(kind, kw, rule, bad, counted, values, missing=self.n - counted)

    def _compound_columns_to_be_unique(self, kw: dict[str, Any], rule: str) -> _Checked:
        kind, cols = "expect_compound_columns_to_be_unique", list(kw["column_list"])
        missing = [c for c in cols if c not in self.frame.columns]
        if missing:
            return _Checked(
                ExpectationOutcome(kind, ",".join(cols), rule, False, observed=f"columns missing: {missing}")
            )
        keys = self.frame[cols]
        counted = np.logical_or.reduce([self.columns.present(c) for c in cols])
        bad = counted & duplicated_rows(keys)
        checked = self._map_outcome(kind, kw, rule, bad, int(np.count_nonzero(counted)), keys.iloc[:, 0])
        checked.outcome.column = ",".join(cols)
        checked.outcome.sample = keys[bad].head(self.sample_size).astype(str).to_numpy().tolist()
        return checked

    def _column_max_to_be_between(self, kw: dict[str, Any], rule: str) -> _Checked:
        values = self.frame[kw["column"]]
        kind = "expect_column_max_to_be_between"
        newest = values.max() if len(values) else None
        if newest is None or pd.isna(newest):
            return _Checked(ExpectationOutcome(kind, kw["column"], rule, False, observed="no values"))
        lo, hi = kw.get("min_value"), kw.get("max_value")
        if isinstance(newest, pd.Timestamp):
            lo = _as_timestamp(lo, newest)
            hi = _as_timestamp(hi, newest)
        try:
            ok = (lo is None or newest >= lo) and (hi is None or newest <= hi)
        except TypeError:
            ok = False
        observed = newest.isoformat() if isinstance(newest, pd.Timestamp) else str(newest)
        return _Checked(ExpectationOutcome(kind, kw["column"], rule, bool(ok), observed=observed))


def evaluate_fast(
    frame: pd.DataFrame,
    suite: dict[str, Any],
    parameters: dict[str, str],
    sample_size: int,
    arrow: pa.Table | None = None,
) -> tuple[list[ExpectationOutcome], np.ndarray]:
    """Every expectation's outcome, and the mask of rows breaking a strict row-level rule. `arrow`: the table
    `frame` was converted from, if there is one (its text columns are read through arrow, `ColumnFacts`)."""
    evaluator = FastEvaluator(frame, parameters, sample_size, arrow)
    outcomes, bad_rows = [], np.zeros(len(frame), dtype=bool)
    for exp in suite["expectations"]:
        checked = evaluator.check(exp)
        outcomes.append(checked.outcome)
        if checked.rows is not None and checked.strict and exp["type"] in ROW_LEVEL_TYPES:
            bad_rows |= checked.rows
    return outcomes, bad_rows


def row_rules(
    frame: pd.DataFrame, suite: dict[str, Any], parameters: dict[str, str], arrow: pa.Table | None = None
) -> list[RuleRows]:
    """The row-level rules of `suite` on `frame`, each with the rows it flags (tolerated ones included, marked
    not strict), in suite order. Rules on columns the frame lacks flag no rows (they are batch-level failures).
    `arrow`: the table `frame` was converted from, if there is one."""
    evaluator = FastEvaluator(frame, parameters, sample_size=0, arrow=arrow)
    found = []
    for exp in suite["expectations"]:
        if exp["type"] not in ROW_LEVEL_TYPES:
            continue
        checked = evaluator.check(exp)
        if checked.rows is not None:
            o = checked.outcome
            found.append(RuleRows(o.expectation, o.column, o.rule, checked.strict, checked.rows))
    return found


def repair_numbers(frame: pd.DataFrame, suite: dict[str, Any]) -> pd.DataFrame:
    """Columns the suite types as numbers but that hold text are converted to numbers (run on rows that passed:
    the values that are not numbers at all were flagged by the type rule)."""
    for exp in suite["expectations"]:
        column = exp["kwargs"].get("column")
        types = exp["kwargs"].get("type_list") or []
        if (
            exp["type"] == "expect_column_values_to_be_in_type_list"
            and column in frame.columns
            and frame[column].dtype == object
            and types
            and set(types) <= NUMERIC_TYPE_NAMES
        ):
            frame = frame.assign(**{column: numeric_or_nan(frame[column])})
    return frame


def fast_supported(suite: dict[str, Any]) -> bool:
    return all(exp["type"] in FAST_TYPES for exp in suite["expectations"])
