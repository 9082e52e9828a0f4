"""Configuration of the pipeline's stages: demo data, ingest, training and its gates, the model card and ONNX
twin, batch scoring, validation and the online service (drift monitoring and retraining: configs/monitoring.py).
Each default is written once, here, with what it means."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from configs.systems import StrictSection


class GeneratorConfig(StrictSection):
    """The synthetic churn data (conveyor/demo/synthetic.py), the default dataset."""

    seed: int = Field(default=7, description="same seed -> same data")
    n_entities: int = Field(default=5000, ge=10, description="customers")
    start_date: dt.date = Field(default=dt.date(2026, 1, 1), description="first day `conveyor run` lands")
    days: int = Field(default=120, ge=1, description="days `conveyor run` lands")
    events_per_entity_per_month: float = Field(default=2.0, gt=0)


class IngestConfig(StrictSection):
    """Landing the user's own files (conveyor/services/ingest.py): read incrementally, spilled to local disk by
    day, and each day validated against the raw suite before it is published."""

    batch_rows: int = Field(
        default=100_000,
        ge=1_000,
        description="rows read from a source file at a time (parquet batches, CSV blocks sized from the file's "
        "own line length): with the largest day, this bounds ingest's memory, whatever the history",
    )
    staging_dir: Path | None = Field(
        default=None,
        description="local folder the rows are spilled to by day (deleted after the run); None: the system's "
        "temporary folder. Needs room for the source once, compressed",
    )


TaskKind = Literal["binary", "multiclass", "regression"]


class GatesConfig(StrictSection):
    """Evaluation gates a model must pass to be promoted (conveyor/domain/gates.py)."""

    # The absolute floors are checked against the interval's unfavourable bound (lower for ROC/PR AUC, upper for
    # Brier): a model must be above the floor with the configured confidence, not merely on this test set.
    min_roc_auc: float = Field(default=0.70, ge=0, le=1, description="on the test set: the interval's lower bound")
    min_pr_auc: float = Field(default=0.30, ge=0, le=1, description="on the test set: the interval's lower bound")
    max_brier: float = Field(default=0.20, ge=0, le=1, description="on the test set: the interval's upper bound")
    min_r2: float = Field(
        default=0.0,
        le=1,
        description="regression: the test R2 interval's lower bound must be at least this (0: the model predicts "
        "better than the test set's mean would; a model that learned nothing has R2 <= 0 and fails)",
    )
    min_balanced_accuracy_lift: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="multiclass: the test balanced accuracy interval's lower bound must be at least chance (1 / the "
        "number of classes) plus this, so a model that guesses fails",
    )
    floors: dict[str, float] = Field(
        default_factory=dict,
        description="more absolute bounds, any task: {metric: bound} for metrics of the task (task_types.METRICS, "
        "e.g. {mae: 12.5, macro_f1: 0.6}); a metric where higher is better needs its interval's lower bound >= "
        "bound, a loss its upper bound <= bound. Checked against the task's metrics when the gates run",
    )
    min_training_rows: int = Field(default=1000, ge=1)
    max_regression_vs_champion: float = Field(
        default=0.005,
        ge=0,
        description="the 'not worse' margin: a challenger is not worse when the lower bound of its gain's interval "
        "is above -max_regression; every compared metric whose whole interval lies below -max_regression is "
        "'worse'. In each metric's unit: for rmse/mae, the target's (gains are signed so that positive = better)",
    )
    min_improvement_to_replace: float = Field(
        default=0.0,
        ge=0,
        description="the 'better' margin: better when the lower bound of the primary metric's gain interval is "
        "above this (0: better with the configured confidence, however slightly)",
    )
    promote_when: Literal["better", "not_worse"] = Field(
        default="better",
        description="the rule on the primary metric. better (default): keep the champion unless the challenger is "
        "shown better; a difference inside the test set's noise ('not different') keeps it, because replacing a "
        "serving model moves every downstream score for no demonstrated gain, and a rule on point estimates "
        "promotes half of all equal models by chance. not_worse: replace it unless the challenger may be worse "
        "by more than max_regression_vs_champion (prefer the newer model, e.g. trained on fresher data)",
    )
    bootstrap_resamples: int = Field(
        default=1000, ge=100, description="paired bootstrap resamples of the test rows behind every interval"
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="two-sided level of every interval")
    max_slice_regression: float = Field(
        default=0.02,
        ge=0,
        description="per slice (dataset.slices): refused when the whole interval of the slice's "
        "primary-metric gain lies below -max_slice_regression (slices are small: their intervals are wide, so a "
        "slice refuses on evidence of a regression, not on the lack of evidence that there is none)",
    )
    min_slice_rows: int = Field(
        default=200, ge=1, description="slices with fewer test rows (or a single class) are skipped, and reported"
    )
    max_invariance_shift: float = Field(
        default=0.05,
        ge=0,
        description="mean output change allowed per row: |score change| (binary), the total-variation distance "
        "of the probability vectors (multiclass), |prediction change| / the test target's std (regression)",
    )


class ModelCardConfig(StrictSection):
    """The model card written with every registered version (conveyor/services/model_card.py): HTML next to the
    version, JSON in its metadata, markdown in the Prefect UI."""

    # Permutation importance costs repeats x features predictions of the sample: with these it costs about what
    # the gates cost; the card reports the spread over the repeats, so a noisy ranking shows.
    importance_repeats: int = Field(default=3, ge=1, description="permutation importance: shuffles per feature")
    importance_max_rows: int = Field(
        default=3000, ge=100, description="permutation importance on at most this many test rows (seeded sample)"
    )
    calibration_bins: int = Field(default=10, ge=2, le=50, description="quantile bins of the reliability table")
    min_group_rows: int = Field(
        default=100, ge=1, description="fairness groups with fewer test rows are shown, and named as a limitation"
    )


class ModelSpec(StrictSection):
    """An estimator (import path) and its hyper-parameters; preprocessing comes from dataset.features."""

    estimator: str = Field(pattern=r"^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$", description="e.g. sklearn.ensemble.X")
    params: dict[str, Any] = Field(default_factory=dict)
    scale_numeric: bool = Field(default=False, description="StandardScaler on numeric features (linear models)")


_DEFAULT_MODELS: dict[TaskKind, str] = {"binary": "default", "multiclass": "default", "regression": "regression"}


class TrainingConfig(StrictSection):
    """Training (tasks/training.py, flows/training.py) and the model registry (conveyor/adapters/registry.py)."""

    # "" = derived at load (configs/settings.py): the dataset's name, so a new dataset.yaml needs no other edit.
    model_name: str = Field(
        default="", pattern=r"^[a-z][a-z0-9_-]*$", description="registry model name; default: the dataset's name"
    )
    model_config_name: str = Field(
        default="",
        description="entry of `models` used when the flow names none; default (''): default_models[dataset.task]",
    )
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    default_models: dict[TaskKind, str] = Field(
        default_factory=lambda: _DEFAULT_MODELS.copy(),
        description="per dataset.task, the `models` entry trained when neither the flow nor model_config_name names "
        "one. An entry must fit the task: a classifier for binary/multiclass, a regressor for regression",
    )
    seed: int = Field(default=42, description="same data + seed -> same model and metrics")
    validation_fraction: float = Field(
        default=0.15, gt=0, lt=0.5, description="time-based split train | validation | test, no shuffling"
    )
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5, description="the latest rows by event time")
    primary_metric: Literal["roc_auc", "pr_auc"] = Field(
        default="roc_auc",
        description="binary: the metric challenger vs champion and the slices decide on; multiclass decides on "
        "macro_f1, regression on rmse (task_types.PRIMARY_METRIC)",
    )
    reference_sample_rows: int = Field(
        default=20_000, ge=100, description="training rows (+ score) stored with each version for drift"
    )
    window_days: int = Field(default=90, ge=1, description="training window when the flow names no start date")
    max_threads: int | None = Field(
        default=1,
        ge=1,
        description="OpenMP/BLAS threads in fit/predict (threadpoolctl); None: all cores. 1 because the local "
        "stack shares its cores: HistGradientBoosting with 2 threads on a busy 2-core box was many times slower "
        "(bench/training_profile.py); raise it on a dedicated node",
    )

    @model_validator(mode="after")
    def _default_model_exists(self) -> TrainingConfig:
        if self.models and self.model_config_name and self.model_config_name not in self.models:
            raise ValueError(f"model_config_name {self.model_config_name!r} is not one of {sorted(self.models)}")
        missing = {task: name for task, name in self.default_models.items() if name not in self.models}
        if self.models and missing:
            raise ValueError(f"default_models {missing}: not entries of models {sorted(self.models)}")
        return self


class ScoringConfig(StrictSection):
    """Batch inference (flows/batch_inference.py, conveyor/services/scoring.py)."""

    model_name: str = Field(
        default="", description="registry model scored when the flow names none; default: training.model_name"
    )
    chunk_rows: int = Field(default=500_000, ge=1_000, description="rows in memory per chunk, whatever the input")
    threshold: float = Field(default=0.5, ge=0, le=1, description="decision = score >= threshold")
    population_lookback_days: int = Field(default=30, ge=1, description="score entities seen in this many days")
    unknown_entities: Literal["default", "quarantine"] = Field(
        default="quarantine",
        description="rows whose entity has no feature values: scored with feature_defaults, or quarantined "
        "(counted either way)",
    )
    missing_features: Literal["default", "quarantine"] = Field(
        default="default",
        description="rows with some features null: default (feature_defaults, else NaN to the model's own "
        "imputer) or quarantine",
    )
    feature_defaults: dict[str, float | str] = Field(default_factory=dict)
    max_quarantined_share: float = Field(
        default=0.05, ge=0, le=1, description="more quarantined rows than this share: rejected, nothing published"
    )
    validation_sample_rows: int = Field(default=10_000, ge=100, description="rows checked by the GX scoring suite")
    upload_part_mb: int = Field(default=16, ge=5, le=512, description="S3 multipart part size")
    task_runner: Literal["thread", "dask"] = Field(
        default="thread", description="thread | dask (a prefect-dask LocalCluster per flow run)"
    )
    max_parallel_partitions: int = Field(default=2, ge=1, description="partitions scored at once")
    shadow_prefix: str = Field(
        default="shadow-predictions", description="challenger scores; never under storage.prefixes.predictions"
    )
    runtime: Literal["sklearn", "onnx"] = Field(
        default="sklearn",
        description="sklearn: the pickled Pipeline; onnx: the version's ONNX twin in onnxruntime. A version whose "
        "twin is missing or failed its parity check is refused (no silent fallback: set sklearn to score it)",
    )


class TwinConfig(StrictSection):
    """The ONNX twin exported with every registered version (conveyor/adapters/onnx_twin.py)."""

    export: bool = Field(default=True, description="export and parity-check an ONNX twin at registration")
    parity_tolerance: float = Field(
        default=1e-4,
        ge=0,
        description="max |sklearn - onnxruntime| allowed on the test rows: classification every class probability "
        "(binary P(positive)), absolute; regression the prediction, relative to the target scale (the std of the "
        "Pipeline's predictions on those rows)",
    )
    max_parity_rows: int = Field(default=100_000, ge=1, description="test rows the parity check scores (the first N)")
    threads: int = Field(default=1, ge=1, description="onnxruntime intra-op threads per session")


class ValidationConfig(StrictSection):
    """The data validation gate (tasks/validation.py); the suites themselves are JSON in `suites_dir`."""

    mode: Literal["batch", "row"] = Field(
        default="batch",
        description="batch: any failure rejects the whole batch; row: rows breaking row-level "
        "rules are quarantined and the rest go on (batch-level rules still reject the batch)",
    )
    engine: Literal["fast", "gx"] = Field(
        default="fast",
        description="fast: vectorized pandas decides, Great Expectations renders the report and "
        "Data Docs when a batch fails; gx: Great Expectations decides every batch (slower)",
    )
    suites_dir: Path = Field(
        default=Path("configs/expectations"), description="raw.json, scoring.json: the source of truth at run time"
    )
    docs_dir: Path | None = Field(
        default=None, description="GX Data Docs (HTML); None: <local_stack.state_dir>/gx-docs (git-ignored)"
    )
    build_docs: bool = True
    publish_docs: bool = Field(
        default=True,
        description="also copy a failed batch's Data Docs page next to its report.json in quarantine "
        "(data-docs.html), so the page is where the batch is, not only on the machine that ran the flow",
    )
    sample_size: int = Field(default=5, ge=0, le=100, description="bad values kept per failed expectation")
    # The four below are what `conveyor validation init-suites` writes into the suites; at run time the JSON rules.
    max_null_share: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="features: `mostly` = 1 - this, unless the feature sets its own max_null_share in "
        "dataset.yaml; key columns never null",
    )
    max_age_hours: float = Field(
        default=36, gt=0, description="freshness: newest timestamp no older than this before as_of"
    )
    min_rows: int = Field(default=1, ge=0)
    max_rows: int = Field(default=50_000_000, ge=1)


class ServingConfig(StrictSection):
    """The online inference service (conveyor/serving/, `conveyor serve`, `conveyor stack up --api`)."""

    model_name: str | None = Field(default=None, description="model served; None: scoring.model_name")
    host: str = Field(default="127.0.0.1", description="bind address; 0.0.0.0 only inside a container")
    port: int = Field(default=8088, ge=1024, le=65535)
    poll_seconds: float = Field(
        default=2.0, gt=0, description="how often the registry's champion and rollout state are re-read"
    )
    warmup_rows: int = Field(
        default=32, ge=1, description="reference-sample rows a new version scores (and must reproduce) before traffic"
    )
    api_key: SecretStr | None = Field(
        default=None, description="required in the X-API-Key header when set; from CONVEYOR_SERVING__API_KEY only"
    )
    require_api_key: bool = Field(default=False, description="refuse to start without api_key (prod profile)")
    max_request_bytes: int = Field(default=1_048_576, ge=1024, description="larger bodies get 413")
    max_rows: int = Field(default=1000, ge=1, description="entity ids or rows per request")
    log_prefix: str = Field(default="prediction-logs", description="prediction log partitions on the object store")
    log_buffer_rows: int = Field(
        default=200_000, ge=100, description="rows buffered in memory; full: requests wait (back-pressure), then 503"
    )
    log_wait_seconds: float = Field(default=2.0, ge=0, description="longest a request waits for buffer room")
    log_flush_seconds: float = Field(
        default=5.0, gt=0, description="flush interval: at most this much of the log is lost on a kill -9"
    )
    log_flush_rows: int = Field(default=50_000, ge=1, description="flush early once this many rows are buffered")
