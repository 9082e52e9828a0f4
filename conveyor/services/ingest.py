"""Landing raw data: the synthetic generator or the user's own files -> days of the raw Delta table on S3 (one
commit per day), each day checked against the raw suite *before* it is published.

A day that fails the suite goes to quarantine with its report and Data Docs page and is not published, so the
feature store, training and scoring never see it; every other day lands (`validation.mode: row`: only its bad
rows go). Files are read incrementally (conveyor/adapters/source_files.py) and spilled to local disk by day
(conveyor/adapters/day_staging.py): memory holds a batch or one day, never the history. A file that cannot be
read whole (empty, truncated, not parquet, a declared column missing) is quarantined as it is, and named; the
days are landed from the other files. Rows whose event time is missing or not a timestamp have no day: they are
quarantined together. Every row read ends up published or quarantined.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from configs.settings import Settings
from conveyor.adapters.day_staging import DayStaging
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import RawCommit, publish_raw_partition
from conveyor.adapters.source_files import SourceFileError, SourceRef, list_sources, local_copy, read_batches
from conveyor.demo.synthetic import Scenario, generate_day
from conveyor.domain.expectations import FILE_IS_READABLE, ExpectationOutcome
from conveyor.domain.source_types import RowOrigins, as_declared, conform, declared_columns, numeric_columns
from conveyor.services.quarantine import SourceFile
from conveyor.services.validation import DataValidationError, check_or_quarantine, reject_unread

NO_TIMESTAMP = "no-timestamp"  # the batch key of rows without an event time


@dataclass(frozen=True)
class Quarantined:
    """A batch ingest quarantined: a day (`whole`: none of it published; else its bad rows only), a source file,
    or the rows without an event time."""

    batch_key: str
    rows: int
    message: str  # the full account: every failed rule with its count, the files and rows, the quarantine URI
    quarantine_uri: str
    whole: bool = True
    reason: str = ""  # one line of it, for tables


@dataclass(frozen=True)
class LandedData:
    """What a landing step wrote: small enough to pass between tasks and show in the UI."""

    days: list[dt.date]
    rows: int  # rows published
    prefixes: list[str]  # each day's folder in the raw table
    table_version: int | None = None  # the raw table's version after the last day's commit
    quarantined: list[Quarantined] = field(default_factory=list)
    day_rows: list[int] = field(default_factory=list)  # rows published per day of `days`

    @property
    def rejected(self) -> list[Quarantined]:
        """Batches of which nothing was published."""
        return [q for q in self.quarantined if q.whole]


class IngestRejected(RuntimeError):
    """Some batches were quarantined instead of published; the rest landed (`landed`)."""

    def __init__(self, landed: LandedData) -> None:
        rejected = landed.rejected
        head = (
            f"{len(rejected)} batch(es) quarantined, not published: {', '.join(q.batch_key for q in rejected)}; "
            f"{len(landed.days)} day(s) landed ({landed.rows:,} rows)"
        )
        super().__init__("\n".join([head, *(q.message for q in rejected)]))
        self.landed = landed


def usable_landing(outcome: LandedData | BaseException) -> LandedData:
    """What the rest of a pipeline goes on with: the days that landed, even when others were quarantined."""
    if isinstance(outcome, IngestRejected) and outcome.landed.days:
        return outcome.landed
    if isinstance(outcome, BaseException):
        raise outcome
    if not outcome.days:
        raise LookupError("ingest landed no day: nothing to train or score")
    return outcome


@dataclass(frozen=True)
class _DayOutcome:
    commit: RawCommit | None
    quarantined: Quarantined | None


def _land_day(
    store: ObjectStore,
    settings: Settings,
    day: dt.date,
    frame: pd.DataFrame,
    run_id: str,
    landing: dict[str, Any],
    origins: RowOrigins | None = None,
    kept: list[SourceFile] | None = None,
) -> _DayOutcome:
    """Validate a day's rows; publish them (or, in row mode, the rows that passed), or quarantine the day."""
    frame = conform(frame, settings.dataset)
    key = day.isoformat()
    try:
        batch = check_or_quarantine(
            store,
            frame,
            "raw",
            settings,
            key,
            run_id,
            source_files=kept,
            origins=origins,
            announce=False,
            landing=landing,
        )
    except DataValidationError as exc:
        reason = "; ".join(o.describe() for o in exc.result.failed)
        return _DayOutcome(None, Quarantined(key, len(frame), str(exc), exc.quarantine_uri, reason=reason))
    commit = publish_raw_partition(store, settings, day, as_declared(batch.frame, settings.dataset), run_id)
    if not batch.rows_quarantined:
        return _DayOutcome(commit, None)
    assert batch.quarantine_uri is not None
    message = (
        f"day {key}: {batch.rows_quarantined:,} of {batch.rows_in:,} rows broke row-level rules and are quarantined "
        f"at {batch.quarantine_uri}; {batch.rows_passed:,} published"
    )
    reason = f"{batch.rows_quarantined:,} rows broke row-level rules; the other {batch.rows_passed:,} were published"
    return _DayOutcome(commit, Quarantined(key, batch.rows_quarantined, message, batch.quarantine_uri, False, reason))


