"""The drift report as people read it: a verdict table per feature and an HTML page with reference vs current
histograms (matplotlib, embedded as PNG), built from a `DriftReport`."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import numpy as np
import pandas as pd

from conveyor.domain.drift import SCORE_COLUMN, DriftReport
from conveyor.domain.drift_statistics import FeatureDrift, numeric_values
from conveyor.domain.multiclass_estimation import EstimatedClassPerformance


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _predictions(report: DriftReport) -> list[FeatureDrift]:
    """Every prediction column judged (reports written before tasks existed hold only `prediction`)."""
    return report.predictions or ([report.prediction] if report.prediction else [])


def _as_outputs(current_outputs: pd.DataFrame | pd.Series | None) -> pd.DataFrame | None:
    """The window's published outputs as a frame (binary callers may hand over the scores alone)."""
    if current_outputs is None or isinstance(current_outputs, pd.DataFrame):
        return current_outputs
    return pd.DataFrame({SCORE_COLUMN: current_outputs.to_numpy()})


def verdict_table(report: DriftReport) -> list[dict[str, Any]]:
    """One row per column: what the Prefect table artifact and the HTML report show."""
    rows = []
    for f in [*report.features, *_predictions(report)]:
        rows.append(
            {
                "column": f.name,
                "kind": f.kind,
                "psi": round(f.psi, 4),
                "psi_threshold": f.psi_threshold,
                "psi_bound": _rounded(f.psi_bound),
                "ks": None if f.ks is None else round(f.ks, 4),
                "ks_threshold": f.ks_threshold,
                "ks_bound": _rounded(f.ks_bound),
                "jensen_shannon": _rounded(f.jensen_shannon),
                "wasserstein_std": _rounded(f.wasserstein_std),
                "unseen_share": round(f.unseen_share, 4),
                "verdict": "DRIFT" if f.drifted else "ok",
            }
        )
    return rows


