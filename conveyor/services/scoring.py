"""Chunked batch scoring: features in bounded chunks -> model -> decision + audit columns -> one parquet part per
partition, streamed to the object store and published atomically (manifest last).

Pure of Prefect: the flow's tasks (tasks/batch_inference.py) call `score_partition` with a model and a feature
source. Rows in memory are bounded by `scoring.chunk_rows` (plus two S3 part buffers), never by the input size.

Every input row ends up scored or quarantined, and the manifest says how many of each. Per-row checks are
vectorized and run on every chunk (nulls, ranges, categories, types, duplicate entities in a chunk); the
Great Expectations scoring suite, when given, runs on a sample of the first chunk. A batch with more than
`scoring.max_quarantined_share` bad rows, or missing a feature column, is rejected: its quarantine report is
written and nothing is published.

Determinism: `scored_at` is the partition's as-of time (not the wall clock), rows keep the source order, so
rerunning the same inputs gives the same rows; only the `run_id` column (and the manifest's run_id/created_at)
differ between runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from configs.settings import DatasetConfig, ScoringConfig, Settings
from conveyor.adapters.object_store import Manifest, ObjectStore

log = logging.getLogger(__name__)

PART_NAME = "part-00000.parquet"


class ScoringBatchRejected(RuntimeError):
    """The scoring inputs failed the gate: nothing was published; the message says why and where the
    quarantine report is."""


@dataclass(frozen=True)
class ScoringModel:
    """What scoring needs from a registry version: the fitted Pipeline (raw feature columns in), its version
    and the feature service it was trained on."""

    model: Any
    version: str
    feature_service: str
    feature_names: tuple[str, ...] | None = None  # the columns the model was fitted on; default: dataset features


class FeatureSource(Protocol):
    """Scoring input: entity + feature columns, served in chunks of at most `chunk_rows` rows."""

    description: str

    def columns(self) -> list[str]: ...

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame | pa.Table]:
        """Chunks of at most `chunk_rows` rows; arrow tables get the fast (arrow compute) checks."""
        ...

    def fingerprint(self) -> str:
        """A digest of the input rows (valid once `chunks` is exhausted)."""
        ...


class _FrameHasher:
    def __init__(self) -> None:
        self._digest = hashlib.sha256()

    def update(self, frame: pd.DataFrame) -> None:
        self._digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class FrameSource:
    """An in-memory frame (tests, small inputs, one feature-store fetch)."""

    def __init__(self, frame: pd.DataFrame, description: str = "in-memory frame") -> None:
        self.frame = frame
        self.description = description
        self._hasher = _FrameHasher()

    def columns(self) -> list[str]:
        return list(self.frame.columns)

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        for start in range(0, len(self.frame), chunk_rows):
            chunk = self.frame.iloc[start : start + chunk_rows].reset_index(drop=True)
            self._hasher.update(chunk)
            yield chunk

    def fingerprint(self) -> str:
        return self._hasher.hexdigest()


class ChunkedFetchSource:
    """Entities fetched in chunks through a function (e.g. the feature store's point-in-time retrieval), so only
    one chunk of features is in memory at a time. Rows come back sorted by entity: the output is deterministic
    even when the fetch does not keep row order (Feast does not)."""

    def __init__(
        self,
        entity_ids: np.ndarray,
        fetch: Callable[[np.ndarray], pd.DataFrame],
        entity_column: str,
        expected_columns: list[str],
        description: str,
    ) -> None:
        self.entity_ids = np.sort(np.asarray(entity_ids))
        self.fetch = fetch
        self.entity_column = entity_column
        self.expected_columns = expected_columns
        self.description = description
        self._hasher = _FrameHasher()

    def columns(self) -> list[str]:
        return list(self.expected_columns)

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        for start in range(0, len(self.entity_ids), chunk_rows):
            ids = self.entity_ids[start : start + chunk_rows]
            chunk = self.fetch(ids).sort_values(self.entity_column, kind="stable").reset_index(drop=True)
            self._hasher.update(chunk)
            yield chunk

    def fingerprint(self) -> str:
        return self._hasher.hexdigest()


class PublishedParquetSource:
    """A published (manifest-carrying) prefix of parquet files on the object store, e.g. a feature snapshot.

    Each file is downloaded to a temporary file (disk, not memory), verified against the manifest's SHA-256,
    then read in record batches of `chunk_rows`. The next file downloads in the background while the current one
    is scored (the first as soon as the source exists, e.g. while the model loads). The fingerprint is the
    manifest's file checksums.
    """

    def __init__(self, store: ObjectStore, prefix: str, columns: list[str] | None = None) -> None:
        manifest = store.read_manifest(prefix)
        if manifest is None:
            raise LookupError(f"no scoring input at {store.uri(prefix)}: nothing published there (no manifest)")
        self.store = store
        self.manifest: Manifest = manifest
        self.wanted = columns
        self.description = store.uri(prefix)
        self._schema: list[str] | None = None
        self._tmpdir = tempfile.TemporaryDirectory(prefix="conveyor-scoring-")
        self._downloader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-input")
        self._downloads: dict[int, Future[str]] = {}
        self._prefetch(0)

    def _prefetch(self, index: int) -> None:
        if index < len(self.manifest.files) and index not in self._downloads:
            entry = self.manifest.files[index]
            path = os.path.join(self._tmpdir.name, f"input-{index}.parquet")
            self._downloads[index] = self._downloader.submit(
                self.store.download_verified, entry.key, path, entry.sha256
            )

    def _local(self, index: int) -> str:
        self._prefetch(index)
        self._downloads[index].result()
        return os.path.join(self._tmpdir.name, f"input-{index}.parquet")

    def columns(self) -> list[str]:
        if self._schema is None:
            self._schema = pq.read_schema(self._local(0)).names if self.manifest.files else []
        return list(self._schema)

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame | pa.Table]:
        present = set(self.columns())
        columns = [c for c in self.wanted if c in present] if self.wanted else None
        try:
            for index in range(len(self.manifest.files)):
                path = self._local(index)
                self._prefetch(index + 1)
                parquet = pq.ParquetFile(path)
                for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
                    yield pa.Table.from_batches([batch])
                parquet.close()
                os.remove(path)
        finally:
            self.close()

    def close(self) -> None:
        self._downloader.shutdown(wait=True, cancel_futures=True)
        self._tmpdir.cleanup()

    def fingerprint(self) -> str:
        files = [(f.sha256, f.rows) for f in self.manifest.files]
        return hashlib.sha256(json.dumps(files).encode()).hexdigest()


# ---- row checks ---------------------------------------------------------------------------------------------
@dataclass
class CheckedChunk:
    features: pd.DataFrame  # rows to score, defaults applied
    entities: pd.Series
    quarantined: pd.DataFrame  # entity, features as text, reason
    counts: Counter[str]


def _arrow_clean(table: pa.Table, dataset: DatasetConfig) -> bool:
    """True when every row of an arrow chunk passes the row checks, decided with column-level arrow compute
    (null counts, min/max, set membership, distinct count): a few ms per 1e6 rows. False sends the chunk to
    the row-level pandas checks, which find and label the offending rows."""
    entity = table.column(dataset.entity_column)
    if entity.null_count:
        return False
    ids = entity.to_numpy()
    if not (ids[1:] > ids[:-1]).all() and not pd.Series(ids).is_unique:  # sorted: unique; else a hash pass
        return False
    for spec in dataset.features:
        column = table.column(spec.name)
        if column.null_count:
            return False
        if spec.is_numeric:
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                return False
            bounds = pc.min_max(column).as_py()
            if (
                bounds["min"] is None
                or (spec.min is not None and bounds["min"] < spec.min)
                or (spec.max is not None and bounds["max"] > spec.max)
            ):
                return False
            if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
                return False
        else:
            allowed = spec.categories if spec.dtype == "category" else [True, False]
            try:
                members = pc.is_in(column, value_set=pa.array(allowed, type=column.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                return False
            if not pc.all(members).as_py():
                return False
    return True


def check_chunk(chunk: pd.DataFrame | pa.Table, dataset: DatasetConfig, cfg: ScoringConfig) -> CheckedChunk:
    """Row checks for one chunk: arrow chunks that are clean skip the row-level pass."""
    if isinstance(chunk, pa.Table):
        clean = _arrow_clean(chunk, dataset)
        frame = chunk.to_pandas()
        if clean:
            counts: Counter[str] = Counter(rows_in=len(frame), scored=len(frame))
            return CheckedChunk(frame[dataset.feature_names], frame[dataset.entity_column], pd.DataFrame(), counts)
        return check_rows(frame, dataset, cfg)
    return check_rows(chunk, dataset, cfg)


def check_rows(frame: pd.DataFrame, dataset: DatasetConfig, cfg: ScoringConfig) -> CheckedChunk:
    """Vectorized row checks against the dataset's declared domain; splits a chunk into rows to score (with
    defaults applied per policy) and rows to quarantine (with a reason). Cheap when the chunk is clean."""
    n = len(frame)
    entity_col = dataset.entity_column
    invalid_reason = np.full(n, "", dtype=object)
    nulls = np.zeros((n, len(dataset.features)), dtype=bool)
    features: dict[str, Any] = {}
    for j, spec in enumerate(dataset.features):
        col = frame[spec.name]
        if spec.is_numeric:
            if not pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype):
                values = pd.to_numeric(col, errors="coerce")
                bad_type = (values.isna() & col.notna()).to_numpy()
                invalid_reason[bad_type & (invalid_reason == "")] = f"{spec.name}: not a number"
                col = values
            arr = col.to_numpy(dtype="float64", na_value=np.nan)
            isnull = np.isnan(arr)
            lo = spec.min if spec.min is not None else -np.inf
            hi = spec.max if spec.max is not None else np.inf
            if np.nanmin(arr, initial=np.inf) < lo or np.nanmax(arr, initial=-np.inf) > hi:
                with np.errstate(invalid="ignore"):
                    out = (arr < lo) | (arr > hi)
                invalid_reason[out & (invalid_reason == "")] = f"{spec.name}: outside [{spec.min}, {spec.max}]"
            features[spec.name] = col
        else:
            isnull = col.isna().to_numpy()
            allowed = spec.categories if spec.dtype == "category" else [True, False]
            if isinstance(col.dtype, pd.CategoricalDtype):
                known = set(col.cat.categories) <= set(allowed or [])
                bad = np.zeros(n, dtype=bool) if known else (~col.isin(allowed or []).to_numpy() & ~isnull)
            else:
                bad = ~col.isin(allowed or []).to_numpy() & ~isnull
            if bad.any():
                invalid_reason[bad & (invalid_reason == "")] = f"{spec.name}: not one of {allowed}"
            features[spec.name] = col
        nulls[:, j] = isnull

    entities = frame[entity_col]
    entity_bad = entities.isna().to_numpy()
    if entity_bad.any():
        invalid_reason[entity_bad & (invalid_reason == "")] = f"{entity_col}: null"
    duplicated = entities.duplicated().to_numpy()
    if duplicated.any():
        invalid_reason[duplicated & (invalid_reason == "")] = f"{entity_col}: duplicated"
    invalid = invalid_reason != ""

    unknown = nulls.all(axis=1) & ~invalid
    missing = nulls.any(axis=1) & ~unknown & ~invalid
    reason = invalid_reason
    if cfg.unknown_entities == "quarantine" and unknown.any():
        reason = np.where(unknown, "unknown entity: no feature values", reason)
    if cfg.missing_features == "quarantine" and missing.any():
        reason = np.where(missing, "missing features", reason)
    quarantine = reason != ""
    keep = ~quarantine

    counts: Counter[str] = Counter()
    counts["rows_in"] = n
    counts["invalid"] = int(invalid.sum())
    counts["unknown_entities"] = int(unknown.sum())
    counts["missing_features"] = int(missing.sum())
    counts["quarantined"] = int(quarantine.sum())
    defaulted = (unknown | missing) & keep
    counts["defaulted"] = int(defaulted.sum())

    scored = pd.DataFrame(features)
    if keep.all():
        quarantined = pd.DataFrame()
    else:
        quarantined = frame.loc[quarantine, [entity_col, *dataset.feature_names]].astype(str)
        quarantined["reason"] = reason[quarantine]
        scored = scored.loc[keep].reset_index(drop=True)
        entities = entities.loc[keep].reset_index(drop=True)
    if defaulted.any() and cfg.feature_defaults:
        scored = scored.fillna({k: v for k, v in cfg.feature_defaults.items() if k in scored.columns})
    counts["scored"] = len(scored)
    return CheckedChunk(scored, entities, quarantined, counts)


# ---- scoring and output -------------------------------------------------------------------------------------
def predict_scores(model: Any, features: pd.DataFrame) -> np.ndarray:
    """P(positive class) per row: `model.predict_proba(features)[:, 1]`."""
    if len(features) == 0:
        return np.empty(0, dtype="float64")
    return np.asarray(model.predict_proba(features)[:, 1], dtype="float64")


def _model_columns(features: pd.DataFrame, model: ScoringModel) -> pd.DataFrame:
    if model.feature_names is None or list(model.feature_names) == list(features.columns):
        return features
    return features[list(model.feature_names)]


def output_schema(entity_column: str, entity_type: pa.DataType) -> pa.Schema:
    # Constant audit columns are dictionary-encoded in memory (no per-row hashing when written); the parquet
    # file stores plain strings (store_schema=False), so every reader sees `string`, not a categorical.
    text = pa.dictionary(pa.int32(), pa.string())
    return pa.schema(
        [
            (entity_column, entity_type),
            ("score", pa.float64()),
            ("decision", pa.bool_()),
            ("model_version", text),
            ("feature_service", text),
            ("run_id", text),
            ("scored_at", pa.timestamp("us", tz="UTC")),
        ]
    )


def _constant(value: str, n: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string()))


def prediction_table(
    schema: pa.Schema,
    entities: pd.Series,
    scores: np.ndarray,
    threshold: float,
    model: ScoringModel,
    run_id: str,
    scored_at: dt.datetime,
) -> pa.Table:
    n = len(scores)
    return pa.Table.from_arrays(
        [
            pa.array(entities.to_numpy(), type=schema.field(0).type),
            pa.array(scores, type=pa.float64()),
            pa.array(scores >= threshold, type=pa.bool_()),
            _constant(model.version, n),
            _constant(model.feature_service, n),
            _constant(run_id, n),
            pa.repeat(pa.scalar(scored_at, pa.timestamp("us", tz="UTC")), n),
        ],
        schema=schema,
    )


@dataclass
class ShadowComparison:
    """Champion vs challenger on the same rows: how often they agree and how far scores moved."""

    champion_version: str
    challenger_version: str
    rows: int = 0
    agreement: float = 0.0
    mean_score_shift: float = 0.0  # mean(challenger - champion)
    mean_abs_score_shift: float = 0.0
    max_abs_score_shift: float = 0.0
    champion_positive_rate: float = 0.0
    challenger_positive_rate: float = 0.0
    _sums: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("agree", "diff", "absdiff", "pos_a", "pos_b"), 0.0), repr=False
    )

    def update(self, champion: np.ndarray, challenger: np.ndarray, threshold: float) -> None:
        a, b = champion >= threshold, challenger >= threshold
        diff = challenger - champion
        s = self._sums
        s["agree"] += float((a == b).sum())
        s["diff"] += float(diff.sum())
        s["absdiff"] += float(np.abs(diff).sum())
        s["pos_a"] += float(a.sum())
        s["pos_b"] += float(b.sum())
        self.rows += len(diff)
        if len(diff):
            self.max_abs_score_shift = max(self.max_abs_score_shift, float(np.abs(diff).max()))
        n = max(self.rows, 1)
        self.agreement = s["agree"] / n
        self.mean_score_shift = s["diff"] / n
        self.mean_abs_score_shift = s["absdiff"] / n
        self.champion_positive_rate = s["pos_a"] / n
        self.challenger_positive_rate = s["pos_b"] / n

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


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


class _Sink:
    """One streamed parquet part of a publication."""

    def __init__(self, publication: Any, part_size: int) -> None:
        self.part = publication.open_part(PART_NAME, part_size)
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.part, table.schema, compression="zstd", store_schema=False)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self, schema: pa.Schema) -> None:
        if self.writer is None:  # empty partition: still a valid (empty) parquet file
            self.writer = pq.ParquetWriter(self.part, schema, compression="zstd", store_schema=False)
        self.writer.close()
        self.part.rows = self.rows
        self.part.close()

    def abort(self) -> None:
        self.part.abort()
        if self.writer is not None:
            # Close into the aborted part (which discards the footer) now, not in ParquetWriter.__del__ at
            # garbage collection, where writing to a closed part printed an "Exception ignored" traceback.
            self.writer.close()


class _QuarantineSink:
    """Quarantined rows, spooled to a local file (bounded memory) and uploaded once at the end."""

    def __init__(self) -> None:
        self._tmp = tempfile.NamedTemporaryFile(prefix="conveyor-quarantine-", suffix=".parquet", delete=False)
        self._tmp.close()
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0
        self.samples: list[dict[str, Any]] = []

    def write(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self._tmp.name, table.schema, compression="zstd")
        self.writer.write_table(table.cast(self.writer.schema))
        self.rows += len(frame)
        if len(self.samples) < 20:
            self.samples.extend(frame.head(20 - len(self.samples)).to_dict(orient="records"))

    def upload(self, store: ObjectStore, key: str) -> str | None:
        if self.writer is None:
            return None
        self.writer.close()
        self.writer = None
        store.put_file(key, self._tmp.name)
        return store.uri(key)

    def cleanup(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if os.path.exists(self._tmp.name):
            os.remove(self._tmp.name)


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

    `sample_check(sample) -> None | failure message` is the suite-level gate (Great Expectations), run on a
    sample of the first chunk. Raises ScoringBatchRejected (nothing published) when the inputs fail the gate.
    """
    started = time.perf_counter()
    cfg, dataset = settings.scoring, settings.dataset
    prefix = predictions_prefix(settings, model_name, day)
    q_prefix = quarantine_prefix(settings, model_name, day, run_id)
    scored_at = as_of_time(day)
    needed = [dataset.entity_column, *dataset.feature_names]
    present = set(source.columns())
    absent = [c for c in needed if c not in present]
    quarantine = _QuarantineSink()

    def reject(reason: str, counts: Counter[str] | None = None) -> ScoringBatchRejected:
        report = {
            "rejected": True,
            "reason": reason,
            "day": day.isoformat(),
            "model": model_name,
            "model_version": model.version,
            "input": source.description,
            "run_id": run_id,
            "counts": dict(counts or {}),
            "sample_rows": quarantine.samples,
        }
        rows_uri = quarantine.upload(store, f"{q_prefix}/rows.parquet")
        store.put_json(f"{q_prefix}/report.json", report)
        where = store.uri(q_prefix + "/")
        rows = f"; {quarantine.rows} rows at {rows_uri}" if rows_uri else ""
        return ScoringBatchRejected(
            f"scoring batch {model_name} dt={day} rejected: {reason}. Nothing was published at "
            f"{store.uri(prefix)}/; quarantine report at {where}report.json{rows}"
        )

    try:
        if absent:
            raise reject(
                f"input {source.description} lacks column(s) {absent} (dataset.features / dataset.entity_column)"
            )
        totals: Counter[str] = Counter()
        part_size = cfg.upload_part_mb * 2**20
        with ExitStack() as publications:
            # Publications abort (drop their staged parts) on any exit without commit.
            publication = publications.enter_context(store.publication(prefix, run_id))
            sink = _Sink(publication, part_size)
            shadow_pub = shadow_sink = None
            comparison = None
            if challenger is not None:
                shadow_pub = publications.enter_context(
                    store.publication(shadow_prefix(settings, model_name, challenger.version, day), run_id)
                )
                shadow_sink = _Sink(shadow_pub, part_size)
                comparison = ShadowComparison(model.version, challenger.version)
            schema: pa.Schema | None = None
            try:
                for index, chunk in enumerate(source.chunks(cfg.chunk_rows)):
                    if index == 0 and sample_check is not None:
                        sample = (
                            chunk.slice(0, cfg.validation_sample_rows).to_pandas()
                            if isinstance(chunk, pa.Table)
                            else chunk.head(cfg.validation_sample_rows)
                        )
                        failure = sample_check(sample)
                        if failure:
                            quarantine.write(sample.astype(str))
                            raise reject(f"scoring suite failed on a {len(sample)}-row sample: {failure}")
                    checked = check_chunk(chunk, dataset, cfg)
                    totals.update(checked.counts)
                    quarantine.write(checked.quarantined)
                    if schema is None:
                        entity_type = pa.array(checked.entities.head(1).to_numpy()).type
                        schema = output_schema(dataset.entity_column, entity_type)
                    scores = predict_scores(model.model, _model_columns(checked.features, model))
                    sink.write(
                        prediction_table(schema, checked.entities, scores, cfg.threshold, model, run_id, scored_at)
                    )
                    if challenger is not None and shadow_sink is not None and comparison is not None:
                        shadow_scores = predict_scores(challenger.model, _model_columns(checked.features, challenger))
                        shadow_sink.write(
                            prediction_table(
                                schema, checked.entities, shadow_scores, cfg.threshold, challenger, run_id, scored_at
                            )
                        )
                        comparison.update(scores, shadow_scores, cfg.threshold)
                schema = schema or output_schema(dataset.entity_column, pa.int64())
                sink.close(schema)
                if shadow_sink is not None:
                    shadow_sink.close(schema)
            except BaseException:
                sink.abort()
                if shadow_sink is not None:
                    shadow_sink.abort()
                raise

            rows_in, quarantined = totals["rows_in"], totals["quarantined"]
            if rows_in != totals["scored"] + quarantined:  # the invariant the manifest promises
                raise RuntimeError(f"row accounting broken: {rows_in} in != {totals['scored']} + {quarantined}")
            if rows_in and quarantined / rows_in > cfg.max_quarantined_share:
                raise reject(
                    f"{quarantined} of {rows_in} rows ({quarantined / rows_in:.1%}) failed the row checks, "
                    f"above scoring.max_quarantined_share={cfg.max_quarantined_share}",
                    totals,
                )
            quarantine_uri = quarantine.upload(store, f"{q_prefix}/rows.parquet")
            if quarantine_uri:
                store.put_json(
                    f"{q_prefix}/report.json",
                    {"rejected": False, "counts": dict(totals), "sample_rows": quarantine.samples, "run_id": run_id},
                )
            fingerprint = source.fingerprint()
            metadata = {
                "model": model_name,
                "model_version": model.version,
                "feature_service": model.feature_service,
                "day": day.isoformat(),
                "as_of": scored_at.isoformat(),
                "threshold": cfg.threshold,
                "input": source.description,
                "input_fingerprint": fingerprint,
                "counts": dict(totals),
                "quarantine": quarantine_uri,
                "policies": {"unknown_entities": cfg.unknown_entities, "missing_features": cfg.missing_features},
            }
            shadow_uri = None
            if shadow_pub is not None and comparison is not None and challenger is not None:
                shadow_manifest = shadow_pub.commit(
                    {
                        **metadata,
                        "model_version": challenger.version,
                        "role": "shadow",
                        "comparison": comparison.to_json(),
                    }
                )
                shadow_uri = store.uri(shadow_manifest.prefix + "/")
            manifest = publication.commit(metadata)
    finally:
        quarantine.cleanup()
        close = getattr(source, "close", None)
        if close is not None:
            close()

    return PartitionResult(
        day=day,
        uri=store.uri(prefix + "/"),
        rows_in=rows_in,
        rows_scored=totals["scored"],
        rows_defaulted=totals["defaulted"],
        rows_quarantined=quarantined,
        unknown_entities=totals["unknown_entities"],
        missing_features=totals["missing_features"],
        invalid_rows=totals["invalid"],
        quarantine_uri=quarantine_uri,
        model_version=model.version,
        input_fingerprint=fingerprint,
        output_sha256=manifest.files[0].sha256,
        seconds=time.perf_counter() - started,
        shadow_uri=shadow_uri,
        shadow=comparison.to_json() if comparison is not None else None,
    )
