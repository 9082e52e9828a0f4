"""Chunked batch scoring: features in bounded chunks -> row checks -> model -> decision + audit columns -> one
parquet part per partition, streamed to the object store and published atomically (manifest last).

Pure of Prefect: the flow's tasks (tasks/batch_inference.py) call `score_partition` with a model and a feature
source (conveyor/services/feature_sources.py). Rows in memory are bounded by `scoring.chunk_rows` (plus two S3
part buffers), never by the input size.

Every input row ends up scored or quarantined, and the manifest says how many of each. The rows are judged on
every chunk by the rule engine over the scoring suite (conveyor/services/row_checks.py); the whole suite,
batch-level rules included, runs on a sample of the first chunk when `sample_check` is given. A batch with more
than `scoring.max_quarantined_share` bad rows, or missing a feature column, is rejected: its quarantine report
is written and nothing is published.

Determinism: `scored_at` is the partition's as-of time (not the wall clock), rows keep the source order, so
rerunning the same inputs gives the same rows; only the `run_id` column (and the manifest's run_id/created_at)
differ between runs.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import Manifest
from conveyor.domain.expectations import load_suite, suite_parameters
from conveyor.domain.failures import DeterministicFailure
from conveyor.domain.task_types import ModelTask
from conveyor.services.feature_sources import FeatureSource
from conveyor.services.partition_writer import PartitionWriter, QuarantineSink, output_schema, prediction_table
from conveyor.services.row_checks import CheckedChunk, check_chunk
from conveyor.services.shadow_comparison import ShadowComparison

__all__ = ["ShadowComparison"]  # re-exported: shadow scoring's comparison lives in its own module


class ScoringBatchRejected(DeterministicFailure, RuntimeError):
    """The scoring inputs failed the gate: nothing was published; the message says why and where the
    quarantine report is. Deterministic: the task is not retried (the same rows would fail again)."""


@dataclass(frozen=True)
class ScoringModel:
    """What scoring needs from a registry version: the model (raw feature columns in: the fitted Pipeline, or
    its ONNX twin with the same `predict_proba` / `predict`), its version, the feature service it was trained on
    and the task it records (which output columns it writes)."""

    model: Any
    version: str
    feature_service: str
    feature_names: tuple[str, ...] | None = None  # the columns the model was fitted on; default: dataset features
    runtime: Literal["sklearn", "onnx"] = "sklearn"  # which one `model` is (recorded in the manifest)
    task: ModelTask = ModelTask("binary", ("0", "1"))  # the version's recorded task (ModelVersion.model_task)


def predict_scores(model: Any, features: pd.DataFrame) -> np.ndarray:
    """P(positive class) per row: `model.predict_proba(features)[:, 1]`."""
    if len(features) == 0:
        return np.empty(0, dtype="float64")
    return np.asarray(model.predict_proba(_missing_as_nan(features))[:, 1], dtype="float64")


def predict_outputs(model: Any, features: pd.DataFrame, task: ModelTask, threshold: float) -> pd.DataFrame:
    """The task's output columns (`ModelTask.output_columns`) per row, in the rows' order: binary score and
    decision, multiclass one probability per class and the predicted class, regression the prediction."""
    if len(features) == 0:
        return empty_outputs(task, features.index)
    return task.outputs(model, _missing_as_nan(features), threshold)


def empty_outputs(task: ModelTask, index: Any = None) -> pd.DataFrame:
    """No rows, the task's output columns with their types."""
    kinds = {"decision": "bool", "predicted_class": "object"}
    return pd.DataFrame({c: pd.Series(dtype=kinds.get(c, "float64")) for c in task.output_columns}, index=index)


