"""The monitoring table: every judgement as rows of (day, model, subject, metric, value), and what is read back
from it (the last weeks as a table, the series the dashboard draws).

Long format, so a new statistic is a new metric name rather than a schema change. `subject` is a feature, the
prediction distribution of the champion's task (`score` binary, `prediction` regression: mean and quantiles;
`predicted_class` multiclass: `share_<class>`), another prediction column's drift (`proba_<class>`), `model`
(performance: `realized_<primary metric>` and `expected_<primary metric>`, multivariate, verdict) or `data`
(volume, quarantine); `window_end` is the window the value describes (for a realized metric: the labelled window,
older than `day`).

Pure pandas; no I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from conveyor.domain.drift import DriftReport
from conveyor.domain.drift_performance import PerformanceCheck
from conveyor.domain.multiclass_estimation import EstimatedClassPerformance
from conveyor.domain.multivariate_drift import MultivariateDrift
from conveyor.domain.performance_estimation import EstimatedPerformance
from conveyor.domain.task_types import PREDICTED_CLASS, PREDICTION, SCORE

COLUMNS = ["day", "model_name", "model_version", "subject", "metric", "value", "window_end", "verdict"]
_FEATURE_METRICS = ("psi", "ks", "jensen_shannon", "wasserstein_std", "psi_bound", "ks_bound")
_SCORE_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
# The primary metrics a realized performance row may carry (binary, multiclass, regression).
REALIZED_METRICS = ("roc_auc", "macro_f1", "rmse")
# One row before the judgement's own columns are added: (subject, metric, value, window_end).
_Row = tuple[str, str, float | None, str]


@dataclass(frozen=True)
class DataVolume:
    """What the window held: feature rows judged, rows scored and quarantined by scoring, quarantined batches."""

    feature_rows: int
    rows_scored: int | None = None
    rows_quarantined: int | None = None
    quarantined_batches: int | None = None


def _distribution_rows(report: DriftReport, outputs: np.ndarray | pd.DataFrame) -> list[tuple[str, str, float, str]]:
    """The window's prediction distribution: score / prediction mean and quantiles, or predicted-class shares."""
    day = report.window_end
    if isinstance(outputs, pd.DataFrame) and PREDICTED_CLASS in outputs.columns:
        shares = outputs[PREDICTED_CLASS].astype(str).value_counts(normalize=True)
        return [(PREDICTED_CLASS, f"share_{c}", float(v), day) for c, v in sorted(shares.items())]
    subject = PREDICTION if report.task == "regression" else SCORE
    if isinstance(outputs, pd.DataFrame):
        outputs = outputs[subject].to_numpy(dtype=float)
    finite = np.asarray(outputs, dtype=float)
    finite = finite[~np.isnan(finite)]
    if not len(finite):
        return []
    quantiles = np.quantile(finite, _SCORE_QUANTILES)
    return [
        (subject, "mean", float(finite.mean()), day),
        *((subject, f"p{round(q * 100)}", float(v), day) for q, v in zip(_SCORE_QUANTILES, quantiles, strict=True)),
    ]


def judgement_rows(report: DriftReport, volume: DataVolume, outputs: np.ndarray | pd.DataFrame) -> pd.DataFrame:
    """The monitoring-table rows of one judgement; `outputs` are the window's published predictions (the task's
    output columns; binary: the scores alone will do)."""
    day = report.window_end
    rows = _column_rows(report)
    rows += _distribution_rows(report, outputs)
    rows += _estimated_rows(report.estimated, day)
    rows += _realized_rows(report.performance, day, rows)
    rows += _multivariate_rows(report.multivariate, day)
    rows += _verdict_and_volume_rows(report, volume)
    frame = pd.DataFrame(
        [
            (
                day,
                report.model_name,
                report.model_version,
                subject,
                metric,
                np.nan if value is None else float(value),
                end,
                report.verdict,
            )
            for subject, metric, value, end in rows
        ],
        columns=COLUMNS,
    )
    return frame


def _column_rows(report: DriftReport) -> list[_Row]:
    """Every feature's and prediction column's drift statistics, and whether it drifted."""
    day = report.window_end
    rows: list[_Row] = []
    for f in [*report.features, *(report.predictions or ([report.prediction] if report.prediction else []))]:
        rows += [(f.name, m, getattr(f, m), day) for m in _FEATURE_METRICS]
        rows.append((f.name, "drifted", float(f.drifted), day))
    return rows


