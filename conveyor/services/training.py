"""Training: time-based split, the sklearn Pipeline, evaluation, plots, gates and registration, as plain
functions (unit-tested directly); tasks/training.py wraps them as the training flow's Prefect tasks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import io
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import roc_curve
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from configs.settings import DatasetConfig, ModelSpec, Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import RawSnapshot, published_days, read_table_window, table_at
from conveyor.adapters.registry import (
    LoadedModel,
    ModelMetadata,
    ModelRegistry,
    ModelVersion,
)
from conveyor.domain import gates as G
from conveyor.domain.failures import InvalidInput, MissingColumns, MissingInput

log = logging.getLogger(__name__)


# ---- results passed between steps ---------------------------------------------------------------------------
@dataclass
class Split:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    validation_start: pd.Timestamp
    test_start: pd.Timestamp

    def describe(self) -> dict[str, Any]:
        return {
            "train_rows": len(self.train),
            "validation_rows": len(self.validation),
            "test_rows": len(self.test),
            "validation_start": self.validation_start.isoformat(),
            "test_start": self.test_start.isoformat(),
        }


@dataclass
class Candidate:
    """A fitted challenger with what the gates and the registry need (kept in memory within one flow run)."""

    model: Pipeline = field(repr=False)
    model_config_name: str
    spec: ModelSpec
    metrics: dict[str, dict[str, float]]
    split: dict[str, Any]
    test: pd.DataFrame = field(repr=False)  # features + label + `score`
    reference: pd.DataFrame = field(repr=False)  # training sample + `score`
    data_fingerprint: str
    training_rows: int
    fit_seconds: float
    plots: dict[str, bytes] = field(repr=False, default_factory=dict)  # drawn by the gates, champion included


@dataclass
class TrainingOutcome:
    """What a training run decided: shown in the UI, returned to callers (the pipeline, retraining)."""

    promoted: bool
    model_name: str
    version: int | None
    champion_before: int | None
    champion_after: int | None
    gates_passed: bool
    reasons: list[str]
    test_metrics: dict[str, float]
    version_uri: str | None
    timings: dict[str, float] = field(default_factory=dict)


class StepTimer:
    """Wall time per named step of a flow run (reported in the outcome and the bench)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 3)


# ---- pure functions -----------------------------------------------------------------------------------------
def time_split(frame: pd.DataFrame, timestamp_column: str, validation_fraction: float, test_fraction: float) -> Split:
    """Train / validation / test by event time: every test row is later than every validation row, which is
    later than every training row (ties at a boundary go to the later part). No shuffling across time."""
    stamps = pd.to_datetime(frame[timestamp_column], utc=True)
    if stamps.isna().any():
        raise InvalidInput(f"column {timestamp_column!r}: {int(stamps.isna().sum())} null timestamps; cannot split")
    ordered = frame.assign(**{timestamp_column: stamps}).sort_values(timestamp_column, kind="stable")
    n = len(ordered)
    sorted_stamps = ordered[timestamp_column].reset_index(drop=True)
    test_start = sorted_stamps.iloc[min(n - 1, int(np.floor(n * (1 - test_fraction))))]
    validation_start = sorted_stamps.iloc[min(n - 1, int(np.floor(n * (1 - test_fraction - validation_fraction))))]
    ts = ordered[timestamp_column]
    train = ordered[ts < validation_start]
    validation = ordered[(ts >= validation_start) & (ts < test_start)]
    test = ordered[ts >= test_start]
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        if part.empty:
            raise InvalidInput(
                f"time split left the {name} set empty ({n} rows, {stamps.min()} .. {stamps.max()}); "
                "widen the training window"
            )
    return Split(
        train.reset_index(drop=True),
        validation.reset_index(drop=True),
        test.reset_index(drop=True),
        validation_start,
        test_start,
    )


def _estimator(spec: ModelSpec, seed: int) -> Any:
    module_name, _, class_name = spec.estimator.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"training.models estimator {spec.estimator!r} cannot be imported: {exc}") from None
    params = dict(spec.params)
    if "random_state" in cls().get_params() and "random_state" not in params:
        params["random_state"] = seed
    return cls(**params)


