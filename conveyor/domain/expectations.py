"""Expectation suites (GX 1.x JSON in configs/expectations/): generation, loading, run-time parameters, the
result types every engine reports in, and the messages and summaries made from them.

The JSON suites are the source of truth at run time. `default_suite` regenerates them from dataset.yaml (the
`conveyor validation init-suites` command); a user with their own dataset edits configs/ only. The suites are
decided by one rule engine (conveyor/domain/rule_engine.py) wherever a rule runs: raw validation, row-level
quarantine and the scoring row checks; Great Expectations renders the reports and Data Docs.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from configs.settings import DatasetConfig, FeatureSpec, Settings, ValidationConfig
from conveyor.domain.failures import InvalidInput, MissingFile
from conveyor.domain.source_types import RowOrigins

SuiteName = Literal["raw", "scoring"]
FILE_IS_READABLE = "conveyor_file_is_readable"  # not an expectation: a file that could not be read into rows
FRESHNESS_PARAMETER = "freshness_min_timestamp"

# dtype names accepted per declared feature dtype. Nullable integer columns arrive from pandas/parquet as float64.
# Categorical features get no type rule: their allowed set constrains them fully, and GX 1.24's type check
# rejects pandas `category` columns whatever the type list says (tests/unit/test_validation.py).
_TYPE_LISTS: dict[str, list[str]] = {
    "int64": ["int64", "Int64", "int32", "float64"],
    "float64": ["float64", "float32", "Float64", "int64", "Int64", "int32"],
    "bool": ["bool", "BooleanDtype"],
}
# A string key gets no type rule, as categories: ingest and scoring bring it to text (source_types.conform).
_ENTITY_TYPES = {"int64": ["int64", "Int64", "int32"]}
# A binary 0/1 label may arrive as floats 1.0/0.0 (a parquet column with nulls upstream, a CSV read as float).
_LABEL_TYPES = ["int64", "Int64", "int32", "bool", "float64", "Float64"]
_FLOAT_MAX = 1.7976931348623157e308  # regression labels: between -max and +max is "a finite number"


# ---- suites ------------------------------------------------------------------------------------------------
def _expectation(kind: str, meta: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": meta or {}, "severity": "critical"}


def _feature_expectations(spec: FeatureSpec, config: ValidationConfig) -> list[dict[str, Any]]:
    col = spec.name
    found = (
        [
            _expectation("expect_column_values_to_be_in_type_list", column=col, type_list=_TYPE_LISTS[spec.dtype]),
        ]
        if spec.dtype in _TYPE_LISTS
        else []
    )
    null_share = config.max_null_share if spec.max_null_share is None else spec.max_null_share
    tolerance: dict[str, Any] = {"mostly": round(1 - null_share, 6)} if null_share else {}
    found.append(_expectation("expect_column_values_to_not_be_null", column=col, **tolerance))
    if spec.is_numeric and (spec.min is not None or spec.max is not None):
        found.append(
            _expectation("expect_column_values_to_be_between", column=col, min_value=spec.min, max_value=spec.max)
        )
    if spec.dtype == "category" and spec.categories:
        found.append(_expectation("expect_column_values_to_be_in_set", column=col, value_set=list(spec.categories)))
    return found


def label_expectations(dataset: DatasetConfig) -> list[dict[str, Any]]:
    """The raw suite's rules on the label, per `dataset.task`: never null, and binary 0/1 (ints, floats 1.0/0.0
    or bool; with named classes, no set rule: the other class is not declared, training checks there are two),
    multiclass one of `dataset.classes` when declared (as text, or as the integers they spell), regression a
    finite number."""
    label = dataset.label_column
    found = [_expectation("expect_column_values_to_not_be_null", column=label)]
    if dataset.task == "binary" and dataset.positive_class is None:
        found.insert(0, _expectation("expect_column_values_to_be_in_type_list", column=label, type_list=_LABEL_TYPES))
        found.append(_expectation("expect_column_values_to_be_in_set", column=label, value_set=[0, 1]))
    elif dataset.task == "multiclass" and dataset.classes:
        spelled = [int(c) for c in dataset.classes if c.lstrip("-").isdigit()]
        values: list[Any] = [*dataset.classes, *spelled]
        found.append(_expectation("expect_column_values_to_be_in_set", column=label, value_set=values))
    elif dataset.task == "regression":
        found.insert(
            0, _expectation("expect_column_values_to_be_in_type_list", column=label, type_list=_TYPE_LISTS["float64"])
        )
        found.append(
            _expectation(
                "expect_column_values_to_be_between", column=label, min_value=-_FLOAT_MAX, max_value=_FLOAT_MAX
            )
        )
    return found


def default_suite(dataset: DatasetConfig, config: ValidationConfig, name: SuiteName) -> dict[str, Any]:
    """The default suite for `dataset` as GX 1.x suite JSON: training rows ('raw') or scoring inputs."""
    keys, ts, label = dataset.entity_columns, dataset.timestamp_column, dataset.label_column
    columns = [*keys, ts, *dataset.feature_names] + ([label] if name == "raw" else [])
    expectations = [
        _expectation("expect_table_row_count_to_be_between", min_value=config.min_rows, max_value=config.max_rows)
    ]
    expectations += [_expectation("expect_column_to_exist", column=c) for c in columns]
    for key, dtype in dataset.key_dtypes.items():
        if dtype in _ENTITY_TYPES:
            expectations.append(
                _expectation("expect_column_values_to_be_in_type_list", column=key, type_list=_ENTITY_TYPES[dtype])
            )
    expectations += [_expectation("expect_column_values_to_not_be_null", column=key) for key in keys]
    expectations += [
        _expectation("expect_column_values_to_be_of_type", column=ts, type_="Timestamp"),
        _expectation("expect_column_values_to_not_be_null", column=ts),
    ]
    for spec in dataset.features:
        expectations += _feature_expectations(spec, config)
    if name == "raw":
        expectations += label_expectations(dataset)
    expectations += [
        _expectation("expect_compound_columns_to_be_unique", column_list=[*keys, ts]),
        _expectation(
            "expect_column_max_to_be_between",
            meta={"max_age_hours": config.max_age_hours},
            column=ts,
            min_value={"$PARAMETER": FRESHNESS_PARAMETER},
        ),
    ]
    what = "training rows" if name == "raw" else "scoring inputs"
    return {
        "name": f"{dataset.name}_{name}",
        "expectations": expectations,
        "meta": {
            "great_expectations_version": "1.24.1",
            "conveyor": f"{what} of dataset {dataset.name!r}; generated from configs/dataset.yaml by "
            "`conveyor validation init-suites`, then yours to edit",
        },
        "notes": None,
    }


def suite_path(settings: Settings, name: SuiteName) -> Path:
    return settings.validation.suites_dir / f"{name}.json"


def write_default_suites(settings: Settings, overwrite: bool = False) -> list[Path]:
    """(Re)generate raw.json and scoring.json from dataset.yaml; existing files are kept unless `overwrite`."""
    written = []
    settings.validation.suites_dir.mkdir(parents=True, exist_ok=True)
    for name in ("raw", "scoring"):
        path = suite_path(settings, name)  # type: ignore[arg-type]
        if path.exists() and not overwrite:
            continue
        suite = default_suite(settings.dataset, settings.validation, name)  # type: ignore[arg-type]
        path.write_text(json.dumps(suite, indent=2) + "\n")
        written.append(path)
    return written


def load_suite(settings: Settings, name: SuiteName) -> dict[str, Any]:
    path = suite_path(settings, name)
    if not path.exists():
        raise MissingFile(f"expectation suite {path} not found: run `conveyor validation init-suites`")
    try:
        suite: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"expectation suite {path}: not valid JSON: {exc}") from None
    if not isinstance(suite.get("expectations"), list):
        raise InvalidInput(f"expectation suite {path}: no 'expectations' list")
    return suite


def suite_parameters(suite: dict[str, Any], as_of: dt.datetime) -> dict[str, str]:
    """Run-time values of the suite's `$PARAMETER`s: the freshness bound is `as_of` minus its max_age_hours."""
    params: dict[str, str] = {}
    for exp in suite["expectations"]:
        bound = exp["kwargs"].get("min_value")
        if isinstance(bound, dict) and bound.get("$PARAMETER") == FRESHNESS_PARAMETER:
            hours = float(exp.get("meta", {}).get("max_age_hours", 36))
            params[FRESHNESS_PARAMETER] = (as_of - dt.timedelta(hours=hours)).isoformat()
    return params


