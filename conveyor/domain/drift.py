"""The drift verdict: the champion's reference profile vs the latest scored window.

Pure functions (numpy/pandas in, a `DriftReport` out). The per-column statistics are in `drift_statistics.py`,
realized performance in `drift_performance.py` (both re-exported here). Gates use the PSI and the KS *statistic*,
never a p-value: at the row counts a batch job sees, the KS p-value is ~0 for any shift, however small.

- numeric features: PSI on `drift.bins` reference-quantile bins, and the two-sample KS statistic;
- categorical features: PSI over the reference categories plus one bucket for categories never seen in the
  reference (their names and share are reported);
- predictions, per the champion's recorded task (`drift.prediction_psi_threshold`): binary the `score`;
  multiclass the `predicted_class` distribution (PSI) and every `proba_<class>` column (PSI + KS); regression
  the `prediction` (PSI + KS);
- performance: when labels for a past window have arrived, the task's primary metric on it vs its test value;
- estimated performance (no labels; binary `performance_estimation.py`, multiclass `multiclass_estimation.py`): an
  estimated drop is a verdict of its own; for regression the report says why it is not estimated
  (`estimation_note`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from configs.settings import DatasetConfig, DriftConfig, Settings
from conveyor.domain import drift_bounds
from conveyor.domain.drift_performance import PerformanceCheck, performance_check, task_performance_check
from conveyor.domain.drift_statistics import (
    FIXED,
    UNSEEN,
    Bounds,
    FeatureDrift,
    categorical_counts,
    categorical_drift,
    categorical_psi,
    ks_statistic,
    numeric_drift,
    numeric_psi,
    psi_from_counts,
    quantile_edges,
)
from conveyor.domain.failures import MissingColumns
from conveyor.domain.multiclass_estimation import EstimatedClassPerformance
from conveyor.domain.multivariate_drift import MultivariateDrift
from conveyor.domain.performance_estimation import EstimatedPerformance
from conveyor.domain.task_outputs import prediction_columns
from conveyor.domain.task_types import PREDICTED_CLASS, ModelTask

__all__ = [  # the statistics and the performance check, re-exported for the callers that always found them here
    "FIXED",
    "UNSEEN",
    "Bounds",
    "FeatureDrift",
    "PerformanceCheck",
    "categorical_counts",
    "categorical_psi",
    "ks_statistic",
    "numeric_psi",
    "psi_from_counts",
    "performance_check",
    "quantile_edges",
    "task_performance_check",
]

SCORE_COLUMN = "score"
_BINARY = ModelTask("binary", ("0", "1"))

# "estimated_decay": no feature drifted, but the performance estimated from the scores dropped (retrain too).
Verdict = Literal["drift", "estimated_decay", "no_drift", "insufficient_data"]


@dataclass(frozen=True)
class DriftReport:
    """The drift decision as data: verdict, per-column statistics and the reasons behind it."""

    model_name: str
    model_version: str
    window_start: str
    window_end: str
    verdict: Verdict
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    performance: PerformanceCheck | None
    drifted_share: float
    reasons: list[str]
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    # CBPE without labels: binary (ROC AUC, accuracy, F1) or multiclass (macro F1, accuracy); None: regression.
    estimated: EstimatedPerformance | EstimatedClassPerformance | None = None
    multivariate: MultivariateDrift | None = None
    task: str = "binary"  # the champion's recorded task
    # Every prediction column compared (`prediction` is the first: score, predicted_class or prediction).
    predictions: list[FeatureDrift] = field(default_factory=list)
    estimation_note: str | None = None  # why performance was not estimated without labels (None: it was)
    source: str = "batch"  # batch: raw window + published predictions; online: the service's prediction log

    @property
    def drifted(self) -> bool:
        return self.verdict == "drift"

    @property
    def needs_retraining(self) -> bool:
        """Drift, or an estimated performance drop: either emits the retraining event."""
        return self.verdict in ("drift", "estimated_decay")

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["drifted_features"] = self.drifted_features
        return data


def drift_reasons(
    features: list[FeatureDrift],
    prediction: FeatureDrift | list[FeatureDrift] | None,
    performance: PerformanceCheck | None,
    config: DriftConfig,
    estimated: EstimatedPerformance | EstimatedClassPerformance | None = None,
    multivariate: MultivariateDrift | None = None,
) -> tuple[float, list[str]]:
    """The share of drifted features and every reason for a drift verdict (none: no drift)."""
    drifted = [f for f in features if f.drifted]
    share = len(drifted) / len(features)
    reasons: list[str] = []
    if share > config.max_drifted_share:
        reasons.append(
            f"{len(drifted)} of {len(features)} features drifted ({share:.0%} > "
            f"drift.max_drifted_share {config.max_drifted_share:.0%}): {[f.name for f in drifted]}"
        )
        reasons += [r for f in drifted for r in f.reasons]
    predictions = prediction if isinstance(prediction, list) else [prediction] if prediction else []
    reasons += ["prediction drift: " + r for p in predictions if p.drifted for r in p.reasons]
    if performance is not None and performance.decayed:
        reasons.append(performance.describe())
    if multivariate is not None:
        reasons += multivariate.reasons
    if estimated is not None:
        reasons += estimated.reasons
    return share, reasons


def window_bounds(dataset: DatasetConfig, config: DriftConfig, with_scores: bool, task: ModelTask = _BINARY) -> Bounds:
    """The window's share of false alarms split over its statistics: PSI + KS per numeric column, PSI per
    categorical one, the task's prediction columns alike (fixed thresholds alone when `drift.window_sized_bounds`
    is off)."""
    if not config.window_sized_bounds:
        return FIXED
    outputs = prediction_columns(task) if with_scores else []
    predicted = sum(1 if c == PREDICTED_CLASS else 2 for c in outputs)
    statistics = 2 * len(dataset.numeric_features) + len(dataset.categorical_features) + predicted
    alpha = drift_bounds.alpha_per_statistic(config.false_alarm_rate, statistics)
    return Bounds(alpha, config.bootstrap_replicates, np.random.default_rng(config.seed))


def prediction_drift(
    task: ModelTask, reference: pd.DataFrame, outputs: pd.DataFrame, config: DriftConfig, bounds: Bounds = FIXED
) -> list[FeatureDrift]:
    """The task's prediction columns (`prediction_columns`), reference vs current, each at
    `drift.prediction_psi_threshold`: the predicted class (first) by category shares, numeric outputs by PSI + KS."""
    found = []
    names = prediction_columns(task)
    for name in [*(n for n in names if n == PREDICTED_CLASS), *(n for n in names if n != PREDICTED_CLASS)]:
        if name == PREDICTED_CLASS:
            stat = categorical_drift(name, reference[name].astype(str), outputs[name].astype(str), config, bounds)
            stat = _as_prediction(stat, config, bounds)
        else:
            stat = numeric_drift(name, reference[name], outputs[name], config, kind="prediction", bounds=bounds)
        found.append(stat)
    return found


def _as_prediction(stat: FeatureDrift, config: DriftConfig, bounds: Bounds) -> FeatureDrift:
    """A categorical statistic judged as a prediction column: at `drift.prediction_psi_threshold`."""
    limit = config.prediction_psi_threshold
    fired = bounds.exceeded(stat.name, "PSI", stat.psi, limit, stat.psi_no_change, stat.current_rows)
    others = [r for r in stat.reasons if "not in the reference" in r]  # a class the reference never predicted
    bound = limit if stat.psi_no_change is None else max(limit, stat.psi_no_change)
    return dataclasses.replace(
        stat,
        kind="prediction",
        psi_threshold=limit,
        psi_bound=bound,
        drifted=fired is not None,
        reasons=[*([fired] if fired else []), *others],
    )


def _outputs_of(
    task: ModelTask, reference: pd.DataFrame, current: pd.DataFrame, scores: pd.Series | None, outputs: Any
) -> pd.DataFrame | None:
    """The window's published outputs to compare, or None when there are none (or the reference lacks them)."""
    columns = prediction_columns(task)
    if outputs is None and scores is not None:
        outputs = pd.DataFrame({SCORE_COLUMN: scores.to_numpy()})
    if outputs is None and all(c in current.columns for c in columns):
        outputs = current[columns]
    if outputs is None or len(outputs) == 0 or any(c not in reference.columns for c in columns):
        return None
    missing = [c for c in columns if c not in outputs.columns]
    if missing:
        raise MissingColumns(f"drift: the {task.kind} outputs lack column(s) {missing} (published predictions)")
    return outputs  # type: ignore[no-any-return]


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    dataset: DatasetConfig,
    config: DriftConfig,
    *,
    model_name: str,
    model_version: str,
    window_start: dt.date,
    window_end: dt.date,
    current_scores: pd.Series | None = None,
    performance: PerformanceCheck | None = None,
    estimated: EstimatedPerformance | EstimatedClassPerformance | None = None,
    multivariate: MultivariateDrift | None = None,
    current_outputs: pd.DataFrame | None = None,
    task: ModelTask = _BINARY,
    estimation_note: str | None = None,
) -> DriftReport:
    """Compare the current window with the reference profile: every feature, the task's predictions, and
    performance.

    `current_outputs` are the window's published predictions (the task's output columns; binary: or just
    `current_scores`); they may cover a different set of rows than the feature rows (a scoring snapshot vs the
    window's events); default: those columns of `current` if present. `estimated` (performance_estimation) and
    `multivariate` (multivariate_drift) are judged by the caller, which holds the fitted calibration and PCA.
    """
    header = (model_name, model_version, window_start.isoformat(), window_end.isoformat())
    if len(current) < config.min_rows:
        why = f"{len(current)} rows in the current window, fewer than drift.min_rows={config.min_rows}"
        return _insufficient_data(header, why, performance, estimated, task, estimation_note)
    missing = [c for c in dataset.feature_names if c not in current.columns or c not in reference.columns]
    if missing:
        raise MissingColumns(f"drift: feature column(s) {missing} missing from the reference or the current window")
    outputs = _outputs_of(task, reference, current, current_scores, current_outputs)
    bounds = window_bounds(dataset, config, outputs is not None, task)
    features = _feature_drift(reference, current, dataset, config, bounds)
    predictions = [] if outputs is None else prediction_drift(task, reference, outputs, config, bounds)
    share, reasons = drift_reasons(features, predictions, performance, config, estimated, multivariate)
    return DriftReport(
        *header,
        _verdict(reasons, estimated),
        features,
        predictions[0] if predictions else None,
        performance,
        share,
        reasons,
        multivariate=multivariate,
        predictions=predictions,
        estimated=estimated,
        task=task.kind,
        estimation_note=estimation_note,
    )


