"""The data validation gate: every flow that reads data validates it first; a bad batch is kept, not dropped.

- `validate_frame` (pure): a DataFrame against a suite in configs/expectations/ -> `ValidationResult`.
- `check_or_quarantine` (the task `tasks.validation.validate_or_quarantine` wraps it): on failure writes the
  batch UNCHANGED plus `report.json` under
  `quarantine/<dataset>/<batch_key>/<run_id>/` and raises `DataValidationError` naming every failed
  expectation, column, rule, count and the quarantine URI. In row-level mode (`validation.mode: row`) rows
  breaking strict row-level rules go to quarantine and the rest go on: rows in = passed + quarantined.
- `validate_raw_partition` (task): validates a stored raw partition from its bytes, so an unreadable or empty
  file is caught too, and quarantines exactly those bytes.

Each validation leaves one Prefect markdown artifact: a one-line summary for a clean batch; the failed
expectations, quarantine URI and a link to the GX Data Docs page (built under `validation.docs_dir`) otherwise.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore, dataframe_to_parquet_bytes
from conveyor.adapters.prefect_runtime import publish_markdown, run_logger
from conveyor.adapters.raw_data import raw_day_files
from conveyor.domain.expectations import (
    ExpectationOutcome,
    SuiteName,
    ValidationResult,
    failure_message,
    load_suite,
    suite_parameters,
    summary_markdown,
)
from conveyor.domain.failures import DeterministicFailure, MissingFile
from conveyor.domain.parquet_batch import concat_batches, read_parquet_batch
from conveyor.domain.rule_engine import evaluate_fast, fast_supported, repair_numbers, row_rules
from conveyor.domain.source_types import RowOrigins, storable
from conveyor.services.quarantine import GxReport, SourceFile, write_quarantine

log = logging.getLogger(__name__)
_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?!.*\d{4}-\d{2}-\d{2})")


class DataValidationError(DeterministicFailure, RuntimeError):
    """A batch failed validation; it is in quarantine. The message says what broke, how often and where.
    Deterministic: never retried."""

    def __init__(self, message: str, result: ValidationResult, quarantine_uri: str) -> None:
        super().__init__(message)
        self.result = result
        self.quarantine_uri = quarantine_uri


@dataclass
class ValidatedBatch:
    """What goes on downstream: the rows to use, and the accounting (rows_in = rows_passed + rows_quarantined)."""

    frame: pd.DataFrame = field(repr=False)
    rows_in: int
    rows_passed: int
    rows_quarantined: int
    result: ValidationResult = field(repr=False)
    quarantine_uri: str | None = None
    docs_url: str | None = None


# ---- pure ----------------------------------------------------------------------------------------------------
def resolve_as_of(as_of: dt.datetime | dt.date | None, batch_key: str | None = None) -> dt.datetime:
    """The freshness reference time: `as_of`; else the end of the last YYYY-MM-DD day in `batch_key`; else now."""
    if isinstance(as_of, dt.datetime):
        return as_of if as_of.tzinfo else as_of.replace(tzinfo=dt.UTC)
    if isinstance(as_of, dt.date):
        day = as_of
    elif batch_key and (match := _DATE.search(batch_key)):
        day = dt.date.fromisoformat(match.group(1))
    else:
        return dt.datetime.now(dt.UTC)
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def validate_frame(
    frame: pd.DataFrame,
    suite: SuiteName,
    settings: Settings,
    as_of: dt.datetime | dt.date | None = None,
    batch_key: str | None = None,
    engine: str | None = None,
    arrow: pa.Table | None = None,
) -> ValidationResult:
    """Validate `frame` against configs/expectations/<suite>.json. Pure: no storage, no artifacts, no docs.

    Freshness is judged against `as_of` (see `resolve_as_of`). `engine` overrides `validation.engine`. `arrow`:
    the table `frame` was converted from, if any (the rule engine reads text columns through it).
    """
    when = resolve_as_of(as_of, batch_key)
    return _validate(frame, load_suite(settings, suite), settings, when, engine, arrow=arrow)[0]


def _validate(
    frame: pd.DataFrame,
    suite: dict[str, Any],
    settings: Settings,
    as_of: dt.datetime,
    engine: str | None = None,
    docs_batch: str | None = None,
    arrow: pa.Table | None = None,
) -> tuple[ValidationResult, Any, GxReport | None]:
    """(result, row mask of the vectorized engine or None, GX's report when GX decided). With `docs_batch`, GX
    also builds the Data Docs page of that batch (when `validation.build_docs`)."""
    started = time.perf_counter()
    params = suite_parameters(suite, as_of)
    engine = engine or settings.validation.engine
    sample = settings.validation.sample_size
    bad_rows, gx_report = None, None
    if engine == "fast" and fast_supported(suite):
        outcomes, bad_rows = evaluate_fast(frame, suite, params, sample, arrow)
    else:
        from conveyor.adapters.gx_validation import gx_validate

        engine = "gx"
        docs = settings.validation.docs_dir if docs_batch is not None and settings.validation.build_docs else None
        run = gx_validate(frame, suite, params, sample, docs, batch_name=_gx_batch_name(docs_batch or "batch"))
        outcomes, gx_report = run.outcomes, GxReport(run.describe, run.docs_url)
    result = ValidationResult(
        suite=str(suite.get("name")),
        passed=all(o.success for o in outcomes),
        row_count=len(frame),
        outcomes=outcomes,
        engine=engine,
        seconds=time.perf_counter() - started,
        as_of=as_of.isoformat(),
        parameters=params,
    )
    return result, bad_rows, gx_report


def _gx_batch_name(batch_key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", batch_key) or "batch"


def split_rows(frame: pd.DataFrame, bad_rows: Any, suite: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(passing rows, quarantined rows). Numbers stored as text are converted back to numbers in the passing
    rows: the rows that were not numbers at all are the quarantined ones."""
    passing, rejected = frame[~bad_rows], frame[bad_rows]
    return repair_numbers(passing, suite).reset_index(drop=True), rejected


# ---- quarantine ------------------------------------------------------------------------------------------------
def _gx_report(
    frame: pd.DataFrame, suite: dict[str, Any], result: ValidationResult, settings: Settings, batch_key: str
) -> GxReport:
    """GX's own report (and Data Docs page) for a batch the vectorized engine failed; a GX problem never hides
    the failure."""
    try:
        from conveyor.adapters.gx_validation import gx_validate

        docs = settings.validation.docs_dir if settings.validation.build_docs else None
        run = gx_validate(
            frame, suite, result.parameters, settings.validation.sample_size, docs, batch_name=_gx_batch_name(batch_key)
        )
        return GxReport(run.describe, run.docs_url)
    except Exception as exc:  # the report is a courtesy; the decision was already made
        log.warning("Great Expectations report for %s failed: %s", batch_key, exc)
        return GxReport({"error": f"{type(exc).__name__}: {exc}"})


def _artifact_key(settings: Settings, suite: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", f"validation-{settings.dataset.name}-{suite}".lower())


def _quarantine(
    store: ObjectStore,
    settings: Settings,
    suite: SuiteName,
    result: ValidationResult,
    batch_key: str,
    run_id: str,
    files: list[SourceFile],
    gx: GxReport | None = None,
    row_level: bool = False,
    **report: Any,
) -> str:
    """Keep `files` under the batch's quarantine prefix with its report (`quarantine.write_quarantine`); log the
    summary and leave it as an artifact. Returns the quarantine URI. `row_level`: only the rows in `files` were
    rejected and the rest went on (a warning, not an error)."""
    gx = gx or GxReport()
    uri, docs_uri = write_quarantine(store, settings, result, batch_key, run_id, files, gx, **report)
    summary = summary_markdown(
        result,
        batch_key,
        uri,
        gx.docs_url,
        docs_uri=docs_uri,
        rows_quarantined=report["rows_quarantined"] if row_level else 0,
    )
    run_logger(log).log(logging.WARNING if row_level else logging.ERROR, summary)
    publish_markdown(summary, _artifact_key(settings, suite), f"data validation ({suite})")
    return uri


def locate(result: ValidationResult, frame: pd.DataFrame, suite: dict[str, Any], origins: RowOrigins) -> None:
    """Name the files and rows behind each failed row-level expectation (`ExpectationOutcome.where`)."""
    flagged = {(r.expectation, r.column): r.rows for r in row_rules(frame, suite, result.parameters)}
    for outcome in result.failed:
        rows = flagged.get((outcome.expectation, outcome.column))
        if rows is not None and rows.any():
            outcome.where = origins.describe(rows)


def _quarantine_bad_rows(
    store: ObjectStore,
    frame: pd.DataFrame,
    suite: SuiteName,
    suite_json: dict[str, Any],
    settings: Settings,
    result: ValidationResult,
    bad_rows: Any,
    gx: GxReport,
    batch_key: str,
    run_id: str,
    origins: RowOrigins | None = None,
    **report: Any,
) -> ValidatedBatch | None:
    """Row-level mode: quarantine the rows breaking strict row-level rules and let the rest go on, if the rest
    passes the whole suite; None when it does not (the whole batch is then rejected)."""
    if bad_rows is None:  # the GX engine decided; the row mask is always the rule engine's
        _, bad_rows = evaluate_fast(frame, suite_json, result.parameters, 0)
    if not bad_rows.any():
        return None
    passing, rejected = split_rows(frame, bad_rows, suite_json)
    rest, _, _ = _validate(passing, suite_json, settings, dt.datetime.fromisoformat(result.as_of))
    if not rest.passed:
        return None
    if origins is not None:  # each rejected row says where it was read
        rejected = rejected.assign(**origins.take(bad_rows).columns())
    files = [SourceFile("rows.parquet", dataframe_to_parquet_bytes(storable(rejected)))]
    counts = {"rows_in": len(frame), "rows_passed": len(passing), "rows_quarantined": len(rejected)}
    uri = _quarantine(store, settings, suite, result, batch_key, run_id, files, gx, True, **counts, **report)
    return ValidatedBatch(passing, len(frame), len(passing), len(rejected), rest, uri, gx.docs_url)


def check_or_quarantine(
    store: ObjectStore,
    frame: pd.DataFrame,
    suite: SuiteName,
    settings: Settings,
    batch_key: str,
    run_id: str,
    as_of: dt.datetime | dt.date | None = None,
    source_files: list[SourceFile] | None = None,
    arrow: pa.Table | None = None,
    origins: RowOrigins | None = None,
    announce: bool = True,
    **report: Any,
) -> ValidatedBatch:
    """The logic of `validate_or_quarantine`, with the object store passed in (tests call this).

    `source_files`: what quarantine keeps of a rejected batch (default: the batch as parquet); `origins`: the
    file and row of each row, named in the message; `announce=False`: a passing batch leaves no log line or
    artifact of its own (ingest reports its days in one table); `report`: more fields for report.json; `arrow`:
    the table `frame` was converted from, if any."""
    suite_json = load_suite(settings, suite)
    when = resolve_as_of(as_of, batch_key)
    result, bad_rows, gx = _validate(frame, suite_json, settings, when, docs_batch=batch_key, arrow=arrow)
    if result.passed:
        if announce:
            run_logger(log).info(summary_markdown(result, batch_key))
            publish_markdown(
                summary_markdown(result, batch_key), _artifact_key(settings, suite), f"data validation ({suite})"
            )
        return ValidatedBatch(frame, len(frame), len(frame), 0, result)

    if origins is not None:
        locate(result, frame, suite_json, origins)
    gx = gx or _gx_report(frame, suite_json, result, settings, batch_key)
    if settings.validation.mode == "row":
        batch = _quarantine_bad_rows(
            store, frame, suite, suite_json, settings, result, bad_rows, gx, batch_key, run_id, origins, **report
        )
        if batch is not None:
            return batch

    files = source_files or [SourceFile("batch.parquet", dataframe_to_parquet_bytes(storable(frame)))]
    counts: dict[str, Any] = {"rows_in": len(frame), "rows_passed": 0, "rows_quarantined": len(frame)}
    uri = _quarantine(store, settings, suite, result, batch_key, run_id, files, gx, **counts, **report)
    raise DataValidationError(failure_message(result, batch_key, uri, origins), result, uri)


def _unreadable(name: str, rule: str, detail: str) -> ExpectationOutcome:
    return ExpectationOutcome("conveyor_file_is_readable_parquet", name, rule, False, observed=detail)


def check_stored_partition(
    store: ObjectStore,
    settings: Settings,
    prefix: str,
    suite: SuiteName,
    run_id: str,
    as_of: dt.datetime | dt.date | None = None,
) -> ValidatedBatch:
    """Validate a stored day of the raw table from the bytes of the files its latest commit lists; unreadable
    files are rejected and kept byte for byte."""
    batch_key = prefix.rstrip("/").rsplit("/", 1)[-1].removeprefix("dt=")
    files: list[SourceFile] = []
    problems: list[ExpectationOutcome] = []
    batches = []
    keys = raw_day_files(store, settings, dt.date.fromisoformat(batch_key))
    if not keys:
        raise MissingFile(f"nothing committed at {store.uri(prefix)}: the raw table holds no rows of that day")
    for key in keys:
        data = store.get_bytes(key)
        name = key.rsplit("/", 1)[-1]
        files.append(SourceFile(name, data))
        try:
            batches.append(read_parquet_batch(data))
        except Exception as exc:  # pyarrow raises several types for broken files
            detail = "empty file (0 bytes)" if not data else f"{type(exc).__name__}: {exc}"
            problems.append(_unreadable(name, "readable parquet file", detail))
    if not problems:
        frame, arrow = concat_batches(batches)
        return check_or_quarantine(
            store, frame, suite, settings, batch_key, run_id, as_of, source_files=files, arrow=arrow
        )

    raise reject_unread(
        store,
        settings,
        suite,
        batch_key,
        run_id,
        problems,
        files,
        resolve_as_of(as_of, batch_key),
        source=store.uri(prefix),
    )


def reject_unread(
    store: ObjectStore,
    settings: Settings,
    suite: SuiteName,
    batch_key: str,
    run_id: str,
    problems: list[ExpectationOutcome],
    files: list[SourceFile],
    as_of: dt.datetime,
    row_count: int = 0,
    **report: Any,
) -> DataValidationError:
    """Quarantine a batch that could not be read into rows the suite can judge, with `problems` as its failed
    expectations; returns the error to raise."""
    result = ValidationResult(
        suite=f"{settings.dataset.name}_{suite}",
        passed=False,
        row_count=row_count,
        outcomes=problems,
        engine="read",
        seconds=0.0,
        as_of=as_of.isoformat(),
    )
    uri = _quarantine(store, settings, suite, result, batch_key, run_id, files, **report)
    return DataValidationError(failure_message(result, batch_key, uri), result, uri)
