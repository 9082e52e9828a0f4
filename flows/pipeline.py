"""The main job, end to end on the configured profile: land data -> train behind the gates -> materialize the
online features -> score."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from prefect import flow

from conveyor.adapters import prefect_fixes  # noqa: F401  (installs the engine fix before any run)
from conveyor.adapters.feature_store import SkewReport
from conveyor.services.ingest import LandedData, usable_landing
from conveyor.services.training import TrainingOutcome
from flows.batch_inference import BatchInferenceResult, batch_inference
from flows.features import refresh_features
from flows.ingest import ingest
from flows.training import training


@dataclass(frozen=True)
class PipelineResult:
    landed: LandedData
    trained: TrainingOutcome
    features: SkewReport
    scored: BatchInferenceResult


@flow(
    name="conveyor-pipeline",
    description="Conveyor end to end: land data, train behind the gates, refresh features, score.",
)
def conveyor_pipeline(start_date: dt.date | None = None, days: int | None = None) -> PipelineResult:
    """Land raw data, train a model (promoted only if every gate passes), materialize the online store, score the
    last day with the champion.

    Args:
        start_date: first day of data; default generator.start_date.
        days: days of data; default generator.days.
    """
    # A quarantined day fails the ingest run; the days that landed are trained on and scored all the same.
    landed = usable_landing(ingest(start_date=start_date, days=days, return_state=True).result(raise_on_failure=False))
    trained = training(start_date=landed.days[0], end_date=landed.days[-1])
    features = refresh_features(start_date=landed.days[0], end_date=landed.days[-1] + dt.timedelta(days=1))
    scored = batch_inference(scoring_date=landed.days[-1])
    return PipelineResult(landed, trained, features, scored)
