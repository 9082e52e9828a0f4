"""Landing raw data: the synthetic generator or the user's own files -> days of the raw Delta table on S3
(one commit per day)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import publish_raw_partition, read_source_files, split_by_day
from conveyor.demo.synthetic import Scenario, generate_day


@dataclass(frozen=True)
class LandedData:
    """What a landing step wrote: small enough to pass between tasks and show in the UI."""

    days: list[dt.date]
    rows: int
    prefixes: list[str]  # each day's folder in the raw table
    table_version: int | None = None  # the raw table's version after the last day's commit


def land_synthetic(
    settings: Settings, store: ObjectStore, start: dt.date, days: int, scenario: Scenario, run_id: str
) -> LandedData:
    """Generate `days` daily partitions from `start` and publish each one (replacing any earlier version)."""
    landed_days, prefixes, rows = [], [], 0
    version: int | None = None
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        frame = generate_day(day, settings.dataset, settings.generator, scenario)
        commit = publish_raw_partition(store, settings, day, frame, run_id)
        landed_days.append(day)
        prefixes.append(commit.prefix)
        version = commit.version
        rows += len(frame)
    return LandedData(landed_days, rows, prefixes, version)


def land_files(settings: Settings, store: ObjectStore, path: str, run_id: str) -> LandedData:
    """Split the user's own files into daily partitions by event timestamp and publish them."""
    frames = split_by_day(read_source_files(path, store), settings.dataset)
    commits = [publish_raw_partition(store, settings, day, frame, run_id) for day, frame in frames.items()]
    version = commits[-1].version if commits else None
    return LandedData(list(frames), sum(len(f) for f in frames.values()), [c.prefix for c in commits], version)