def _landed(outcomes: list[_DayOutcome], refused: list[Quarantined]) -> LandedData:
    commits = [o.commit for o in outcomes if o.commit is not None]
    quarantined = refused + [o.quarantined for o in outcomes if o.quarantined is not None]
    return LandedData(
        [c.day for c in commits],
        sum(c.rows for c in commits),
        [c.prefix for c in commits],
        commits[-1].version if commits else None,
        quarantined,
        [c.rows for c in commits],
    )


def ingest_summary(landed: LandedData) -> str:
    """One line: what was published and what was not."""
    text = f"{landed.rows:,} rows in {len(landed.days)} daily partitions"
    if landed.rejected:
        text += f"; QUARANTINED, not published: {', '.join(q.batch_key for q in landed.rejected)}"
    partial = [q for q in landed.quarantined if not q.whole]
    if partial:
        text += f"; {sum(q.rows for q in partial):,} bad rows of {len(partial)} day(s) quarantined"
    return text


def ingest_table(landed: LandedData, store: ObjectStore) -> list[dict[str, Any]]:
    """A row per published day and per quarantined batch: the run's `ingest` artifact."""
    table: list[dict[str, Any]] = [
        {"batch": str(day), "status": "published", "rows": rows, "where": store.uri(prefix), "reason": ""}
        for day, rows, prefix in zip(landed.days, landed.day_rows, landed.prefixes, strict=True)
    ]
    table += [
        {
            "batch": q.batch_key,
            "status": "QUARANTINED" if q.whole else "bad rows quarantined",
            "rows": q.rows,
            "where": q.quarantine_uri,
            "reason": q.reason,
        }
        for q in landed.quarantined
    ]
    return sorted(table, key=lambda r: str(r["batch"]))


def land_synthetic(
    settings: Settings, store: ObjectStore, start: dt.date, days: int, scenario: Scenario, run_id: str
) -> LandedData:
    """Generate `days` daily partitions from `start`, validate each and publish it (replacing any earlier
    version) or quarantine it."""
    landing = {"kind": "synthetic", "scenario": scenario.model_dump(mode="json")}
    outcomes = []
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        frame = generate_day(day, settings.dataset, settings.generator, scenario)
        outcomes.append(_land_day(store, settings, day, frame, run_id, landing))
    return _landed(outcomes, [])


def land_files(
    settings: Settings, store: ObjectStore, path: str, run_id: str, days: set[dt.date] | None = None
) -> LandedData:
    """Read the user's files under `path` incrementally, split them into days by event time, and land each day
    (validated); `days`: only those days (re-landing), from every file."""
    sources = list_sources(path, store)
    names = [s.name for s in sources]
    landing = {"kind": "files", "path": path}
    if settings.ingest.staging_dir is not None:
        settings.ingest.staging_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="conveyor-ingest-", dir=settings.ingest.staging_dir))
    staging = DayStaging(root, settings.dataset.timestamp_column, names, settings.dataset.timezone)
    try:
        refused = [
            q for i, s in enumerate(sources) if (q := _stage(store, settings, staging, i, s, run_id, days, landing))
        ]
        if staging.has_unplaced():
            refused.append(_quarantine_unplaced(store, settings, staging, run_id, landing))
        outcomes = []
        for day in staging.days():
            frame, file_index, row = staging.read(day, numeric_columns(settings.dataset))
            origins = RowOrigins(tuple(names), file_index, row)
            kept = _kept_parts(staging, day)
            here = {**landing, "files": [name for name, _ in origins.counts()]}
            outcomes.append(_land_day(store, settings, day, frame, run_id, here, origins, kept))
    finally:
        staging.cleanup()
    return _landed(outcomes, refused)


