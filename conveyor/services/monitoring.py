"""The drift monitor's work (called by tasks/monitoring.py): load the champion's reference and the latest
scored window, judge, report, emit. Everything follows the champion's recorded task (`ModelVersion.model_task`),
never today's `dataset.task`.

The statistics live in `conveyor/domain/drift.py` (pure). Here: where the data comes from and where the report goes.
- reference: the registry's reference profile of the champion (training features + the model's outputs);
- current features: the raw rows of the `drift.window_days` days up to the scored day;
- current outputs: the published predictions of the scored day (`predictions/<model>/dt=<day>/`), the task's
  prediction columns (score; proba_<class> + predicted_class; prediction);
- or, with the online source, the online service's answers of the day and their inputs (its prediction log);
- performance: the champion's outputs on the labelled raw rows of the window `drift.label_delay_days` earlier,
  judged by the task's primary metric (binary: realized and estimated side by side);
- estimated performance (no labels): binary, CBPE on the scored day's published scores, calibrated on the
  version's labelled monitoring reference (held-out test rows stored at registration, `MONITORING_REFERENCE`);
  multiclass, CBPE on its published class probabilities (macro F1 vs the test macro F1; probabilities used as
  they are). Regression versions are reported "not estimated" (`DriftReport.estimation_note`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from typing import Any

import numpy as np
import pandas as pd

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore, dataframe_to_parquet_bytes
from conveyor.adapters.publication import published_prefixes, read_manifest, read_published_parquet
from conveyor.adapters.raw_data import read_raw_window
from conveyor.adapters.registry import LoadedModel, ModelRegistry, ModelVersion
from conveyor.adapters.registry_records import RegistryError
from conveyor.domain import drift, drift_report
from conveyor.domain import performance_estimation as pe
from conveyor.domain.failures import MissingInput
from conveyor.domain.monitoring_profile import PROFILE_FILE, profile_from_bytes, profile_to_bytes
from conveyor.domain.multiclass_estimation import EstimatedClassPerformance, estimate_class_performance
from conveyor.domain.multivariate_drift import MultivariateDrift, ReconstructionProfile
from conveyor.domain.task_outputs import prediction_columns
from conveyor.domain.task_types import SCORE, ModelTask
from conveyor.services.online_traffic import online_traffic
from conveyor.services.scoring import predictions_prefix

_BINARY = ModelTask("binary", ("0", "1"))

MONITORING_REFERENCE = "monitoring_reference.parquet"


def monitoring_reference_files(
    test: pd.DataFrame, settings: Settings, reference: pd.DataFrame | None = None, task: ModelTask | None = None
) -> dict[str, bytes]:
    """The registry files of a new version of `task` (default binary 0/1): its held-out test rows (features, the
    task's prediction columns, label), on which performance estimation calibrates the scores and sizes its
    standard errors (binary); with the version's `reference` sample, also the precomputed profile (PCA +
    standard errors), so a monitor run does not rebuild it."""
    ds, task = settings.dataset, task or _BINARY
    missing = [c for c in [*ds.feature_names, *prediction_columns(task), ds.label_column] if c not in test.columns]
    if missing:
        raise MissingInput(f"monitoring reference of a {task.kind} version: test rows lack column(s) {missing}")
    rows = test[[*ds.feature_names, *prediction_columns(task), ds.label_column]]
    rows = rows.sample(n=min(settings.training.reference_sample_rows, len(rows)), random_state=settings.training.seed)
    files = {MONITORING_REFERENCE: dataframe_to_parquet_bytes(rows.reset_index(drop=True))}
    if reference is not None:
        pca = ReconstructionProfile.fit(reference, ds, settings.drift)
        errors = PerformanceEstimator.fit(rows, settings, None).errors_at_reference if task.kind == "binary" else {}
        files[PROFILE_FILE] = profile_to_bytes(pca, errors, settings.drift)
    return files


def stored_profile(
    registry: ModelRegistry, champion: ModelVersion, settings: Settings
) -> tuple[ReconstructionProfile, dict[str, float]] | None:
    """The profile stored at registration, if there is one built with the current `drift` settings."""
    if PROFILE_FILE not in champion.files:
        return None
    return profile_from_bytes(registry.get_file(champion.model_name, champion.version, PROFILE_FILE), settings.drift)


def labelled_reference(registry: ModelRegistry, champion: ModelVersion) -> pd.DataFrame | None:
    """The version's monitoring reference; None for versions registered before it existed (their scores are then
    taken as calibrated probabilities and no standard error is known)."""
    try:
        data = registry.get_file(champion.model_name, champion.version, MONITORING_REFERENCE)
    except RegistryError:
        return None
    return pd.read_parquet(io.BytesIO(data))


@dataclasses.dataclass(frozen=True)
class PerformanceEstimator:
    """CBPE fitted on one version's labelled reference: the calibration map, the reference's (score, label) and
    the metrics' standard errors at the reference's own size (a window at least that large scales them)."""

    calibrator: pe.Calibrator
    labels: np.ndarray | None
    scores: np.ndarray | None
    expected_roc_auc: float | None
    errors_at_reference: dict[str, float]

    @classmethod
    def fit(
        cls,
        reference: pd.DataFrame | None,
        settings: Settings,
        expected_roc_auc: float | None,
        errors: dict[str, float] | None = None,
    ) -> PerformanceEstimator:
        cfg, label = settings.drift, settings.dataset.label_column
        if reference is None:
            return cls(pe.fit_calibrator(None, None, cfg.calibration_tolerance), None, None, expected_roc_auc, {})
        labels = reference[label].to_numpy(dtype=int)
        scores = reference[drift.SCORE_COLUMN].to_numpy(dtype=float)
        if errors is None:  # not precomputed at registration
            errors = pe.sampling_errors(
                labels, scores, len(labels), settings.scoring.threshold, cfg.bootstrap_replicates, cfg.seed
            )
        calibrator = pe.fit_calibrator(scores, labels, cfg.calibration_tolerance)
        return cls(calibrator, labels, scores, expected_roc_auc, errors)

    def standard_errors(self, rows: int, settings: Settings) -> dict[str, float]:
        if self.labels is None or self.scores is None:
            return {}
        if rows >= len(self.labels):  # the bootstrap would draw the reference's size anyway: scale
            return {k: v * float(np.sqrt(len(self.labels) / rows)) for k, v in self.errors_at_reference.items()}
        cfg = settings.drift
        return pe.sampling_errors(
            self.labels, self.scores, rows, settings.scoring.threshold, cfg.bootstrap_replicates, cfg.seed
        )

    def estimate(self, scores: np.ndarray, settings: Settings) -> pe.EstimatedPerformance:
        return pe.estimate_performance(
            scores,
            self.calibrator,
            self.standard_errors(len(scores), settings),
            threshold=settings.scoring.threshold,
            expected_roc_auc_value=self.expected_roc_auc,
            max_drop=settings.drift.max_metric_drop,
            z=settings.drift.estimation_z,
        )


def latest_scored_day(store: ObjectStore, settings: Settings, model_name: str) -> dt.date:
    root = f"{settings.storage.prefixes.predictions}/{model_name}/"
    days = [dt.date.fromisoformat(p.rsplit("dt=", 1)[1]) for p in published_prefixes(store, root) if "dt=" in p]
    if not days:
        raise MissingInput(f"drift monitor: no published predictions for model {model_name!r} under {store.uri(root)}")
    return max(days)


def _window(end: dt.date, days: int) -> tuple[dt.date, dt.date]:
    return end - dt.timedelta(days=days - 1), end


def labelled_performance(
    store: ObjectStore,
    settings: Settings,
    model: LoadedModel,
    expected: float | None,
    scored_day: dt.date,
    estimator: PerformanceEstimator | None = None,
) -> drift.PerformanceCheck | None:
    """Performance on the past window whose labels have arrived, in the version's task's primary metric vs its
    test value `expected` (binary: realized and estimated from the same rows' scores when an estimator is given);
    None if there is no such window or no test value."""
    if expected is None:
        return None
    start, end = _window(scored_day - dt.timedelta(days=settings.drift.label_delay_days), settings.drift.window_days)
    try:
        labelled = read_raw_window(store, settings, start, end)
    except LookupError:
        return None
    task, label = model.task, settings.dataset.label_column
    outputs = model.outputs(labelled, settings.scoring.threshold)
    labels = task.coerce_labels(labelled[label], f"labelled window {start}..{end}, label column {label!r}")
    max_drop = settings.drift.max_metric_drop
    check = drift.task_performance_check(task, labels.to_numpy(), outputs, expected, max_drop, start, end)
    if check is None or task.kind != "binary":
        return check
    scores = outputs[SCORE].to_numpy(dtype=float)
    realized = pe.realized_metrics(labels.to_numpy(), scores, settings.scoring.threshold)
    check = dataclasses.replace(check, accuracy=realized["accuracy"], f1=realized["f1"])
    if estimator is None:
        return check
    estimate = estimator.estimate(scores, settings)
    return dataclasses.replace(
        check, estimated_roc_auc=estimate.roc_auc, estimated_accuracy=estimate.accuracy, estimated_f1=estimate.f1
    )


def multivariate_drift(
    reference: pd.DataFrame, current: pd.DataFrame, settings: Settings, profile: ReconstructionProfile | None = None
) -> MultivariateDrift | None:
    """PCA reconstruction error of the window vs the reference's band (profile: the one stored at registration,
    else fitted now); None when switched off, or when a feature column is missing (the comparison then fails
    naming it)."""
    names = settings.dataset.feature_names
    if not settings.drift.multivariate or any(n not in current.columns or n not in reference.columns for n in names):
        return None
    profile = profile or ReconstructionProfile.fit(reference, settings.dataset, settings.drift)
    return profile.judge(current, settings.drift)


def published_outputs(store: ObjectStore, settings: Settings, model_name: str, day: dt.date, task: ModelTask) -> Any:
    """The day's published prediction columns of `task`; a clear error when that day was scored by a version of
    another task (its columns are not the champion's: score the day again with the champion)."""
    prefix = predictions_prefix(settings, model_name, day)
    manifest = read_manifest(store, prefix)
    recorded = ModelTask.from_json((manifest.metadata if manifest else {}).get("task"))
    if manifest is not None and recorded.output_columns != task.output_columns:
        raise MissingInput(
            f"drift monitor: {store.uri(prefix)}/ was scored by version {manifest.metadata.get('model_version')} "
            f"with outputs {recorded.output_columns}, the champion's task gives {task.output_columns}: score "
            f"dt={day} with the champion first"
        )
    return read_published_parquet(store, prefix, columns=prediction_columns(task))


def _estimate(
    estimator: PerformanceEstimator, task: ModelTask, outputs: pd.DataFrame, settings: Settings, expected: Any
) -> tuple[pe.EstimatedPerformance | EstimatedClassPerformance | None, str | None]:
    """CBPE for a classifier (binary from its scores, multiclass from its class probabilities); for a regression
    version (None, why it is not estimated)."""
    cfg = settings.drift
    if task.kind == "multiclass":
        proba = task.probabilities(outputs)
        estimate = estimate_class_performance(
            proba,
            expected_macro_f1=expected,
            max_drop=cfg.max_metric_drop,
            z=cfg.estimation_z,
            replicates=cfg.bootstrap_replicates,
            seed=cfg.seed,
        )
        return estimate, None
    if task.kind == "regression":
        return None, (
            "not estimated: CBPE estimates a classifier's metrics from its probabilities; a regression "
            f"version's {task.primary_metric} is judged once labels arrive"
        )
    return estimator.estimate(outputs[SCORE].to_numpy(dtype=float), settings), None


def drift_report_for_day(
    store: ObjectStore, settings: Settings, model_name: str, scored_day: dt.date, source: str = "batch"
) -> tuple[drift.DriftReport, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Everything the verdict needs, loaded and compared; also returns the frames for the HTML histograms (the
    last: the day's outputs). `source` batch: the raw rows of the window and the day's published predictions;
    online: the online service's answers of that day, from its prediction log (conveyor/services/online_traffic.py)."""
    registry = ModelRegistry(store, settings)
    champion = registry.champion(model_name)
    if champion is None:
        raise MissingInput(f"drift monitor: model {model_name!r} has no champion in the registry; train one first")
    task = champion.model_task
    reference = registry.reference_of(champion)
    if source == "online":
        start, end = scored_day, scored_day
        current, outputs = online_traffic(store, settings, champion, scored_day)
    else:
        start, end = _window(scored_day, settings.drift.window_days)
        current = read_raw_window(store, settings, start, end)
        outputs = published_outputs(store, settings, model_name, scored_day, task)
    loaded = registry.load_version(champion)
    expected = champion.test_metrics.get(task.primary_metric)
    stored = stored_profile(registry, champion, settings)
    labelled = labelled_reference(registry, champion) if task.kind == "binary" else None
    estimator = PerformanceEstimator.fit(labelled, settings, expected, None if stored is None else stored[1])
    performance = labelled_performance(store, settings, loaded, expected, scored_day, estimator)
    estimated, note = _estimate(estimator, task, outputs, settings, expected)
    report = drift.compare(
        reference,
        current,
        settings.dataset,
        settings.drift,
        model_name=model_name,
        model_version=str(champion.version),
        window_start=start,
        window_end=end,
        current_outputs=outputs,
        task=task,
        performance=performance,
        estimated=estimated,
        estimation_note=note,
        multivariate=multivariate_drift(reference, current, settings, None if stored is None else stored[0]),
    )
    return dataclasses.replace(report, source=source), reference, current, outputs


def write_reports(
    store: ObjectStore,
    settings: Settings,
    report: drift.DriftReport,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    outputs: pd.DataFrame | pd.Series,
) -> dict[str, str]:
    """JSON + HTML report under `reports/drift/<model>/dt=<day>/` (an online judgement: `.../dt=<day>/online/`,
    beside the batch one); returns their URIs."""
    prefix = drift.report_prefix(settings, report.model_name, report.window_end)
    prefix += "/online" if report.source == "online" else ""
    store.put_json(f"{prefix}/drift.json", report.to_json())
    page = drift_report.render_html(report, reference, current, outputs, settings.drift.histogram_sample)
    store.put_bytes(f"{prefix}/drift.html", page.encode(), content_type="text/html")
    return {"json": store.uri(f"{prefix}/drift.json"), "html": store.uri(f"{prefix}/drift.html")}


def drift_event_payload(report: drift.DriftReport, report_uri: str | None = None) -> dict[str, Any]:
    estimated = report.estimated
    binary = estimated if isinstance(estimated, pe.EstimatedPerformance) else None
    classes = estimated if isinstance(estimated, EstimatedClassPerformance) else None
    scores = {
        f.name: {"psi": round(f.psi, 4), "ks": None if f.ks is None else round(f.ks, 4)}
        for f in report.features
        if f.drifted
    }
    for p in report.predictions or ([report.prediction] if report.prediction else []):
        scores[p.name] = {"psi": round(p.psi, 4), "ks": None if p.ks is None else round(p.ks, 4)}
    return {
        "model_version": report.model_version,
        "drifted_features": report.drifted_features,
        "scores": scores,
        "window_start": report.window_start,
        "window_end": report.window_end,
        "performance_decayed": bool(report.performance and report.performance.decayed),
        "estimated_decay": bool(report.estimated and report.estimated.decayed),
        "estimated_roc_auc": None if binary is None else round(binary.roc_auc, 4),
        "estimated_macro_f1": None if classes is None else round(classes.macro_f1, 4),
        "task": report.task,
        "performance_metric": None if report.performance is None else report.performance.metric,
        "reasons": report.reasons[:10],
        "report_uri": report_uri,
    }