def _missing_as_nan(features: pd.DataFrame) -> pd.DataFrame:
    """Text nulls as NaN. Arrow hands a null string to pandas as None, and the Pipeline's SimpleImputer treats
    only NaN as missing in an object column (None would pass it and be one-hot encoded as an unknown category),
    while training imputes missing categories: without this, the two would score such rows differently."""
    # Block-wise null test of the whole frame: ~30 us for a request's row, where a test per column took ~200 us.
    text_columns = np.array([dtype == np.dtype(object) for dtype in features.dtypes], dtype=bool)
    with_nulls = features.isna().to_numpy().any(axis=0) & text_columns
    if not with_nulls.any():
        return features
    text = list(features.columns[with_nulls])
    return features.assign(**{c: features[c].where(features[c].notna(), np.nan) for c in text})


def _model_columns(features: pd.DataFrame, model: ScoringModel) -> pd.DataFrame:
    if model.feature_names is None or list(model.feature_names) == list(features.columns):
        return features
    return features[list(model.feature_names)]


@dataclass(frozen=True)
class PartitionResult:
    """What scoring one partition did (small: passed between tasks, shown in the UI)."""

    day: dt.date
    uri: str
    rows_in: int
    rows_scored: int
    rows_defaulted: int
    rows_quarantined: int
    unknown_entities: int
    missing_features: int
    invalid_rows: int
    quarantine_uri: str | None
    model_version: str
    input_fingerprint: str
    output_sha256: str
    seconds: float
    shadow_uri: str | None = None
    shadow: dict[str, Any] | None = None


def predictions_prefix(settings: Settings, model_name: str, day: dt.date) -> str:
    return f"{settings.storage.prefixes.predictions}/{model_name}/dt={day.isoformat()}"


def shadow_prefix(settings: Settings, model_name: str, challenger_version: str, day: dt.date) -> str:
    return f"{settings.scoring.shadow_prefix}/{model_name}/version={challenger_version}/dt={day.isoformat()}"


def quarantine_prefix(settings: Settings, model_name: str, day: dt.date, run_id: str) -> str:
    return (
        f"{settings.storage.prefixes.quarantine}/{settings.storage.prefixes.predictions}/{model_name}/"
        f"dt={day.isoformat()}/run-{run_id}"
    )