# ---- results -----------------------------------------------------------------------------------------------
@dataclass
class ExpectationOutcome:
    """One expectation's verdict on one batch."""

    expectation: str
    column: str | None
    rule: str
    success: bool
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    element_count: int | None = None
    observed: str | None = None
    sample: list[Any] = field(default_factory=list)
    where: str | None = None  # the files and rows the flagged values came from, when known

    def describe(self) -> str:
        """One line: `column 'age': 17 of 359 values (4.74%) break 'between 18 and 100' (ExpectColumn...)`."""
        where = f"column {self.column!r}" if self.column else "table"
        if self.expectation.startswith(FILE_IS_READABLE):
            where = f"file {self.column!r}"
        if self.unexpected_count is not None and self.element_count is not None:
            pct = f" ({self.unexpected_percent:.2f}%)" if self.unexpected_percent is not None else ""
            what = f"{self.unexpected_count:,} of {self.element_count:,} values{pct} break {self.rule!r}"
        else:
            what = f"breaks {self.rule!r}"
        if self.observed is not None:
            what += f", observed {self.observed}"
        if self.sample:
            what += f", e.g. {self.sample[:3]}"
        located = f"; rows: {self.where}" if self.where else ""
        return f"{where}: {what} ({camel(self.expectation)}){located}"