def build_pipeline(dataset: DatasetConfig, spec: ModelSpec, seed: int) -> Pipeline:
    """Preprocessing from dataset.yaml (numeric: median impute [+ scale]; categorical: one-hot with the declared
    categories, unknown ignored) + the configured estimator. Takes the raw feature columns, drops any other."""
    numeric_steps: list[Any] = [SimpleImputer(strategy="median")]
    if spec.scale_numeric:
        numeric_steps.append(StandardScaler())
    categorical = dataset.categorical_features
    categories = [dataset.feature(c).categories or "auto" for c in categorical]
    encoder = OneHotEncoder(
        categories=categories if all(c != "auto" for c in categories) else "auto",
        handle_unknown="ignore",
        sparse_output=False,
    )
    preprocess = ColumnTransformer(
        [
            ("numeric", make_pipeline(*numeric_steps), dataset.numeric_features),
            ("categorical", make_pipeline(SimpleImputer(strategy="most_frequent"), encoder), categorical),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    return Pipeline([("preprocess", preprocess), ("model", _estimator(spec, seed))])


def _features(frame: pd.DataFrame, dataset: DatasetConfig) -> pd.DataFrame:
    out = frame[dataset.feature_names].copy()
    for name in dataset.categorical_features:
        out[name] = out[name].astype(object).where(out[name].notna(), np.nan)
    return out


def native_threads(settings: Settings) -> AbstractContextManager[Any]:
    """Cap OpenMP/BLAS threads (training.max_threads): on shared cores, spinning OpenMP workers cost far more
    than they bring (HistGradientBoosting fit 15x slower with 2 threads than 1 on a busy 2-core machine)."""
    limit = settings.training.max_threads
    return nullcontext() if limit is None else threadpool_limits(limits=limit)


def data_fingerprint(frame: pd.DataFrame, columns: list[str]) -> str:
    """SHA-256 over the row hashes of the training rows (order-independent): same data, same fingerprint."""
    hashes = np.sort(pd.util.hash_pandas_object(frame[columns], index=False).to_numpy())
    return hashlib.sha256(hashes.tobytes()).hexdigest()


def fit_and_evaluate(frame: pd.DataFrame, settings: Settings, model_config_name: str) -> Candidate:
    """Split by time, fit the configured pipeline on train, score validation and test. Deterministic for the
    same rows (in any order) and `training.seed`."""
    cfg, ds = settings.training, settings.dataset
    if model_config_name not in cfg.models:
        raise InvalidInput(f"model config {model_config_name!r} is not in training.models {sorted(cfg.models)}")
    spec = cfg.models[model_config_name]
    missing = [c for c in (ds.timestamp_column, ds.label_column, *ds.feature_names) if c not in frame.columns]
    if missing:
        raise MissingColumns(f"training set lacks columns {missing} (dataset.yaml)")
    labels = frame[ds.label_column]
    if labels.isna().any():
        raise InvalidInput(f"label {ds.label_column!r}: {int(labels.isna().sum())} null values in the training set")
    # A canonical row order makes the fit independent of how the rows arrived (Feast does not keep order).
    key = [ds.timestamp_column, ds.entity_column] if ds.entity_column in frame.columns else [ds.timestamp_column]
    frame = frame.sort_values(key, kind="stable").reset_index(drop=True)
    split = time_split(frame, ds.timestamp_column, cfg.validation_fraction, cfg.test_fraction)

    model = build_pipeline(ds, spec, cfg.seed)
    metrics, scored = {}, {}
    sample = split.train.sample(n=min(cfg.reference_sample_rows, len(split.train)), random_state=cfg.seed)
    with native_threads(settings):
        started = time.perf_counter()
        model.fit(_features(split.train, ds), split.train[ds.label_column].astype(int))
        fit_seconds = time.perf_counter() - started
        for name, part in (("train", split.train), ("validation", split.validation), ("test", split.test)):
            scores = model.predict_proba(_features(part, ds))[:, 1]
            metrics[name] = G.classification_metrics(part[ds.label_column], scores)
            scored[name] = scores
        reference = (
            sample[[ds.timestamp_column, *ds.feature_names]]
            .assign(score=model.predict_proba(_features(sample, ds))[:, 1])
            .reset_index(drop=True)
        )
    test = split.test.assign(score=scored["test"])
    return Candidate(
        model=model,
        model_config_name=model_config_name,
        spec=spec,
        metrics=metrics,
        split=split.describe(),
        test=test,
        reference=reference,
        training_rows=len(split.train),
        fit_seconds=round(fit_seconds, 3),
        data_fingerprint=data_fingerprint(frame, [ds.timestamp_column, *ds.feature_names, ds.label_column]),
    )


def evaluation_plots(y: np.ndarray, scores: np.ndarray, champion_scores: np.ndarray | None = None) -> dict[str, bytes]:
    """ROC curve and reliability (calibration) diagram of the test set, as PNG bytes."""
    out = {}
    # Figure objects, not pyplot: no global state, safe in threads (the Agg canvas is the default for Figure).
    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.subplots()
    for label, s in (("challenger", scores), ("champion", champion_scores)):
        if s is not None and len(np.unique(y)) == 2:
            fpr, tpr, _ = roc_curve(y, s)
            ax.plot(fpr, tpr, label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test set)")
    ax.legend(loc="lower right")
    out["roc.png"] = _png(fig)
    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.subplots()
    prob_true, prob_pred = calibration_curve(y, scores, n_bins=10, strategy="quantile")
    ax.plot(prob_pred, prob_true, marker="o", label="challenger")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="mean predicted probability", ylabel="observed churn rate", title="Calibration (test set)")
    ax.legend(loc="upper left")
    out["calibration.png"] = _png(fig)
    return out


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def evaluate_gates(candidate: Candidate, champion: LoadedModel | None, settings: Settings) -> G.GateDecision:
    """Every gate on the challenger's test set; the champion is scored on the very same rows."""
    with native_threads(settings):
        return _evaluate_gates(candidate, champion, settings)


def _evaluate_gates(candidate: Candidate, champion: LoadedModel | None, settings: Settings) -> G.GateDecision:
    ds, gates = settings.dataset, settings.gates
    test = candidate.test
    y = test[ds.label_column]

    def score(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(candidate.model.predict_proba(_features(frame, ds))[:, 1])

    seed, primary = settings.training.seed, settings.training.primary_metric
    challenger_scores = test["score"].to_numpy()
    results: list[G.GateResult] = []
    champion_scores, champion_version, champion_metrics = None, None, None
    if champion is not None:
        champion_version = champion.version.version
        try:
            champion_scores = np.asarray(champion.score(test))
        except (KeyError, ValueError) as exc:
            results.append(
                G.GateResult(
                    "challenger_vs_champion",
                    False,
                    {},
                    [
                        f"champion v{champion_version} cannot score this test set ({exc}); "
                        "promote by hand (force) if the feature set changed on purpose"
                    ],
                )
            )
    # One set of resamples for the floors and the comparison: the champion's intervals are paired with ours.
    boot = G.evaluation_bootstrap(y, challenger_scores, champion_scores, gates, seed)
    test_intervals = {name: boot.interval(G.CHALLENGER, name) for name in G.GATED_METRICS}
    results = [G.minimum_rows_gate(candidate.training_rows, gates), G.absolute_gate(test_intervals, gates), *results]
    if champion is None or champion_scores is not None:
        champion_metrics = None if champion_scores is None else G.classification_metrics(y, champion_scores)
        results.append(G.champion_gate(boot, primary, gates))
        segments = test[[s for s in settings.training.segments if s in test.columns]]
        results.append(G.slice_gate(y, challenger_scores, champion_scores, segments, gates, primary, seed))
    features = test[ds.feature_names]
    results.append(G.invariance_gate(score, features, ds.feature_names, gates, seed=settings.training.seed))
    results.append(G.directional_gate(score, features, gates.directional, ds.feature_names))
    # Drawn here, once: the ROC plot shows the champion's curve on the same rows when there is one.
    candidate.plots = evaluation_plots(y.to_numpy(), challenger_scores, champion_scores)
    return G.decide(results, champion_version, champion_metrics)


def training_metadata(
    candidate: Candidate,
    decision: G.GateDecision,
    settings: Settings,
    start: dt.date,
    end: dt.date,
    feature_service: str | None,
    raw: RawSnapshot | None = None,
    card: dict[str, Any] | None = None,
) -> ModelMetadata:
    """What the registry stores about the candidate; `card` (ModelCard.to_json()) goes into `extra.card`."""
    return ModelMetadata(
        metrics=candidate.metrics,
        gates=decision.to_json(),
        training_window={"start": start.isoformat(), "end": end.isoformat(), **candidate.split},
        feature_service=feature_service,
        feature_names=settings.dataset.feature_names,
        data_fingerprint=candidate.data_fingerprint,
        params={
            "estimator": candidate.spec.estimator,
            **candidate.spec.params,
            "seed": settings.training.seed,
            "scale_numeric": candidate.spec.scale_numeric,
        },
        model_config_name=candidate.model_config_name,
        extra={
            "training_rows": candidate.training_rows,
            "fit_seconds": candidate.fit_seconds,
            **({} if card is None else {"card": card}),
        },
        data_uri=None if raw is None else raw.uri,
        data_version=None if raw is None else raw.version,
    )


def metrics_table(
    candidate: Candidate,
    champion_metrics: dict[str, float] | None = None,
    test_intervals: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    rows = []
    for metric in ("roc_auc", "pr_auc", "brier", "log_loss", "positive_rate", "rows"):
        row: dict[str, Any] = {"metric": metric}
        for part in ("train", "validation", "test"):
            row[part] = round(candidate.metrics[part][metric], 4)
        if test_intervals is not None:
            found = test_intervals.get(metric)
            row["test_ci"] = "" if found is None else f"[{found['low']:.4f}, {found['high']:.4f}]"
        if champion_metrics is not None:
            row["champion_on_test"] = round(champion_metrics.get(metric, float("nan")), 4)
        rows.append(row)
    return rows


# ---- Prefect tasks ------------------------------------------------------------------------------------------
def _registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(ObjectStore(settings.storage), settings)


def entity_rows(frame: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The rows to look features up for: entity, event time and label (features come from the store)."""
    ds = settings.dataset
    return frame[[ds.entity_column, ds.timestamp_column, ds.label_column]]


def unchanged_champion(
    champion: ModelVersion | None, fingerprint: str, model_config_name: str, code: str | None
) -> bool:
    """True when the champion was trained on exactly these rows, with this model config and this code: training
    again would register a copy of it (training is deterministic), so a rerun of the same window is a no-op."""
    return (
        champion is not None
        and code is not None
        and champion.data_fingerprint == fingerprint
        and champion.model_config_name == model_config_name
        and champion.code_version == code
    )


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    detail: str


def resolve_window(settings: Settings, start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
    """Defaults: end = the latest published raw day; start = end - training.window_days + 1."""
    if end is None:
        days = published_days(ObjectStore(settings.storage), settings)
        if not days:
            raise MissingInput(f"no raw partitions of {settings.dataset.name!r} published yet: run the ingest flow")
        end = days[-1]
    start = start or end - dt.timedelta(days=settings.training.window_days - 1)
    if start > end:
        raise InvalidInput(f"training window start {start} is after its end {end}")
    return start, end


def read_training_rows(store: ObjectStore, version: ModelVersion) -> pd.DataFrame:
    """The raw rows a registered model was trained on, read again from the table version it recorded."""
    if version.data_version is None or version.data_uri is None:
        raise MissingInput(f"{version.label} recorded no raw table version (registered before versions were kept)")
    start = dt.date.fromisoformat(version.training_window["start"])
    end = dt.date.fromisoformat(version.training_window["end"])
    table = table_at(store.config, version.data_uri)
    return read_table_window(table, start, end, version=version.data_version).frame