def _histogram_figure(
    reference: pd.DataFrame, current: pd.DataFrame, outputs: pd.DataFrame | None, report: DriftReport, sample: int
) -> str:
    """All reference-vs-current histograms in one PNG grid (one render is far cheaper than one per column)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [*report.features, *_predictions(report)]
    ncols = 4
    nrows = math.ceil(len(columns) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.8 * nrows), squeeze=False)
    ref = reference.sample(min(sample, len(reference)), random_state=0) if len(reference) > sample else reference
    cur = current.sample(min(sample, len(current)), random_state=0) if len(current) > sample else current
    for ax, stat in zip(axes.flat, columns, strict=False):
        cur_column = cur[stat.name] if stat.kind != "prediction" or outputs is None else outputs[stat.name]
        if stat.kind == "categorical" or stat.ks is None:  # a categorical feature, or the predicted class
            r = ref[stat.name].astype("object").value_counts(normalize=True)
            c = cur_column.astype("object").value_counts(normalize=True)
            cats = sorted(set(r.index) | set(c.index), key=str)
            x = np.arange(len(cats))
            ax.bar(x - 0.2, r.reindex(cats, fill_value=0), 0.4, label="reference")
            ax.bar(x + 0.2, c.reindex(cats, fill_value=0), 0.4, label="current")
            ax.set_xticks(x, [str(k) for k in cats], rotation=30, fontsize=7)
        else:
            r_vals, c_vals = numeric_values(ref[stat.name]), numeric_values(cur_column)
            lo, hi = np.nanmin(np.r_[r_vals, c_vals]), np.nanmax(np.r_[r_vals, c_vals])
            edges = np.linspace(lo, hi if hi > lo else lo + 1, 31)
            ax.hist(r_vals, edges, density=True, alpha=0.5, label="reference")
            ax.hist(c_vals, edges, density=True, alpha=0.5, label="current")
        ks = "" if stat.ks is None else f" KS {stat.ks:.3f}"
        ax.set_title(
            f"{stat.name}: PSI {stat.psi:.3f}{ks}" + (" DRIFT" if stat.drifted else ""),
            fontsize=9,
            color="crimson" if stat.drifted else "black",
        )
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(columns) :]:
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def estimate_summary(report: DriftReport) -> str:
    """One sentence on the performance estimated without labels (or why there is none), for artifacts."""
    e = report.estimated
    if isinstance(e, EstimatedClassPerformance):
        return f"Estimated macro F1 (no labels) {e.macro_f1:.3f} +/- {e.z * e.macro_f1_se:.3f}. "
    if e is not None:
        return f"Estimated ROC AUC (no labels) {e.roc_auc:.3f} +/- {e.z * e.roc_auc_se:.3f}. "
    return f"Performance {report.estimation_note}. " if report.estimation_note else ""


def estimated_performance_html(report: DriftReport) -> str:
    """The CBPE estimate of this window, and estimated vs realized on the window whose labels have arrived."""
    out = ""
    e = report.estimated
    if isinstance(e, EstimatedClassPerformance):
        low, high = e.band
        expected = "" if e.expected_macro_f1 is None else f" vs test {e.expected_macro_f1:.3f} (max drop {e.max_drop})"
        out += (
            f"<p>Estimated performance without labels (CBPE from the class probabilities, used as they are; "
            f"{e.rows} scored rows): macro F1 {e.macro_f1:.3f} [{low:.3f}, {high:.3f}]{expected}, accuracy "
            f"{e.accuracy:.3f}: {'DECAY ESTIMATED' if e.decayed else 'ok'}</p>"
        )
    elif e is not None:
        low, high = e.roc_auc_band
        calibration = (
            "no labelled reference: scores taken as probabilities"
            if e.calibration_error is None
            else f"reference calibration error {e.calibration_error:.3f}"
            + (", isotonic-calibrated" if e.calibrated else ", scores used as they are")
        )
        expected = "" if e.expected_roc_auc is None else f" vs test {e.expected_roc_auc:.3f} (max drop {e.max_drop})"
        out += (
            f"<p>Estimated performance without labels (CBPE, {e.rows} scored rows; {calibration}): ROC AUC "
            f"{e.roc_auc:.3f} [{low:.3f}, {high:.3f}]{expected}, accuracy {e.accuracy:.3f}, F1 {e.f1:.3f} "
            f"at threshold {e.threshold}: {'DECAY ESTIMATED' if e.decayed else 'ok'}</p>"
        )
    if report.estimation_note:
        out += f"<p>Estimated performance without labels: {html.escape(report.estimation_note)}</p>"
    p = report.performance
    if p is not None and p.estimated_roc_auc is not None:
        out += (
            "<table border='1' cellpadding='3'><tr><th>labelled window</th><th>metric</th><th>estimated</th>"
            "<th>realized</th></tr>"
            + "".join(
                f"<tr><td>{p.window_start}..{p.window_end}</td><td>{name}</td><td>{est:.3f}</td><td>{real:.3f}</td></tr>"
                for name, est, real in (
                    ("ROC AUC", p.estimated_roc_auc, p.roc_auc),
                    ("accuracy", p.estimated_accuracy, p.accuracy),
                    ("F1", p.estimated_f1, p.f1),
                )
                if est is not None and real is not None
            )
            + "</table>"
        )
    return out


def render_html(
    report: DriftReport,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    current_outputs: pd.DataFrame | pd.Series | None = None,
    sample: int = 200_000,
) -> str:
    """A self-contained HTML page: verdict, reasons, the per-column table and the histograms (inline PNG).
    `current_outputs`: the window's published predictions (the task's output columns, or binary scores)."""
    rows = verdict_table(report)
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0]) if rows else ""
    body = "".join(
        "<tr{}>".format(' style="background:#fdd"' if r["verdict"] == "DRIFT" else "")
        + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values())
        + "</tr>"
        for r in rows
    )
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in report.reasons) or "<li>none</li>"
    perf = ""
    if report.performance is not None:
        p = report.performance
        value = p.roc_auc if p.value is None else p.value  # reports written before tasks carry roc_auc only
        expected = p.expected_roc_auc if p.expected is None else p.expected
        perf = (
            f"<p>Performance on {p.window_start}..{p.window_end} ({p.rows} labelled rows): {p.metric} "
            f"{value:.4g} vs test {expected:.4g} (max {p.change} {p.max_drop}): "
            f"{'DECAYED' if p.decayed else 'ok'}</p>"
        )
    perf += estimated_performance_html(report)
    if report.multivariate is not None:
        m = report.multivariate
        perf += (
            f"<p>Multivariate (PCA reconstruction error, {m.components} of {m.encoded_columns} encoded columns): "
            f"{m.reconstruction_error:.3f} vs reference {m.reference_error:.3f}, band [{m.lower:.3f}, {m.upper:.3f}] "
            f"at {m.rows} rows: {'DRIFT' if m.drifted else 'ok'}</p>"
        )
    image = ""
    if rows:
        png = _histogram_figure(reference, current, _as_outputs(current_outputs), report, sample)
        image = f'<img alt="histograms: reference vs current" src="data:image/png;base64,{png}">'
    title = f"Drift report: {report.model_name} v{report.model_version}, {report.window_start}..{report.window_end}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Verdict: <b>{report.verdict}</b></p><ul>{reasons}</ul>{perf}"
        f"<table border='1' cellpadding='3'><tr>{head}</tr>{body}</table>{image}</body></html>"
    )
