"""The monitoring history on the object store (called by tasks/monitoring.py): one published partition per judged
day, the dashboard rebuilt from all of them, presigned links for what the Prefect artifacts point to.

- table: `reports/monitoring/<model>/table/dt=<day>/` (parquet, published atomically with a manifest: a rerun
  or a backfill of a day replaces that day's rows in one PUT);
- dashboard: `reports/monitoring/<model>/dashboard.html`;
- volume and quarantine: the scoring manifest's row counts, and the ingest batches quarantined in the window.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import Publication, published_prefixes, read_manifest, read_published_parquet
from conveyor.domain import drift
from conveyor.domain.monitoring_dashboard import render_dashboard
from conveyor.domain.monitoring_history import COLUMNS, DataVolume, judgement_rows
from conveyor.services.quarantine import list_quarantined
from conveyor.services.scoring import predictions_prefix

JUDGEMENT_FILE = "judgement.parquet"


def monitoring_root(settings: Settings, model_name: str) -> str:
    return f"{settings.storage.prefixes.reports}/monitoring/{model_name}"


def table_prefix(settings: Settings, model_name: str, day: str) -> str:
    return f"{monitoring_root(settings, model_name)}/table/dt={day}"


def dashboard_key(settings: Settings, model_name: str) -> str:
    return f"{monitoring_root(settings, model_name)}/dashboard.html"


def scored_days(store: ObjectStore, settings: Settings, model_name: str, start: dt.date, end: dt.date) -> list[dt.date]:
    """Days in [start, end] with published predictions: what a backfill judges, one window each."""
    root = f"{settings.storage.prefixes.predictions}/{model_name}/"
    days = [dt.date.fromisoformat(p.rsplit("dt=", 1)[1]) for p in published_prefixes(store, root) if "dt=" in p]
    return sorted(d for d in days if start <= d <= end)


def quarantined_batches(store: ObjectStore, settings: Settings, start: dt.date, end: dt.date) -> list[dict[str, str]]:
    """Unresolved ingest batches quarantined in [start, end] (by when), with their Data Docs key if published."""
    found = []
    for batch in list_quarantined(store, settings):
        created = str(batch.report.get("created_at", ""))[:10]
        if start.isoformat() <= created <= end.isoformat():
            docs = batch.report.get("data_docs_published")
            found.append(
                {"batch": batch.batch_id, "prefix": batch.prefix, "data_docs_key": store.key_of(docs) if docs else ""}
            )
    return found


def data_volume(
    store: ObjectStore, settings: Settings, report: drift.DriftReport, feature_rows: int, quarantined: int
) -> DataVolume:
    day = dt.date.fromisoformat(report.window_end)
    manifest = read_manifest(store, predictions_prefix(settings, report.model_name, day))
    counts = (manifest.metadata.get("counts") or {}) if manifest is not None else {}
    return DataVolume(feature_rows, counts.get("scored"), counts.get("quarantined"), quarantined)


def append_judgement(
    store: ObjectStore,
    settings: Settings,
    report: drift.DriftReport,
    volume: DataVolume,
    outputs: np.ndarray | pd.DataFrame,
    run_id: str,
) -> str:
    """Publish the judgement's rows as the day's partition of the monitoring table; returns its URI."""
    prefix = table_prefix(settings, report.model_name, report.window_end)
    with Publication(store, prefix, run_id) as publication:
        publication.write_parquet(JUDGEMENT_FILE, judgement_rows(report, volume, outputs))
        publication.commit({"model": report.model_name, "day": report.window_end, "verdict": report.verdict})
    return store.uri(prefix + "/")


def read_history(store: ObjectStore, settings: Settings, model_name: str) -> pd.DataFrame:
    """Every judged day of the model, oldest first."""
    prefixes = published_prefixes(store, f"{monitoring_root(settings, model_name)}/table/")
    frames = [read_published_parquet(store, p) for p in prefixes]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True).sort_values("day", kind="stable").reset_index(drop=True)


def rebuild_dashboard(
    store: ObjectStore, settings: Settings, model_name: str, today: dt.date, weeks: int
) -> tuple[str, pd.DataFrame]:
    """Render the dashboard from the whole table; returns its key and the history it was drawn from."""
    history = read_history(store, settings, model_name)
    key = dashboard_key(settings, model_name)
    page = render_dashboard(history, model_name, today, weeks)
    store.put_bytes(key, page.encode(), content_type="text/html")
    return key, history
