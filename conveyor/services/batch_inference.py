"""What the batch-inference tasks (tasks/batch_inference.py) do, without Prefect: resolve the model versions,
read the population with its features, check and score a partition (conveyor/services/scoring.py).

One task resolves the model versions once (so every partition of a run uses the same champion, even if it is
promoted meanwhile); one task per partition reads its population's features, checks, scores, writes and
publishes. Tasks pass references (names, versions, days); each partition task loads its model from the
registry itself (SHA-256 verified), which keeps tasks independent for a Dask runner.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from configs.settings import Settings, StorageConfig
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.offline_features import LatestFeatures, feature_spec
from conveyor.adapters.registry import ModelRegistry
from conveyor.adapters.rollouts import Rollouts
from conveyor.domain.failures import MissingInput
from conveyor.services.feature_sources import FeatureSource
from conveyor.services.scoring import PartitionResult, ScoringModel, as_of_time
from conveyor.services.validation import validate_frame


@dataclass(frozen=True)
class ModelRef:
    """A pinned model version: what partition tasks receive instead of the model object."""

    name: str
    version: int
    feature_service: str


@functools.cache
def _object_store(storage_json: str) -> ObjectStore:
    # One S3 client per process and configuration: creating a boto3 client parses its service model (~0.1-0.3 s).
    return ObjectStore(StorageConfig.model_validate_json(storage_json))


def object_store(settings: Settings) -> ObjectStore:
    storage = settings.storage
    secrets = {"access_key_id": storage.access_key_id, "secret_access_key": storage.secret_access_key}
    if any(v is not None for v in secrets.values()):  # SecretStr does not survive JSON: no caching
        return ObjectStore(storage)
    return _object_store(storage.model_dump_json())


def resolve_model(store: ObjectStore, settings: Settings, name: str, version: int | None) -> ModelRef:
    """The pinned `version`, or the current champion, as a reference; fails with a clear message when none."""
    registry = ModelRegistry(store, settings)
    meta = registry.champion(name) if version is None else registry.get_version(name, version)
    if meta is None:
        raise MissingInput(
            f"model {name!r} has no champion in the registry at "
            f"{store.uri(settings.storage.prefixes.models + '/' + name)}/: train and promote one"
        )
    return ModelRef(name, meta.version, meta.feature_service or settings.features.feature_service)


def rollout_challenger(store: ObjectStore, settings: Settings, name: str) -> int | None:
    """The challenger of the registry's rollout plan (canary, shadow or ab: `conveyor rollout`), or None. Batch
    scoring shadows it, the same plan the online service serves; its scores are never published."""
    plan = Rollouts(ModelRegistry(store, settings)).plan(name)
    return plan.challenger if plan.active else None


def load_scoring_model(store: ObjectStore, settings: Settings, ref: ModelRef) -> ScoringModel:
    """Load `ref` from the registry for `scoring.runtime`: the Pipeline (SHA-256 verified before unpickling), or
    its ONNX twin (verified; nothing is unpickled). A version without a twin that passed its parity check
    raises TwinUnavailable under `onnx`: never a silent fallback to the Pipeline. The task is the version's
    recorded one (never today's `dataset.task`): it decides the output columns."""
    registry = ModelRegistry(store, settings)
    if settings.scoring.runtime == "onnx":
        meta = registry.get_version(ref.name, ref.version)
        twin = registry.load_twin(meta)
        names = tuple(meta.feature_names) or None
        return ScoringModel(twin, str(meta.version), ref.feature_service, names, "onnx", meta.model_task)
    loaded = registry.load(ref.name, ref.version)
    meta = loaded.version
    names = tuple(meta.feature_names) or None
    return ScoringModel(loaded.model, str(meta.version), ref.feature_service, names, "sklearn", meta.model_task)


def feature_store_source(settings: Settings, day: dt.date, version: int | None = None) -> FeatureSource:
    """The day's population and features, as of the end of `day`: every entity with a raw row in the
    `scoring.population_lookback_days` days up to `day`, with its latest feature values (the feature view's
    point-in-time semantics, TTL included), read from the raw Delta table (`version`: default the latest)."""
    try:
        return LatestFeatures(
            feature_spec(settings),
            as_of_time(day),
            dt.timedelta(days=settings.scoring.population_lookback_days),
            version,
        )
    except LookupError as exc:
        raise MissingInput(f"{exc}: no population of {settings.dataset.name!r} to score (run ingest first)") from None


def suite_check(settings: Settings, day: dt.date) -> Callable[[pd.DataFrame], str | None]:
    """The scoring expectation suite (configs/expectations/scoring.json via tasks/validation.py, issue 3) as a
    check on a sample of the first chunk; freshness is judged as of the end of `day`."""

    def check(sample: pd.DataFrame) -> str | None:
        result = validate_frame(sample, "scoring", settings, as_of=as_of_time(day))
        if result.passed:
            return None
        return f"suite {result.suite!r}: " + "; ".join(o.describe() for o in result.failed)

    return check


def summary_markdown(results: list[PartitionResult]) -> str:
    lines = [
        "| day | rows in | scored | defaulted | quarantined | model | seconds | published |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.day} | {r.rows_in} | {r.rows_scored} | {r.rows_defaulted} | {r.rows_quarantined} | "
            f"{r.model_version} | {r.seconds:.1f} | {r.uri} |"
        )
    return "\n".join(lines)