def as_of_time(day: dt.date) -> dt.datetime:
    """Scoring a day uses features known by the end of it: midnight UTC after `day`."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


def score_partition(
    store: ObjectStore,
    settings: Settings,
    source: FeatureSource,
    model: ScoringModel,
    model_name: str,
    day: dt.date,
    run_id: str,
    challenger: ScoringModel | None = None,
    sample_check: Callable[[pd.DataFrame], str | None] | None = None,
) -> PartitionResult:
    """Score one partition in bounded chunks and publish it atomically (manifest last).

    `sample_check(sample) -> None | failure message` is the suite-level gate (the scoring suite as a whole), run
    on a sample of the first chunk. Raises ScoringBatchRejected (nothing published) when the inputs fail a gate.
    """
    run = _PartitionRun(store, settings, source, model, model_name, day, run_id, challenger)
    cfg, dataset = settings.scoring, settings.dataset
    try:
        run.check_columns()
        suite = load_suite(settings, "scoring")
        parameters = suite_parameters(suite, run.scored_at)
        shadow = shadow_prefix(settings, model_name, challenger.version, day) if challenger else None
        with PartitionWriter(store, run.prefix, run_id, cfg.upload_part_mb * 2**20, shadow) as writer:
            for index, chunk in enumerate(source.chunks(cfg.chunk_rows)):
                if index == 0 and sample_check is not None:
                    run.check_sample(chunk, sample_check)
                run.score_chunk(writer, check_chunk(chunk, suite, dataset, cfg, parameters))
            writer.close_parts(run.schema_of(model), run.schema_of(challenger) if challenger else None)
            return run.finish(writer)
    finally:
        run.cleanup()


@dataclass
class _PartitionRun:
    """One partition being scored: where its outputs go, what it counted so far, and how it is rejected."""

    store: ObjectStore
    settings: Settings
    source: FeatureSource
    model: ScoringModel
    model_name: str
    day: dt.date
    run_id: str
    challenger: ScoringModel | None
    started: float = field(default_factory=time.perf_counter)
    quarantine: QuarantineSink = field(default_factory=QuarantineSink)
    totals: Counter[str] = field(default_factory=Counter)
    key_types: dict[str, pa.DataType] | None = None  # of the first chunk's keys (the dataset's types when no rows)
    comparison: ShadowComparison | None = None

    def __post_init__(self) -> None:
        self.prefix = predictions_prefix(self.settings, self.model_name, self.day)
        self.q_prefix = quarantine_prefix(self.settings, self.model_name, self.day, self.run_id)
        self.scored_at = as_of_time(self.day)
        if self.challenger is not None:
            self.comparison = ShadowComparison.of(
                self.model.version, self.challenger.version, self.model.task, self.challenger.task
            )

    def reject(self, reason: str, counts: Counter[str] | None = None) -> ScoringBatchRejected:
        """Write the quarantine report (and the rows quarantined so far); the error to raise."""
        report = {
            "rejected": True,
            "reason": reason,
            "day": self.day.isoformat(),
            "model": self.model_name,
            "model_version": self.model.version,
            "input": self.source.description,
            "run_id": self.run_id,
            "counts": dict(counts or {}),
            "sample_rows": self.quarantine.samples,
        }
        rows_uri = self.quarantine.upload(self.store, f"{self.q_prefix}/rows.parquet")
        self.store.put_json(f"{self.q_prefix}/report.json", report)
        rows = f"; {self.quarantine.rows} rows at {rows_uri}" if rows_uri else ""
        return ScoringBatchRejected(
            f"scoring batch {self.model_name} dt={self.day} rejected: {reason}. Nothing was published at "
            f"{self.store.uri(self.prefix)}/; quarantine report at {self.store.uri(self.q_prefix + '/')}"
            f"report.json{rows}"
        )

    def check_columns(self) -> None:
        dataset = self.settings.dataset
        present = set(self.source.columns())
        absent = [c for c in [*dataset.entity_columns, *dataset.feature_names] if c not in present]
        if absent:
            raise self.reject(
                f"input {self.source.description} lacks column(s) {absent} (dataset.features / dataset.entity_columns)"
            )

    def check_sample(self, chunk: pd.DataFrame | pa.Table, sample_check: Callable[[pd.DataFrame], str | None]) -> None:
        rows = self.settings.scoring.validation_sample_rows
        sample = chunk.slice(0, rows).to_pandas() if isinstance(chunk, pa.Table) else chunk.head(rows)
        failure = sample_check(sample)
        if failure:
            self.quarantine.write(sample.astype(str))
            raise self.reject(f"scoring suite failed on a {len(sample)}-row sample: {failure}")

    def score_chunk(self, writer: PartitionWriter, checked: CheckedChunk) -> None:
        """Count the chunk's rows, spool its quarantined ones, score the rest (and shadow-score them)."""
        self.totals.update(checked.counts)
        self.quarantine.write(checked.quarantined)
        if self.key_types is None:
            first = checked.entities.head(1)
            self.key_types = {c: pa.array(first[c].to_numpy()).type for c in first.columns}
        outputs = self._outputs(checked, self.model)
        shadow = None
        if self.challenger is not None and self.comparison is not None:
            shadow_outputs = self._outputs(checked, self.challenger)
            shadow = self._predictions(checked, shadow_outputs, self.challenger)
            self.comparison.update(outputs, shadow_outputs, self.model.task)
        writer.write(self._predictions(checked, outputs, self.model), shadow)

    def _outputs(self, checked: CheckedChunk, model: ScoringModel) -> pd.DataFrame:
        features = _model_columns(checked.features, model)
        return predict_outputs(model.model, features, model.task, self.settings.scoring.threshold)

    def schema_of(self, model: ScoringModel) -> pa.Schema:
        """The prediction rows' schema for `model`: key column(s), the model's task's output columns, audit columns."""
        return output_schema(self.key_types or self.settings.dataset.key_arrow_types, model.task)

    def _predictions(self, checked: CheckedChunk, outputs: pd.DataFrame, model: ScoringModel) -> pa.Table:
        audit = (model.version, model.feature_service, self.run_id)
        return prediction_table(self.schema_of(model), checked.entities, outputs, audit, self.scored_at)

    def finish(self, writer: PartitionWriter) -> PartitionResult:
        """Check the accounting and the quarantined share, keep the quarantined rows, publish."""
        cfg, totals = self.settings.scoring, self.totals
        rows_in, quarantined = totals["rows_in"], totals["quarantined"]
        if rows_in != totals["scored"] + quarantined:  # the invariant the manifest promises
            raise RuntimeError(f"row accounting broken: {rows_in} in != {totals['scored']} + {quarantined}")
        if rows_in and quarantined / rows_in > cfg.max_quarantined_share:
            raise self.reject(
                f"{quarantined} of {rows_in} rows ({quarantined / rows_in:.1%}) failed the row checks, "
                f"above scoring.max_quarantined_share={cfg.max_quarantined_share}",
                totals,
            )
        quarantine_uri = self.quarantine.upload(self.store, f"{self.q_prefix}/rows.parquet")
        if quarantine_uri:
            report = {"rejected": False, "counts": dict(totals), "sample_rows": self.quarantine.samples}
            self.store.put_json(f"{self.q_prefix}/report.json", {**report, "run_id": self.run_id})
        metadata = self._metadata(quarantine_uri)
        shadow_metadata = None
        if self.challenger is not None and self.comparison is not None:
            shadow = {
                "model_version": self.challenger.version,
                "task": self.challenger.task.to_json(),
                "output_columns": self.challenger.task.output_columns,
                "role": "shadow",
                "comparison": self.comparison.to_json(),
            }
            shadow_metadata = {**metadata, **shadow}
        manifest, shadow_at = writer.commit(metadata, shadow_metadata)
        return self._result(manifest, shadow_at, quarantine_uri, metadata["input_fingerprint"])

    def _metadata(self, quarantine_uri: str | None) -> dict[str, Any]:
        cfg = self.settings.scoring
        return {
            "model": self.model_name,
            "model_version": self.model.version,
            "feature_service": self.model.feature_service,
            "runtime": self.model.runtime,
            "task": self.model.task.to_json(),
            "output_columns": self.model.task.output_columns,
            "day": self.day.isoformat(),
            "as_of": self.scored_at.isoformat(),
            "threshold": cfg.threshold,
            "input": self.source.description,
            "input_fingerprint": self.source.fingerprint(),
            "counts": dict(self.totals),
            "quarantine": quarantine_uri,
            "policies": {"unknown_entities": cfg.unknown_entities, "missing_features": cfg.missing_features},
        }

    def _result(
        self, manifest: Manifest, shadow_at: str | None, quarantine_uri: str | None, fingerprint: str
    ) -> PartitionResult:
        totals = self.totals
        return PartitionResult(
            day=self.day,
            uri=self.store.uri(self.prefix + "/"),
            rows_in=totals["rows_in"],
            rows_scored=totals["scored"],
            rows_defaulted=totals["defaulted"],
            rows_quarantined=totals["quarantined"],
            unknown_entities=totals["unknown_entities"],
            missing_features=totals["missing_features"],
            invalid_rows=totals["invalid"],
            quarantine_uri=quarantine_uri,
            model_version=self.model.version,
            input_fingerprint=fingerprint,
            output_sha256=manifest.files[0].sha256,
            seconds=time.perf_counter() - self.started,
            shadow_uri=None if shadow_at is None else self.store.uri(shadow_at + "/"),
            shadow=self.comparison.to_json() if self.comparison is not None else None,
        )

    def cleanup(self) -> None:
        self.quarantine.cleanup()
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
