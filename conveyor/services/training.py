"""Training around the fit (conveyor/services/model_fitting.py): the evaluation gates on the test set, per task
(conveyor/domain/gates.py, task_gates.py), the plots (evaluation_plots.py), the registry's metadata and the
window and no-op rules, as plain functions (unit-tested directly); tasks/training.py wraps them as the training
flow's Prefect tasks.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import RawSnapshot, published_days, read_table_window, table_at
from conveyor.adapters.registry import (
    LoadedModel,
    ModelMetadata,
    ModelRegistry,
    ModelVersion,
)
from conveyor.domain import gates as G
from conveyor.domain.failures import InvalidInput, MissingInput
from conveyor.domain.task_gates import bootstrap_inputs, bootstrap_metrics, output_shift
from conveyor.domain.task_types import PREDICTION, SCORE, ModelTask
from conveyor.services.evaluation_plots import evaluation_plots
from conveyor.services.model_fitting import (
    Candidate,
    Split,
    _features,
    build_pipeline,
    data_fingerprint,
    fit_and_evaluate,
    native_threads,
    time_split,
)

# Re-exported: the fit lives in model_fitting, the plots in evaluation_plots; callers import them from here too.
__all__ = [
    "Candidate",
    "Promotion",
    "Split",
    "StepTimer",
    "TrainingOutcome",
    "_features",
    "build_pipeline",
    "data_fingerprint",
    "evaluate_gates",
    "evaluation_plots",
    "fit_and_evaluate",
    "metrics_table",
    "native_threads",
    "primary_metric",
    "table_metrics",
    "time_split",
    "training_metadata",
]

log = logging.getLogger(__name__)


# ---- results passed between steps ---------------------------------------------------------------------------
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


# ---- the gates on the test set ------------------------------------------------------------------------------
def primary_metric(settings: Settings, task: ModelTask) -> str:
    """The metric the champion comparison and the slices decide on: training.primary_metric for binary, the
    task's own (macro_f1, rmse) otherwise."""
    return settings.training.primary_metric if task.kind == "binary" else task.primary_metric


def raw_outputs(task: ModelTask, outputs: pd.DataFrame) -> np.ndarray:
    """What the behavioural checks compare: binary P(positive), multiclass the probability rows, regression the
    prediction."""
    if task.kind == "binary":
        return outputs[SCORE].to_numpy(dtype=float)
    if task.kind == "regression":
        return outputs[PREDICTION].to_numpy(dtype=float)
    return task.probabilities(outputs)


def evaluate_gates(candidate: Candidate, champion: LoadedModel | None, settings: Settings) -> G.GateDecision:
    """Every gate on the challenger's test set; the champion is scored on the very same rows."""
    with native_threads(settings):
        return _evaluate_gates(candidate, champion, settings)


def _champion_outputs(
    candidate: Candidate, champion: LoadedModel, settings: Settings
) -> tuple[pd.DataFrame | None, G.GateResult | None]:
    """The champion's outputs on the challenger's test rows, or the failed comparison saying why there are none."""
    task, version = candidate.task, champion.version.version
    problem = None
    if (champion.task.kind, champion.task.classes) != (task.kind, task.classes):
        problem = (
            f"champion v{version} is a {champion.task.kind} model (classes {list(champion.task.classes)}), this "
            f"one {task.kind} (classes {list(task.classes)}): they cannot be compared"
        )
    else:
        try:
            return champion.outputs(candidate.test, settings.scoring.threshold), None
        except (KeyError, ValueError) as exc:
            problem = f"champion v{version} cannot score this test set ({exc})"
    reason = f"{problem}; promote by hand (force) if the feature set or the task changed on purpose"
    return None, G.GateResult("challenger_vs_champion", False, {}, [reason])


def _evaluate_gates(candidate: Candidate, champion: LoadedModel | None, settings: Settings) -> G.GateDecision:
    ds, gates, task, seed = settings.dataset, settings.gates, candidate.task, settings.training.seed
    test = candidate.test
    y, challenger_scores = bootstrap_inputs(task, test[ds.label_column], test)
    primary = primary_metric(settings, task)
    refused: list[G.GateResult] = []
    champion_scores, champion_version, champion_metrics = None, None, None
    if champion is not None:
        champion_version = champion.version.version
        champion_outputs, failed = _champion_outputs(candidate, champion, settings)
        refused = [] if failed is None else [failed]
        if champion_outputs is not None:
            champion_scores = bootstrap_inputs(task, test[ds.label_column], champion_outputs)[1]
            champion_metrics = task.metrics(test[ds.label_column], champion_outputs)
    # One set of resamples for the floors and the comparison: the champion's intervals are paired with ours.
    metric_names = bootstrap_metrics(task, gates)
    boot = G.evaluation_bootstrap(y, challenger_scores, champion_scores, gates, seed, metric_names)
    test_intervals = {name: boot.interval(G.CHALLENGER, name) for name in metric_names}
    results = [G.minimum_rows_gate(candidate.training_rows, gates), G.absolute_gate(test_intervals, gates, task)]
    results += refused
    if champion is None or champion_scores is not None:
        results.append(G.champion_gate(boot, primary, gates))
        segments = test[[s for s in settings.dataset.slices if s in test.columns]]
        results.append(
            G.slice_gate(y, challenger_scores, champion_scores, segments, gates, primary, seed, task.is_classification)
        )
    results += _behaviour(candidate, settings)
    # Drawn here, once: the plots show the champion on the same rows when there is one.
    candidate.plots = evaluation_plots(y, challenger_scores, champion_scores, task)
    return G.decide(results, champion_version, champion_metrics)


def _behaviour(candidate: Candidate, settings: Settings) -> list[G.GateResult]:
    ds, gates, task = settings.dataset, settings.gates, candidate.task
    test = candidate.test

    def score(frame: pd.DataFrame) -> np.ndarray:
        return raw_outputs(task, task.outputs(candidate.model, _features(frame, ds), settings.scoring.threshold))

    target_std = float(np.std(test[ds.label_column].to_numpy(dtype=float))) if task.kind == "regression" else 1.0
    shift = output_shift(task, target_std)
    features, what = test[ds.feature_names], {"binary": "score", "regression": "prediction"}.get(task.kind, "score")
    return [
        G.invariance_gate(
            score, features, ds.feature_names, ds.invariant_features, gates, seed=settings.training.seed, shift_of=shift
        ),
        G.directional_gate(score, features, ds.directional, ds.feature_names, task.classes, what),
    ]


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
        task=candidate.task.to_json(),
    )


def table_metrics(task: ModelTask) -> tuple[str, ...]:
    """The rows of the metrics table and the card, per task: its metrics, then binary's positive rate or
    multiclass's recall per class."""
    extra = {"binary": ("positive_rate",), "multiclass": tuple(f"recall_{c}" for c in task.classes)}
    return (*task.metric_names, *extra.get(task.kind, ()))


def metrics_table(
    candidate: Candidate,
    champion_metrics: dict[str, float] | None = None,
    test_intervals: dict[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    rows = []
    for metric in (*table_metrics(candidate.task), "rows"):
        row: dict[str, Any] = {"metric": metric}
        for part in ("train", "validation", "test"):
            row[part] = round(candidate.metrics[part].get(metric, float("nan")), 4)
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
    return frame[[*ds.entity_columns, ds.timestamp_column, ds.label_column]]


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
