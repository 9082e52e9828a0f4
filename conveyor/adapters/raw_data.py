"""Raw daily partitions on the object store: `<raw>/<dataset>/dt=YYYY-MM-DD/`, each published atomically.

This is where every flow's data comes from: the synthetic generator or a user's own files land here first.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from pathlib import Path

import pandas as pd

from configs.settings import DatasetConfig, Settings
from conveyor.adapters.object_store import Manifest, ObjectStore

log = logging.getLogger(__name__)


def raw_root(settings: Settings) -> str:
    """`<raw>/<dataset>/`: where the dataset's daily partitions live."""
    return f"{settings.storage.prefixes.raw}/{settings.dataset.name}/"


def raw_prefix(settings: Settings, day: dt.date) -> str:
    return f"{raw_root(settings)}dt={day.isoformat()}"


def publish_raw_partition(
    store: ObjectStore, settings: Settings, day: dt.date, frame: pd.DataFrame, run_id: str
) -> Manifest:
    """Replace the raw partition for `day` with `frame`, atomically."""
    with store.publication(raw_prefix(settings, day), run_id) as publication:
        publication.write_parquet("part-00000.parquet", frame)
        return publication.commit({"dataset": settings.dataset.name, "day": day.isoformat()})


def published_days(store: ObjectStore, settings: Settings) -> list[dt.date]:
    return [dt.date.fromisoformat(p.rsplit("dt=", 1)[1]) for p in store.published_prefixes(raw_root(settings))]


def read_raw_window(store: ObjectStore, settings: Settings, start: dt.date, end: dt.date) -> pd.DataFrame:
    """All published raw rows with partition day in [start, end]. Days never published are skipped."""
    days = [d for d in published_days(store, settings) if start <= d <= end]
    if not days:
        raise LookupError(
            f"no raw partitions of {settings.dataset.name!r} between {start} and {end} under "
            f"{store.uri(raw_root(settings))}"
        )
    frames = [store.read_published_parquet(raw_prefix(settings, d)) for d in days]
    return pd.concat(frames, ignore_index=True)


def read_source_files(path: str, store: ObjectStore | None = None) -> pd.DataFrame:
    """A user's own data: a parquet/CSV file or folder of them, local or `s3://<bucket>/<prefix>`."""
    if path.startswith("s3://"):
        if store is None:
            raise ValueError("reading s3:// sources needs an object store")
        bucket, _, prefix = path[len("s3://") :].partition("/")
        if bucket != store.bucket:
            raise ValueError(f"source.path {path!r}: bucket {bucket!r} is not storage.bucket {store.bucket!r}")
        keys = [k for k in store.list_keys(prefix) if k.endswith((".parquet", ".csv"))]
        frames = [
            store.get_parquet(k) if k.endswith(".parquet") else pd.read_csv(io.BytesIO(store.get_bytes(k)))
            for k in keys
        ]
    else:
        root = Path(path)
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        files = [f for f in files if f.suffix in (".parquet", ".csv")]
        frames = [pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_csv(f) for f in files]
    if not frames:
        raise FileNotFoundError(f"source.path {path!r}: no .parquet or .csv files found")
    return pd.concat(frames, ignore_index=True)


def split_by_day(frame: pd.DataFrame, dataset: DatasetConfig) -> dict[dt.date, pd.DataFrame]:
    """Cut a frame into daily partitions by its event timestamp (UTC)."""
    ts_col = dataset.timestamp_column
    if ts_col not in frame.columns:
        raise KeyError(f"column {ts_col!r} (dataset.timestamp_column) is not in the source data")
    stamps = pd.to_datetime(frame[ts_col], utc=True)
    frame = frame.assign(**{ts_col: stamps})
    return {day.date(): part.reset_index(drop=True) for day, part in frame.groupby(stamps.dt.floor("D"), sort=True)}
