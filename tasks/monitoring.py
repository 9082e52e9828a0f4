"""Prefect tasks of this stage: thin wrappers over `conveyor.services.monitoring`."""

from __future__ import annotations

import datetime as dt

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact

from configs.settings import Settings
from conveyor.adapters import events
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.prefect_runtime import retry_transient
from conveyor.domain import drift, drift_report
from conveyor.services.monitoring import drift_event_payload, drift_report_for_day, latest_scored_day, write_reports


@task(name="check-drift", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def check_drift(settings: Settings, model_name: str, scored_day: dt.date | None) -> drift.DriftReport:
    """Judge the scored day (default: the latest one published) and write the reports + a table artifact."""
    logger = get_run_logger()
    store = ObjectStore(settings.storage)
    day = scored_day or latest_scored_day(store, settings, model_name)
    report, reference, current, scores = drift_report_for_day(store, settings, model_name, day)
    uris = write_reports(store, settings, report, reference, current, scores)
    key = f"drift-{model_name}".replace("_", "-").lower()
    create_table_artifact(
        table=drift_report.verdict_table(report),
        key=key,
        description=f"Drift verdict **{report.verdict}** for {model_name} v{report.model_version}, "
        f"{report.window_start}..{report.window_end}. "
        + (
            ""
            if report.estimated is None
            else f"Estimated ROC AUC (no labels) {report.estimated.roc_auc:.3f} +/- "
            f"{report.estimated.z * report.estimated.roc_auc_se:.3f}. "
        )
        + "; ".join(report.reasons),
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
