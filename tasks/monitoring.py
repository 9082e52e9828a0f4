"""Drift monitor tasks: load the champion's reference and the latest scored window, judge, report, emit.

The statistics live in `tasks/drift.py` (pure). Here: where the data comes from and where the report goes.
- reference: the registry's reference profile of the champion (training features + `score`);
- current features: the raw rows of the `drift.window_days` days up to the scored day;
- current scores: the published predictions of the scored day (`predictions/<model>/dt=<day>/`);
- performance: the champion scored on the labelled raw rows of the window `drift.label_delay_days` earlier.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact

from configs.settings import Settings
from tasks import drift, events
from tasks.object_store import ObjectStore
from tasks.raw_data import read_raw_window
from tasks.registry import LoadedModel, ModelRegistry
from tasks.scoring import predictions_prefix


def latest_scored_day(store: ObjectStore, settings: Settings, model_name: str) -> dt.date:
    root = f"{settings.storage.prefixes.predictions}/{model_name}/"
    days = [dt.date.fromisoformat(p.rsplit("dt=", 1)[1]) for p in store.published_prefixes(root) if "dt=" in p]
    if not days:
        raise LookupError(f"drift monitor: no published predictions for model {model_name!r} under {store.uri(root)}")
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
        raise LookupError(f"drift monitor: model {model_name!r} has no champion in the registry; train one first")
    reference = registry.reference_of(champion)
    start, end = _window(scored_day, settings.drift.window_days)
    current = read_raw_window(store, settings, start, end)
    scores = store.read_published_parquet(predictions_prefix(settings, model_name, scored_day), columns=["score"])
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
    page = drift.render_html(report, reference, current, scores, settings.drift.histogram_sample)
    store.put_bytes(f"{prefix}/drift.html", page.encode(), content_type="text/html")
    return {"json": store.uri(f"{prefix}/drift.json"), "html": store.uri(f"{prefix}/drift.html")}


@task(name="check-drift", retries=1, retry_delay_seconds=5)
def check_drift(settings: Settings, model_name: str, scored_day: dt.date | None) -> drift.DriftReport:
    """Judge the scored day (default: the latest one published) and write the reports + a table artifact."""
    logger = get_run_logger()
    store = ObjectStore(settings.storage)
    day = scored_day or latest_scored_day(store, settings, model_name)
    report, reference, current, scores = drift_report_for_day(store, settings, model_name, day)
    uris = write_reports(store, settings, report, reference, current, scores)
    key = f"drift-{model_name}".replace("_", "-").lower()
    create_table_artifact(
        table=drift.verdict_table(report),
        key=key,
        description=f"Drift verdict **{report.verdict}** for {model_name} v{report.model_version}, "
        f"{report.window_start}..{report.window_end}. " + "; ".join(report.reasons),
    )
    create_link_artifact(link=uris["html"], key=f"{key}-report", description="HTML drift report (object store)")
    logger.info(
        "drift verdict for %s v%s on %s..%s: %s%s (report %s)",
        model_name,
        report.model_version,
        report.window_start,
        report.window_end,
        report.verdict,
        "" if not report.reasons else " - " + "; ".join(report.reasons),
        uris["html"],
    )
    return report


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


@task(name="emit-drift-detected")
def emit_drift_detected(settings: Settings, report: drift.DriftReport) -> str | None:
    """Send `conveyor.drift.detected`: the retraining deployment's trigger picks it up."""
    uri = ObjectStore(settings.storage).uri(
        drift.report_prefix(settings, report.model_name, report.window_end) + "/drift.html"
    )
    # Delivered by Prefect's background events worker (drained when the run's process exits).
    event_id = events.emit_drift_detected(report.model_name, drift_event_payload(report, uri))
    get_run_logger().info("emitted %s for %s (event %s)", events.DRIFT_DETECTED, report.model_name, event_id)
    return event_id