def _estimated_rows(e: EstimatedPerformance | EstimatedClassPerformance | None, day: str) -> list[_Row]:
    """The performance estimated without labels (CBPE): multiclass macro F1, binary ROC AUC; none for regression."""
    if isinstance(e, EstimatedClassPerformance):
        return [
            ("model", f"estimated_{e.metric}", e.macro_f1, day),
            ("model", f"estimated_{e.metric}_se", e.macro_f1_se, day),
            ("model", "estimated_accuracy", e.accuracy, day),
            ("model", f"expected_{e.metric}", e.expected_macro_f1, day),
            ("model", "estimated_decay", float(e.decayed), day),
        ]
    if e is not None:
        return [
            ("model", "estimated_roc_auc", e.roc_auc, day),
            ("model", "estimated_roc_auc_se", e.roc_auc_se, day),
            ("model", "estimated_accuracy", e.accuracy, day),
            ("model", "estimated_f1", e.f1, day),
            ("model", "calibration_error", e.calibration_error, day),
            ("model", "expected_roc_auc", e.expected_roc_auc, day),
            ("model", "estimated_decay", float(e.decayed), day),
        ]
    return []


def _realized_rows(p: PerformanceCheck | None, day: str, earlier: list[_Row]) -> list[_Row]:
    """The metrics on the labelled window (dated by that window's end), when its labels have arrived. `earlier`:
    the judgement's rows so far, so the primary metric's test value is not written twice."""
    if p is None:
        return []
    if p.task == "binary":
        return [
            ("model", "realized_roc_auc", p.roc_auc, p.window_end),
            ("model", "realized_accuracy", p.accuracy, p.window_end),
            ("model", "realized_f1", p.f1, p.window_end),
            ("model", "estimated_roc_auc_on_labelled", p.estimated_roc_auc, p.window_end),
        ]
    # every metric of the task on the labelled window, and the primary one's test value
    rows: list[_Row] = [("model", f"realized_{k}", v, p.window_end) for k, v in p.metrics.items() if k != "rows"]
    if not any(metric == f"expected_{p.metric}" for _, metric, _, _ in earlier):  # the estimate may have it
        rows.append(("model", f"expected_{p.metric}", p.expected, day))
    return rows


def _multivariate_rows(m: MultivariateDrift | None, day: str) -> list[_Row]:
    """The PCA reconstruction error of the window and the reference's band around it."""
    if m is None:
        return []
    return [
        ("model", "reconstruction_error", m.reconstruction_error, day),
        ("model", "reconstruction_lower", m.lower, day),
        ("model", "reconstruction_upper", m.upper, day),
        ("model", "multivariate_drift", float(m.drifted), day),
    ]


def _verdict_and_volume_rows(report: DriftReport, volume: DataVolume) -> list[_Row]:
    day = report.window_end
    return [
        ("model", "drifted_share", report.drifted_share, day),
        ("model", "needs_retraining", float(report.needs_retraining), day),
        ("data", "feature_rows", float(volume.feature_rows), day),
        ("data", "rows_scored", volume.rows_scored, day),
        ("data", "rows_quarantined", volume.rows_quarantined, day),
        ("data", "quarantined_batches", volume.quarantined_batches, day),
    ]


def series(history: pd.DataFrame, subject: str, metric: str, by: str = "day") -> pd.Series:
    """One metric over time (the last judgement of a day wins: a rerun replaces a day)."""
    picked = history[(history["subject"] == subject) & (history["metric"] == metric)]
    return picked.groupby(by)["value"].last().sort_index()


def recent_table(history: pd.DataFrame, today: dt.date, weeks: int) -> list[dict[str, Any]]:
    """One row per judged day of the last `weeks` weeks: what the markdown artifact shows."""
    since = (today - dt.timedelta(weeks=weeks)).isoformat()
    recent = history[history["day"] >= since]
    realized = realized_metric(recent)
    out = []
    for day, rows in recent.groupby("day"):
        value = rows.set_index(["subject", "metric"])["value"]
        value = value[~value.index.duplicated(keep="last")]  # a rerun of the day: its last value
        drifted = sorted(rows[(rows["metric"] == "drifted") & (rows["value"] > 0)]["subject"].unique())

        def pick(subject: str, metric: str, value: pd.Series = value) -> float | None:
            found = value.get((subject, metric))
            return None if found is None or pd.isna(found) else round(float(found), 3)

        out.append(
            {
                "day": day,
                "version": rows["model_version"].iloc[-1],
                "verdict": rows["verdict"].iloc[-1],
                f"estimated_{realized}": pick("model", f"estimated_{realized}"),
                "se": pick("model", f"estimated_{realized}_se"),
                f"realized_{realized} (labelled window)": pick("model", f"realized_{realized}"),
                "reconstruction_error": pick("model", "reconstruction_error"),
                "drifted": ", ".join(drifted) or "-",
                "rows": pick("data", "feature_rows"),
                "quarantined": pick("data", "rows_quarantined"),
            }
        )
    return out


def realized_metric(history: pd.DataFrame) -> str:
    """The primary metric the rows' realized performance is in (binary ROC AUC when none is there yet)."""
    present = set(history.loc[history["subject"] == "model", "metric"])
    return next((m for m in REALIZED_METRICS if f"realized_{m}" in present or f"expected_{m}" in present), "roc_auc")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "_no judgements yet_"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join("" if r[k] is None else str(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines)