def _kept_parts(staging: DayStaging, day: dt.date | None) -> list[SourceFile]:
    """A rejected day's rows as read (before any conversion), with `_source_file`/`_source_row`."""
    return [SourceFile(f"rows-{k:04d}.parquet", path=p) for k, p in enumerate(staging.part_files(day))]


def _stage(
    store: ObjectStore,
    settings: Settings,
    staging: DayStaging,
    index: int,
    source: SourceRef,
    run_id: str,
    days: set[dt.date] | None,
    landing: dict[str, Any],
) -> Quarantined | None:
    """Spill one file by day; a file that cannot be read to its end is quarantined whole (None: it was read)."""
    columns = declared_columns(settings.dataset)
    with local_copy(source, store) as local:
        try:
            for first_row, batch in read_batches(local, source, columns, settings.ingest.batch_rows):
                staging.add(index, first_row, batch, days)
        except SourceFileError as exc:
            staging.discard_file(index)
            return _quarantine_file(store, settings, exc, local, run_id, landing)
        staging.close_file(index)
    return None


def _quarantine_file(
    store: ObjectStore, settings: Settings, exc: SourceFileError, local: Path, run_id: str, landing: dict[str, Any]
) -> Quarantined:
    source = exc.source
    if exc.column:
        problem = ExpectationOutcome("expect_column_to_exist", exc.column, exc.rule, False)
        problem.observed = f"{exc.problem} ({source.name})"
    else:
        problem = ExpectationOutcome(FILE_IS_READABLE, source.name, exc.rule, False, observed=exc.problem)
    batch_key = f"file={source.name}"
    now = dt.datetime.now(dt.UTC)
    kept = [SourceFile(Path(source.name).name, path=local)]
    error = reject_unread(
        store, settings, "raw", batch_key, run_id, [problem], kept, now, landing={**landing, "files": [source.name]}
    )
    message = (
        f"{exc} (rule {exc.rule!r}): none of its rows landed (the days they belong to landed from the other files "
        f"without them); the file is quarantined at {error.quarantine_uri}"
    )
    return Quarantined(batch_key, 0, message, error.quarantine_uri, reason=str(exc))


def _quarantine_unplaced(
    store: ObjectStore, settings: Settings, staging: DayStaging, run_id: str, landing: dict[str, Any]
) -> Quarantined:
    """Rows whose event time is missing or not a timestamp: no day to land them in."""
    ts = settings.dataset.timestamp_column
    frame, file_index, row = staging.read(None, [])
    origins = RowOrigins(tuple(staging.files), file_index, row)
    values = frame[ts]
    missing = values.isna().to_numpy()
    problems = []
    if missing.any():
        problems.append(ExpectationOutcome("expect_column_values_to_not_be_null", ts, "not null", False))
        problems[-1].observed, problems[-1].where = f"{int(missing.sum()):,} nulls", origins.describe(missing)
    if (~missing).any():
        sample = values[~missing].astype(str).head(settings.validation.sample_size).tolist()
        problems.append(ExpectationOutcome("expect_column_values_to_be_of_type", ts, "type is Timestamp", False))
        problems[-1].observed = f"{int((~missing).sum()):,} values are not ISO 8601 timestamps"
        problems[-1].sample, problems[-1].where = sample, origins.describe(~missing)
    files = [name for name, _ in origins.counts()]
    error = reject_unread(
        store,
        settings,
        "raw",
        NO_TIMESTAMP,
        run_id,
        problems,
        _kept_parts(staging, None),
        dt.datetime.now(dt.UTC),
        len(frame),
        rows_quarantined=len(frame),
        landing={**landing, "files": files},
    )
    reason = "; ".join(o.describe() for o in problems)
    return Quarantined(NO_TIMESTAMP, len(frame), str(error), error.quarantine_uri, reason=reason)
