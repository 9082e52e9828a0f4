"""Fitting a challenger: the time-based split, the sklearn Pipeline of the configured catalogue entry, the
training targets coerced for the task (`dataset.task`, conveyor/domain/task_types.py) and the task's outputs and
metrics on every split. conveyor/services/training.py adds the gates and the registry around it."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from configs.settings import DatasetConfig, ModelSpec, Settings
from conveyor.domain.failures import InvalidInput, MissingColumns
from conveyor.domain.task_outputs import prediction_columns
from conveyor.domain.task_types import PREDICTION, SCORE, ModelTask

BINARY = ModelTask("binary", ("0", "1"))


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
    # features + the coerced label + the task's output columns (task.output_columns) + `score`
    test: pd.DataFrame = field(repr=False)
    reference: pd.DataFrame = field(repr=False)  # training sample + the task's outputs (prediction_columns)
    data_fingerprint: str
    training_rows: int
    fit_seconds: float
    plots: dict[str, bytes] = field(repr=False, default_factory=dict)  # drawn by the gates, champion included
    task: ModelTask = BINARY  # with its classes in the fitted model's column order


def scalar_score(task: ModelTask, outputs: pd.DataFrame) -> np.ndarray:
    """One number a row, the `score` column the registry's reference sample and the drift monitor read: binary
    P(positive), multiclass the probability of the predicted class, regression the prediction."""
    if task.kind == "binary":
        return outputs[SCORE].to_numpy(dtype=float)
    if task.kind == "regression":
        return outputs[PREDICTION].to_numpy(dtype=float)
    return np.asarray(task.probabilities(outputs).max(axis=1), dtype=float)


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


def _estimator(spec: ModelSpec, seed: int, task: ModelTask = BINARY, entry: str = "") -> Any:
    module_name, _, class_name = spec.estimator.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"training.models estimator {spec.estimator!r} cannot be imported: {exc}") from None
    params = dict(spec.params)
    if "random_state" in cls().get_params() and "random_state" not in params:
        params["random_state"] = seed
    estimator = cls(**params)
    where = f"training.models.{entry or '?'} ({spec.estimator})"
    if task.is_classification and not (is_classifier(estimator) and hasattr(estimator, "predict_proba")):
        raise InvalidInput(
            f"{where}: task {task.kind} needs a classifier with predict_proba; pick another entry "
            "(model_config_name) or set training.default_models"
        )
    if task.kind == "regression" and not is_regressor(estimator):
        raise InvalidInput(
            f"{where}: task regression needs a regressor; pick another entry (model_config_name) or set "
            "training.default_models"
        )
    return estimator


def entries_for(settings: Settings, task: ModelTask | None = None) -> list[str]:
    """The catalogue entries (training.models) whose estimator fits `task` (default: dataset.task's)."""
    task = task or ModelTask.of(settings.dataset)
    fitting = []
    for name, spec in settings.training.models.items():
        try:
            _estimator(spec, settings.training.seed, task, name)
        except InvalidInput:
            continue
        fitting.append(name)
    return fitting


def build_pipeline(
    dataset: DatasetConfig, spec: ModelSpec, seed: int, task: ModelTask = BINARY, entry: str = ""
) -> Pipeline:
    """Preprocessing from dataset.yaml (numeric: median impute [+ scale]; categorical: one-hot with the declared
    categories, unknown ignored) + the configured estimator, which must fit `task` (a classifier with
    predict_proba, or a regressor; `entry` names the catalogue entry in the error). Takes the raw feature columns,
    drops any other."""
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
    return Pipeline([("preprocess", preprocess), ("model", _estimator(spec, seed, task, entry))])


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


def fitted_task(task: ModelTask, model: Pipeline, train_labels: pd.Series) -> ModelTask:
    """The task as the fitted model sees it: classification classes in the model's `classes_` column order
    (the order of `predict_proba`), which must hold every class of `task` and no other."""
    if not task.is_classification:
        return task
    seen = [str(c) for c in model.classes_]
    if task.kind == "binary":
        if seen != ["0", "1"]:
            raise InvalidInput(f"the training split holds the target values {seen}; binary training needs both 0 and 1")
        return task
    absent = [c for c in task.classes if c not in seen]
    if absent:
        counts = train_labels.value_counts().to_dict()
        raise InvalidInput(
            f"classes {absent} (dataset.classes) have no rows in the training split (its counts: {counts}): "
            "the model could never predict them; widen the training window or drop them from dataset.classes"
        )
    return dataclasses.replace(task, classes=tuple(seen))


def _labelled(frame: pd.DataFrame, settings: Settings, model_config_name: str) -> tuple[pd.DataFrame, ModelTask]:
    """The training rows with the label coerced for the task, and the task with the classes its labels hold."""
    cfg, ds = settings.training, settings.dataset
    if model_config_name not in cfg.models:
        raise InvalidInput(f"model config {model_config_name!r} is not in training.models {sorted(cfg.models)}")
    missing = [c for c in (ds.timestamp_column, ds.label_column, *ds.feature_names) if c not in frame.columns]
    if missing:
        raise MissingColumns(f"training set lacks columns {missing} (dataset.yaml)")
    raw = frame[ds.label_column]
    task = ModelTask.of(ds).with_classes_from(raw)
    target = task.coerce_labels(raw.reset_index(drop=True), f"training set: label {ds.label_column!r}")
    return frame.reset_index(drop=True).assign(**{ds.label_column: target.to_numpy()}), task


def fit_and_evaluate(frame: pd.DataFrame, settings: Settings, model_config_name: str) -> Candidate:
    """Coerce the labels for dataset.task, split by time, fit the configured pipeline on train, compute the
    task's outputs and metrics on every split. Deterministic for the same rows (in any order) and `training.seed`."""
    cfg, ds = settings.training, settings.dataset
    columns = [ds.timestamp_column, *ds.feature_names, ds.label_column]
    labelled, task = _labelled(frame, settings, model_config_name)
    fingerprint = data_fingerprint(frame, columns)  # of the rows as they came: what skip_if_unchanged compares
    frame = labelled
    spec = cfg.models[model_config_name]
    # A canonical row order makes the fit independent of how the rows arrived (Feast does not keep order).
    key = [ds.timestamp_column, *(c for c in ds.entity_columns if c in frame.columns)]
    frame = frame.sort_values(key, kind="stable").reset_index(drop=True)
    split = time_split(frame, ds.timestamp_column, cfg.validation_fraction, cfg.test_fraction)
    model = build_pipeline(ds, spec, cfg.seed, task, model_config_name)
    threshold = settings.scoring.threshold
    metrics, outputs = {}, {}
    sample = split.train.sample(n=min(cfg.reference_sample_rows, len(split.train)), random_state=cfg.seed)
    with native_threads(settings):
        started = time.perf_counter()
        model.fit(_features(split.train, ds), split.train[ds.label_column])
        fit_seconds = time.perf_counter() - started
        task = fitted_task(task, model, split.train[ds.label_column])
        for name, part in (("train", split.train), ("validation", split.validation), ("test", split.test)):
            outputs[name] = task.outputs(model, _features(part, ds), threshold)
            metrics[name] = task.metrics(part[ds.label_column], outputs[name])
        sample_outputs = task.outputs(model, _features(sample, ds), threshold)
    # The drift reference records the task's outputs (the registry refuses a reference without them).
    reference = pd.concat(
        [sample[[ds.timestamp_column, *ds.feature_names]], sample_outputs[prediction_columns(task)]], axis=1
    ).reset_index(drop=True)
    test_outputs = outputs["test"].drop(columns=[SCORE], errors="ignore")
    if task.kind == "binary":
        test_outputs = test_outputs.drop(columns=["decision"])  # the test rows keep `score`, as before tasks
    test = pd.concat([split.test, test_outputs], axis=1).assign(score=scalar_score(task, outputs["test"]))
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
        data_fingerprint=fingerprint,
        task=task,
    )
