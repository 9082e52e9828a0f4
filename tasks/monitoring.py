"""Prefect tasks of this stage: thin wrappers over `conveyor.services.monitoring` and `...monitoring_history`."""

from __future__ import annotations

import datetime as dt

from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from configs.settings import Settings
from conveyor.adapters import events
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.prefect_runtime import current_run_id, retry_transient
from conveyor.domain import drift, drift_report
from conveyor.domain.failures import MissingInput
from conveyor.domain.monitoring_history import markdown_table, recent_table
from conveyor.services.monitoring import drift_event_payload, drift_report_for_day, latest_scored_day, write_reports
from conveyor.services.monitoring_history import (
    append_judgement,
    data_volume,
    quarantined_batches,
    rebuild_dashboard,
    scored_days,
)
from conveyor.services.online_traffic import latest_logged_day

# The markdown artifact's table covers this many weeks of judgements.
RECENT_WEEKS = 6


def _artifact_key(model_name: str) -> str:
    return f"drift-{model_name}".replace("_", "-").lower()


@task(name="days-to-judge", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def days_to_judge(
    settings: Settings,
    model_name: str,
    scored_day: dt.date | None,
    start_day: dt.date | None,
    end_day: dt.date | None,
    source: str = "batch",
) -> list[dt.date]:
    """A backfill's scored days in [start_day, end_day], else the one scored day (default: the latest). Online:
    the one logged day (default: the latest day of the prediction log)."""
    store = ObjectStore(settings.storage)
    if source == "online":
        if start_day is not None or end_day is not None:
            raise MissingInput("drift monitor (online): judge one logged day (scored_day), not a date range")
        return [scored_day or latest_logged_day(store, settings, model_name)]
    if start_day is None and end_day is None:
        return [scored_day or latest_scored_day(store, settings, model_name)]
    end = end_day or latest_scored_day(store, settings, model_name)
    start = start_day or end
    days = scored_days(store, settings, model_name, start, end)
    if not days:
        raise MissingInput(f"drift monitor: no published predictions of {model_name!r} between {start} and {end}")
    return days


@task(name="check-drift", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def check_drift(
    settings: Settings, model_name: str, scored_day: dt.date | None, source: str = "batch"
) -> drift.DriftReport:
    """Judge the scored day (default: the latest one published), write the reports, append the judgement to the
    monitoring table, and publish a table artifact with a one-click (presigned) link to the HTML report. Online
    (the service's prediction log of that day): the reports and artifacts, not the monitoring table, which holds
    the batch judgements (one per day and model)."""
    logger = get_run_logger()
    store = ObjectStore(settings.storage)
    latest = latest_logged_day if source == "online" else latest_scored_day
    day = scored_day or latest(store, settings, model_name)
    report, reference, current, outputs = drift_report_for_day(store, settings, model_name, day, source)
    uris = write_reports(store, settings, report, reference, current, outputs)
    if source == "batch":
        window = dt.date.fromisoformat(report.window_start), day
        quarantined = quarantined_batches(store, settings, *window)
        volume = data_volume(store, settings, report, len(current), len(quarantined))
        append_judgement(store, settings, report, volume, outputs, current_run_id())
    key = _artifact_key(model_name) + ("-online" if source == "online" else "")
    create_table_artifact(
        table=drift_report.verdict_table(report),
        key=key,
        description=f"Drift verdict **{report.verdict}** for {model_name} v{report.model_version}, "
        f"{report.window_start}..{report.window_end}. "
        + drift_report.estimate_summary(report)
        + "; ".join(report.reasons),
    )
    create_link_artifact(
        link=store.presigned_url(store.key_of(uris["html"])),
        link_text=f"drift report {report.window_end}",
        key=f"{key}-report",
        description=f"HTML drift report ({uris['html']}), presigned: opens in the browser until the link expires",
    )
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


@task(name="publish-monitoring", retries=1, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def publish_monitoring(settings: Settings, model_name: str, today: dt.date) -> str:
    """Rebuild the dashboard from the monitoring table; link it (presigned) and show the last weeks, with links to
    the Data Docs of batches quarantined in that time. Returns the dashboard's presigned URL."""
    store = ObjectStore(settings.storage)
    key, history = rebuild_dashboard(store, settings, model_name, today, RECENT_WEEKS)
    url = store.presigned_url(key)
    artifact = _artifact_key(model_name)
    create_link_artifact(
        link=url,
        link_text=f"monitoring dashboard of {model_name}",
        key=f"{artifact}-dashboard",
        description=f"Drift, estimated vs realized performance, predictions, volume: {store.uri(key)}",
    )
    since = today - dt.timedelta(weeks=RECENT_WEEKS)
    docs = [b for b in quarantined_batches(store, settings, since, today) if b["data_docs_key"]]
    links = "".join(f"\n- [{b['batch']}]({store.presigned_url(b['data_docs_key'])})" for b in docs)
    create_markdown_artifact(
        key=f"{artifact}-history",
        markdown=f"# Monitoring of {model_name}: last {RECENT_WEEKS} weeks\n\n"
        + markdown_table(recent_table(history, today, RECENT_WEEKS))
        + f"\n\n[Dashboard]({url})"
        + (f"\n\n## Data Docs of quarantined batches{links}" if links else ""),
        description=f"monitoring history of {model_name}",
    )
    return url


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