def _feature_drift(
    reference: pd.DataFrame, current: pd.DataFrame, dataset: DatasetConfig, config: DriftConfig, bounds: Bounds
) -> list[FeatureDrift]:
    """Every feature's statistics, in the dataset's feature order: numeric by PSI and KS, categorical by PSI, each
    against its own thresholds when its dataset.yaml entry has them (`drift: {psi, ks}`)."""
    return [
        numeric_drift(
            name, reference[name], current[name], config, bounds=bounds, thresholds=dataset.feature(name).drift
        )
        if name in dataset.numeric_features
        else categorical_drift(name, reference[name], current[name], config, bounds, dataset.feature(name).drift)
        for name in dataset.feature_names
    ]


def _verdict(reasons: list[str], estimated: EstimatedPerformance | EstimatedClassPerformance | None) -> Verdict:
    """Any reason is a verdict; when the estimated performance drop is the only one, it is `estimated_decay`."""
    if not reasons:
        return "no_drift"
    only_estimated = estimated is not None and estimated.decayed and len(reasons) == len(estimated.reasons)
    return "estimated_decay" if only_estimated else "drift"


def _insufficient_data(
    header: tuple[str, str, str, str],
    why: str,
    performance: PerformanceCheck | None,
    estimated: EstimatedPerformance | EstimatedClassPerformance | None,
    task: ModelTask,
    estimation_note: str | None,
) -> DriftReport:
    """Too few current rows to judge: no statistics, and the verdict `insufficient_data` (no retraining event)."""
    return DriftReport(
        *header,
        "insufficient_data",
        [],
        None,
        performance,
        0.0,
        [why],
        estimated=estimated,
        task=task.kind,
        estimation_note=estimation_note,
    )


# ---- reports ------------------------------------------------------------------------------------------------
def report_prefix(settings: Settings, model_name: str, window_end: str) -> str:
    return f"{settings.storage.prefixes.reports}/drift/{model_name}/dt={window_end}"
