"""Daily batch inference: score the population with the champion and publish predictions on the object store.

`predictions/<model>/dt=YYYY-MM-DD/` (parquet + `_manifest.json`, written last), one task per partition; a
challenger version, when given, is scored on the same rows into `scoring.shadow_prefix`, never published.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from configs.settings import load_settings
from conveyor.adapters import prefect_fixes  # noqa: F401  (installs the engine fix before any run)
from conveyor.adapters.notify import notify_on_failure
from conveyor.adapters.prefect_runtime import current_run_id
from conveyor.domain.failures import InvalidInput
from conveyor.services.scoring import PartitionResult
from tasks.batch_inference import (
    publish_summary,
    resolve_challenger_task,
    resolve_model_task,
    score_partition_task,
    scoring_task_runner,
    sweep_staging_task,
)


@dataclass(frozen=True)
class BatchInferenceResult:
    model: str
    model_version: int
    partitions: list[PartitionResult]

    @property
    def rows_scored(self) -> int:
        return sum(p.rows_scored for p in self.partitions)

    def where(self) -> str:
        return ", ".join(p.uri for p in self.partitions)


def scoring_days(scoring_date: dt.date | None, end_date: dt.date | None) -> list[dt.date]:
    """[scoring_date, end_date] (a backfill), or one day; default: the day before the scheduled start (UTC)."""
    if scoring_date is None:
        start = flow_run.scheduled_start_time or dt.datetime.now(dt.UTC)
        scoring_date = start.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    end = end_date or scoring_date
    if end < scoring_date:
        raise InvalidInput(f"end_date {end} is before scoring_date {scoring_date}")
    return [scoring_date + dt.timedelta(days=i) for i in range((end - scoring_date).days + 1)]


@flow(
    name="batch-inference",
    description="Score the population with the champion; publish predictions to S3.",
    on_failure=[notify_on_failure],
    on_crashed=[notify_on_failure],
)
def batch_inference(
    scoring_date: Annotated[
        dt.date | None, Field(description="day to score; default: the day before the scheduled start (UTC)")
    ] = None,
    end_date: Annotated[
        dt.date | None, Field(description="last day of a backfill (inclusive); one task per day")
    ] = None,
    model_name: Annotated[str | None, Field(description="registry model; default scoring.model_name")] = None,
    model_version: Annotated[int | None, Field(description="pin a version; default: the champion")] = None,
    challenger_version: Annotated[
        int | None,
        Field(
            description="also score this version into the shadow prefix (never published); default: the "
            "registry rollout's challenger, if any"
        ),
    ] = None,
    features_prefix: Annotated[
        str | None,
        Field(description="score a published feature snapshot <prefix>/dt=<day>/ instead of the feature store"),
    ] = None,
) -> BatchInferenceResult:
    """Score `scoring_date` (default: yesterday), or every day up to `end_date` for a backfill, with the champion
    of `model_name` (or the pinned `model_version`). `challenger_version` adds shadow scores. Features come from
    the feature store as of the end of each day, or from a published snapshot `<features_prefix>/dt=<day>/`.

    Args:
        scoring_date: Day to score (default: the day before the scheduled start, UTC).
        end_date: Last day of a backfill, inclusive; one task per day.
        model_name: Registry model (default: scoring.model_name).
        model_version: Pin a version (default: the champion, resolved once per run).
        challenger_version: Also score this version into the shadow prefix; it is never published.
        features_prefix: Score the published feature snapshot `<prefix>/dt=<day>/` instead of the feature store.
    """
    settings = load_settings()
    name = model_name or settings.scoring.model_name
    days = scoring_days(scoring_date, end_date)
    champion = resolve_model_task(settings, name, model_version)
    challenger = resolve_challenger_task(settings, name, challenger_version)  # given, else the rollout's
    run_id = current_run_id()
    sweep_staging_task(settings)
    with scoring_task_runner(settings) as runner:
        futures = [
            runner.submit(
                score_partition_task,
                {
                    "settings": settings,
                    "day": day,
                    "champion": champion,
                    "challenger": challenger,
                    "features_prefix": features_prefix,
                    "run_id": run_id,
                },
            )
            for day in days
        ]
        partitions = [future.result() for future in futures]
    publish_summary(partitions)
    return BatchInferenceResult(name, champion.version, partitions)
