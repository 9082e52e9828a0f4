"""What the batch-inference tasks (tasks/batch_inference.py) do, without Prefect: resolve the model versions,
select the population, build its feature source, check and score a partition (conveyor/services/scoring.py).

One task resolves the model versions once (so every partition of a run uses the same champion, even if it is
promoted meanwhile); one task per partition selects entities, fetches their features, checks, scores, writes
and publishes. Tasks pass references (names, versions, days); each partition task loads its model from the
registry itself (SHA-256 verified), which keeps tasks independent for a Dask runner.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from configs.settings import Settings, StorageConfig

# Imported with this module, not inside the task that needs it: importing feast runs typeguard, which compiles
# ASTs, and on CPython 3.11.7 doing that in a task's worker thread while other threads use the ast module can
# fail with "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905, fixed in 3.11.8).
from conveyor.adapters import feature_store
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import read_raw_window
from conveyor.adapters.registry import ModelRegistry
from conveyor.services.feature_sources import ChunkedFetchSource, FeatureSource
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
        raise LookupError(
            f"model {name!r} has no champion in the registry at "
            f"{store.uri(settings.storage.prefixes.models + '/' + name)}/: train and promote one"
        )
    return ModelRef(name, meta.version, meta.feature_service or settings.features.feature_service)


def load_scoring_model(store: ObjectStore, settings: Settings, ref: ModelRef) -> ScoringModel:
    """Load `ref` from the registry, SHA-256 verified before unpickling (raises on tamper)."""
    loaded = ModelRegistry(store, settings).load(ref.name, ref.version)
    return ScoringModel(
        loaded.model, str(loaded.version.version), ref.feature_service, tuple(loaded.version.feature_names) or None
    )


def select_entities(store: ObjectStore, settings: Settings, day: dt.date) -> np.ndarray:
    """Entities seen in the raw partitions of the `scoring.population_lookback_days` days up to `day`."""
    first = day - dt.timedelta(days=settings.scoring.population_lookback_days - 1)
    entity = settings.dataset.entity_column
    try:  # only the entity column of the window's day folders is read
        ids = read_raw_window(store, settings, first, day, columns=[entity])[entity].to_numpy()
    except LookupError as exc:
        raise LookupError(f"{exc}: no population of {settings.dataset.name!r} to score (run ingest first)") from None
    return np.unique(ids)


def feature_store_source(store: ObjectStore, settings: Settings, day: dt.date, feature_service: str) -> FeatureSource:
    """Features through the same feature service as training: Feast point-in-time as of the end of `day`
    (offline), or the online store; fetched one chunk of entities at a time."""
    ds = settings.dataset
    ids = select_entities(store, settings, day)
    # Feast joins values at or before the entity timestamp: the last microsecond of the day.
    stamp = pd.Timestamp(as_of_time(day)) - pd.Timedelta(microseconds=1)

    def offline(chunk: np.ndarray) -> pd.DataFrame:
        entity_df = pd.DataFrame({ds.entity_column: chunk, ds.timestamp_column: stamp})
        return feature_store.build_training_set(
            settings, entity_df, feature_service
        )  # the timestamp column (the as-of) is kept for the suite's freshness check

    def online(chunk: np.ndarray) -> pd.DataFrame:
        return feature_store.online_features(settings, chunk, feature_service)

    fetch = offline if settings.scoring.feature_source == "offline" else online
    return ChunkedFetchSource(
        ids,
        fetch,
        ds.entity_column,
        [ds.entity_column, *ds.feature_names],
        f"feature service {feature_service!r} ({settings.scoring.feature_source}, as of {stamp})",
    )


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
