"""Configuration of drift monitoring and the retraining it triggers: the thresholds a window is judged by
(conveyor/domain/drift.py) and the guardrails on the retraining that a drift verdict starts. Each default is
written once, here, with what it means."""

from __future__ import annotations

from pydantic import Field

from configs.systems import StrictSection


class DriftConfig(StrictSection):
    """Drift monitor (conveyor/domain/drift.py, flows/drift_monitor.py). A feature drifts when PSI or KS exceeds
    its threshold (a feature's own: `drift` on its entry in dataset.yaml)."""

    psi_threshold: float = Field(default=0.2, gt=0)
    ks_threshold: float = Field(default=0.1, gt=0, le=1, description="the KS statistic, never its p-value")
    prediction_psi_threshold: float = Field(
        default=0.2,
        gt=0,
        description="on the prediction columns of the champion's task (score; predicted class and class "
        "probabilities; prediction)",
    )
    max_drifted_share: float = Field(
        default=0.0, ge=0, le=1, description="drift verdict when more than this share of features drifted"
    )
    bins: int = Field(default=10, ge=2, le=100, description="reference-quantile bins for numeric PSI")
    min_rows: int = Field(
        default=500, ge=1, description="fewer current rows than this: verdict 'insufficient_data', no event"
    )
    max_metric_drop: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="decay, in the champion's task's primary metric on a labelled past window vs its test value: "
        "for a higher-is-better metric (binary ROC AUC, multiclass macro F1) an ABSOLUTE drop (decayed when "
        "value < test - max_metric_drop); for regression RMSE (lower is better, in the target's unit) a RELATIVE "
        "rise (decayed when value > test x (1 + max_metric_drop)); also the estimated (CBPE, binary) ROC AUC drop",
    )
    label_delay_days: int = Field(
        default=30, ge=0, description="labels (churn within 30 days) of a window are known this many days later"
    )
    window_days: int = Field(
        default=7, ge=1, description="days of raw rows (up to the scored day) compared with the reference profile"
    )
    histogram_sample: int = Field(default=200_000, ge=1000, description="rows drawn for the HTML report's histograms")
    calibration_tolerance: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="performance estimation: calibrate the scores on the labelled reference "
        "when their expected calibration error exceeds this",
    )
    estimation_z: float = Field(
        default=2.0, ge=0, description="estimated decay only when estimate + z * standard error is below the floor"
    )
    bootstrap_replicates: int = Field(
        default=200, ge=20, description="resamples of the reference behind standard errors and window-sized bounds"
    )
    seed: int = Field(default=0, description="seed of those resamples: a verdict is reproducible")
    window_sized_bounds: bool = Field(
        default=True,
        description="a feature's bound is the larger of its threshold and the statistic's no-change quantile at "
        "this window's row count (conveyor/domain/drift_bounds.py); false: the fixed thresholds alone",
    )
    multivariate: bool = Field(
        default=True, description="also judge the PCA reconstruction error (conveyor/domain/multivariate_drift.py)"
    )
    pca_variance: float = Field(
        default=0.65, gt=0, lt=1, description="share of the reference's encoded variance the PCA components keep"
    )
    pca_min_change: float = Field(
        default=0.03,
        ge=0,
        description="multivariate drift also needs the mean reconstruction error this far (a share) from the "
        "reference's: the minimum effect, as the PSI/KS thresholds are for single features",
    )
    false_alarm_rate: float = Field(
        default=0.01, gt=0, lt=1, description="chance that a window with no change gets a drift verdict (all features)"
    )


class RetrainingConfig(StrictSection):
    """Event-driven retraining (flows/retraining.py) and its guardrails."""

    cooldown_hours: float = Field(
        default=24.0,
        ge=0,
        description="no second retraining of a model within this; suppressed triggers go to the ledger",
    )
    training_window_days: int = Field(default=60, ge=1, description="days of data up to the drifted window")
    require_approval: bool = Field(
        default=False, description="register the challenger; promotion waits for a person (Prefect UI resume input)"
    )
    approval_timeout_seconds: int = Field(
        default=86_400, ge=1, description="unanswered this long: the run fails (FlowPauseTimeout), the champion stays"
    )
    approval_poll_seconds: int = Field(default=10, ge=1, description="a paused run checks for the answer this often")
    concurrency_slot_timeout_seconds: float = Field(
        default=10, gt=0, description="a trigger that cannot get the model's slot in this time is suppressed"
    )