def camel(expectation_type: str) -> str:
    return "".join(part.title() for part in expectation_type.split("_"))


@dataclass
class ValidationResult:
    """The decision on one batch, with everything a person needs to act on it."""

    suite: str
    passed: bool
    row_count: int
    outcomes: list[ExpectationOutcome]
    engine: str
    seconds: float
    as_of: str
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


def rule_text(kind: str, kw: dict[str, Any]) -> str:
    mostly = f" (mostly {kw['mostly']})" if kw.get("mostly") is not None else ""
    if kind == "expect_column_to_exist":
        return "column exists"
    if kind == "expect_column_values_to_be_in_type_list":
        return f"type in {kw.get('type_list')}"
    if kind == "expect_column_values_to_be_of_type":
        return f"type is {kw.get('type_')}"
    if kind == "expect_column_values_to_not_be_null":
        return "not null" + mostly
    if kind == "expect_column_values_to_be_between":
        return f"between {kw.get('min_value')} and {kw.get('max_value')}" + mostly
    if kind == "expect_column_values_to_be_in_set":
        return f"in {list(kw.get('value_set', []))}" + mostly
    if kind == "expect_compound_columns_to_be_unique":
        return f"({', '.join(kw['column_list'])}) unique"
    if kind == "expect_table_row_count_to_be_between":
        return f"row count between {kw.get('min_value')} and {kw.get('max_value')}"
    if kind == "expect_column_max_to_be_between":
        lo, hi = kw.get("min_value"), kw.get("max_value")
        parts = ([f"newest >= {lo}"] if lo is not None else []) + ([f"newest <= {hi}"] if hi is not None else [])
        return " and ".join(parts) or "any newest value"
    return kind.removeprefix("expect_").replace("_", " ") + mostly


# ---- messages ----------------------------------------------------------------------------------------------
def failure_message(
    result: ValidationResult, batch_key: str, quarantine_uri: str, origins: RowOrigins | None = None
) -> str:
    """One message: each failed expectation with its column, rule, count (and the files and rows it flagged,
    when known), then where the batch went."""
    failed = result.failed
    lines = [
        f"batch {batch_key!r} failed validation suite {result.suite!r}: {len(failed)} of "
        f"{len(result.outcomes)} expectations failed on {result.row_count:,} rows"
    ]
    if origins is not None:
        lines[0] += " read from " + ", ".join(f"{name} ({rows:,} rows)" for name, rows in origins.counts())
    lines += [f"  - {o.describe()}" for o in failed]
    lines.append(f"batch quarantined at {quarantine_uri} (report.json holds the full report)")
    return "\n".join(lines)


def summary_markdown(
    result: ValidationResult,
    batch_key: str,
    quarantine_uri: str | None = None,
    docs_url: str | None = None,
    rows_quarantined: int = 0,
    docs_uri: str | None = None,
) -> str:
    head = (
        f"**{result.suite}** `{batch_key}`: {result.row_count:,} rows, "
        f"{len(result.outcomes) - len(result.failed)}/{len(result.outcomes)} expectations passed "
        f"({result.engine}, {result.seconds * 1000:.0f} ms)"
    )
    if result.passed and not rows_quarantined:
        return "PASSED " + head
    lines = [("PASSED with rows quarantined " if result.passed else "FAILED ") + head, ""]
    if rows_quarantined:
        lines += [
            f"{rows_quarantined:,} rows broke row-level rules and were quarantined; "
            f"{result.row_count - rows_quarantined:,} went on.",
            "",
        ]
    lines += [
        "| expectation | column | rule | unexpected | % | observed | sample | rows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in result.failed:
        pct = "" if o.unexpected_percent is None else f"{o.unexpected_percent:.2f}"
        count = "" if o.unexpected_count is None else f"{o.unexpected_count:,}"
        cells = [camel(o.expectation), o.column or "(table)", o.rule, count, pct, o.observed or ""]
        cells += [str(o.sample[:3]), o.where or ""]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if quarantine_uri:
        lines += ["", f"Quarantine: `{quarantine_uri}`"]
    if docs_url:
        lines += [f"Data Docs: [{docs_url}]({docs_url})" + (f", a copy at `{docs_uri}`" if docs_uri else "")]
    return "\n".join(lines)
