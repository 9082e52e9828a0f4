"""Landing raw data: the synthetic generator or the user's own files -> daily raw partitions on S3."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact

from configs.settings import Settings
from tasks.object_store import ObjectStore
from tasks.raw_data import publish_raw_partition, raw_root, read_source_files, split_by_day
from tasks.synthetic import Scenario, generate_day


@dataclass(frozen=True)
class LandedData:
    """What a landing step wrote: small enough to pass between tasks and show in the UI."""

    days: list[dt.date]
    rows: int
    prefixes: list[str]


def land_synthetic(
    settings: Settings, store: ObjectStore, start: dt.date, days: int, scenario: Scenario, run_id: str
) -> LandedData:
    """Generate `days` daily partitions from `start` and publish each one (replacing any earlier version)."""
    landed_days, prefixes, rows = [], [], 0
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        frame = generate_day(day, settings.dataset, settings.generator, scenario)
        manifest = publish_raw_partition(store, settings, day, frame, run_id)
        landed_days.append(day)
        prefixes.append(manifest.prefix)
        rows += len(frame)
    return LandedData(landed_days, rows, prefixes)


def land_files(settings: Settings, store: ObjectStore, path: str, run_id: str) -> LandedData:
    """Split the user's own files into daily partitions by event timestamp and publish them."""
    frames = split_by_day(read_source_files(path, store), settings.dataset)
    prefixes = [publish_raw_partition(store, settings, day, frame, run_id).prefix for day, frame in frames.items()]
    return LandedData(list(frames), sum(len(f) for f in frames.values()), prefixes)


@task(name="land-raw-data", retries=2, retry_delay_seconds=5)
def land_raw_data(settings: Settings, start: dt.date, days: int, scenario: Scenario, run_id: str) -> LandedData:
    """Land the configured source into raw partitions (synthetic window, or the user's files)."""
    store = ObjectStore(settings.storage)
    source = settings.dataset.source
    if source.kind == "files":
        assert source.path is not None  # guaranteed by DataSource validation
        landed = land_files(settings, store, source.path, run_id)
    else:
        landed = land_synthetic(settings, store, start, days, scenario, run_id)
    get_run_logger().info(
        "landed %d rows in %d daily partitions under %s",
        landed.rows,
        len(landed.days),
        store.uri(raw_root(settings)),
    )
    # What the run landed, listed on the run's Artifacts tab in the UI.
    create_table_artifact(
        key="ingest",
        description=f"{landed.rows} rows in {len(landed.days)} daily partitions",
        table=[
            {"day": str(day), "partition": store.uri(prefix)}
            for day, prefix in zip(landed.days, landed.prefixes, strict=True)
        ],
    )
    return landed
