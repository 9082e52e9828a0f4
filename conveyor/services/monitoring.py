"""The drift monitor's work (called by tasks/monitoring.py): load the champion's reference and the latest
scored window, judge, report, emit.

The statistics live in `conveyor/domain/drift.py` (pure). Here: where the data comes from and where the report goes.
- reference: the registry's reference profile of the champion (training features + `score`);
- current features: the raw rows of the `drift.window_days` days up to the scored day;
- current scores: the published predictions of the scored day (`predictions/<model>/dt=<day>/`);
- performance: the champion scored on the labelled raw rows of the window `drift.label_delay_days` earlier.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import published_prefixes, read_published_parquet
from conveyor.adapters.raw_data import read_raw_window
from conveyor.adapters.registry import LoadedModel, ModelRegistry
from conveyor.domain import drift, drift_report
from conveyor.domain.failures import MissingInput
from conveyor.services.scoring import predictions_prefix


def latest_scored_day(store: ObjectStore, settings: Settings, model_name: str) -> dt.date:
    root = f"{settings.storage.prefixes.predictions}/{model_name}/"
    days = [dt.date.fromisoformat(p.rsplit("dt=", 1)[1]) for p in published_prefixes(store, root) if "dt=" in p]
    if not days:
        raise MissingInput(f"drift monitor: no published predictions for model {model_name!r} under {store.uri(root)}")
    return max(days)


def _window(end: dt.date, days: int) -> tuple[dt.date, dt.date]:
    return end - dt.timedelta(days=days - 1), end


def labelled_performance(
    store: ObjectStore, settings: Settings, model: LoadedModel, expected_auc: float | None, scored_day: dt.date
) -> drift.PerformanceCheck | None:
    """Performance on the past window whose labels have arrived; None if there is none or no test AUC."""
    if expected_auc is None:
        return None
    start, end = _window(scored_day - dt.timedelta(days=settings.drift.label_delay_days), settings.drift.window_days)
    try:
        labelled = read_raw_window(store, settings, start, end)
    except LookupError:
        return None
    scores = model.score(labelled)
    return drift.performance_check(
        labelled[settings.dataset.label_column].to_numpy(),
        scores,
        expected_auc,
        settings.drift.max_metric_drop,
        start,
        end,
    )


def drift_report_for_day(
    store: ObjectStore, settings: Settings, model_name: str, scored_day: dt.date
) -> tuple[drift.DriftReport, pd.DataFrame, pd.DataFrame, pd.Series]:
    """Everything the verdict needs, loaded and compared; also returns the frames for the HTML histograms."""
    registry = ModelRegistry(store, settings)
    champion = registry.champion(model_name)
    if champion is None:
        raise MissingInput(f"drift monitor: model {model_name!r} has no champion in the registry; train one first")
    reference = registry.reference_of(champion)
    start, end = _window(scored_day, settings.drift.window_days)
    current = read_raw_window(store, settings, start, end)
    scores = read_published_parquet(store, predictions_prefix(settings, model_name, scored_day), columns=["score"])
    loaded = registry.load_version(champion)
    performance = labelled_performance(store, settings, loaded, champion.test_metrics.get("roc_auc"), scored_day)
    report = drift.compare(
        reference,
        current,
        settings.dataset,
        settings.drift,
        model_name=model_name,
        model_version=str(champion.version),
        window_start=start,
        window_end=end,
        current_scores=scores["score"],
        performance=performance,
    )
    return report, reference, current, scores["score"]


def write_reports(
    store: ObjectStore,
    settings: Settings,
    report: drift.DriftReport,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    scores: pd.Series,
) -> dict[str, str]:
    """JSON + HTML report under `reports/drift/<model>/dt=<day>/`; returns their URIs."""
    prefix = drift.report_prefix(settings, report.model_name, report.window_end)
    store.put_json(f"{prefix}/drift.json", report.to_json())
    page = drift_report.render_html(report, reference, current, scores, settings.drift.histogram_sample)
    store.put_bytes(f"{prefix}/drift.html", page.encode(), content_type="text/html")
    return {"json": store.uri(f"{prefix}/drift.json"), "html": store.uri(f"{prefix}/drift.html")}


def drift_event_payload(report: drift.DriftReport, report_uri: str | None = None) -> dict[str, Any]:
    scores = {
        f.name: {"psi": round(f.psi, 4), "ks": None if f.ks is None else round(f.ks, 4)}
        for f in report.features
        if f.drifted
    }
    if report.prediction is not None:
        scores["score"] = {"psi": round(report.prediction.psi, 4), "ks": round(report.prediction.ks or 0.0, 4)}
    return {
        "model_version": report.model_version,
        "drifted_features": report.drifted_features,
        "scores": scores,
        "window_start": report.window_start,
        "window_end": report.window_end,
        "performance_decayed": bool(report.performance and report.performance.decayed),
        "reasons": report.reasons[:10],
        "report_uri": report_uri,
    }
