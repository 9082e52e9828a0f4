"""Re-landing a batch `ingest` quarantined, once its source is fixed (`conveyor data reland`).

A day is landed again from every source file (the rows of one day may be spread over several); a file that
could not be read, or rows that had no event time, are landed again by the days the fixed file now holds. The
batch is validated like any other: when it passes, its quarantine entries are marked resolved; when it fails
again, it is quarantined again (a new entry) and the old ones stay.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.source_files import list_sources, local_copy, read_batches
from conveyor.demo.synthetic import Scenario
from conveyor.domain.source_types import parse_timestamps
from conveyor.services.ingest import LandedData, land_files, land_synthetic
from conveyor.services.quarantine import QuarantinedBatch, mark_resolved


@dataclass(frozen=True)
class Relanded:
    batch_key: str
    landed: LandedData
    resolved: bool  # nothing of the batch was refused this time


def _day(batch_key: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(batch_key)
    except ValueError:
        return None


def source_days(settings: Settings, store: ObjectStore, path: str, names: list[str]) -> set[dt.date]:
    """The days the rows of the named source files fall on (reading only their timestamp column)."""
    ts = settings.dataset.timestamp_column
    found: set[dt.date] = set()
    for source in (s for s in list_sources(path, store) if s.name in names):
        with local_copy(source, store) as local:
            for _, batch in read_batches(local, source, [ts], settings.ingest.batch_rows):
                stamps = parse_timestamps(batch.column(0).to_pandas(), settings.dataset.timezone).dropna()
                found.update(stamps.dt.date.unique())
    return found


def reland(
    settings: Settings,
    store: ObjectStore,
    batches: list[QuarantinedBatch],
    run_id: str,
    source_path: str | None = None,
) -> Relanded:
    """Land the batch the quarantine entries `batches` (all of one batch key) hold, from its source again."""
    key, landing = batches[0].batch_key, batches[0].landing
    if landing is None:
        raise ValueError(
            f"batch {batches[0].batch_id!r} was refused by a later stage's gate, not by ingest: fix the raw data "
            "and re-run that flow (or `conveyor data drop` it)"
        )
    day = _day(key)
    if landing.get("kind") == "synthetic":
        if day is None:
            raise ValueError(f"batch {key!r}: not a day of the synthetic source")
        # The faults came from the run's scenario: the fixed source is the clean generator.
        landed = land_synthetic(settings, store, day, 1, Scenario(), run_id)
    else:
        path = source_path or str(landing["path"])
        days = {day} if day is not None else source_days(settings, store, path, list(landing.get("files") or []))
        if not days:
            raise LookupError(f"batch {key!r}: its files {landing.get('files')} hold no rows with a timestamp")
        landed = land_files(settings, store, path, run_id, days)
    refused = {q.batch_key for q in landed.rejected}
    resolved = key not in refused and (day is None or day in landed.days)
    if resolved:
        for batch in batches:
            mark_resolved(store, batch, action="relanded", run_id=run_id, days=[str(d) for d in landed.days])
    return Relanded(key, landed, resolved)
