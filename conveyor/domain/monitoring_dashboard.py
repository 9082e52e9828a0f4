"""The monitoring dashboard: one self-contained HTML page drawn from the monitoring table (matplotlib, inline
PNG) - per-feature drift over time, estimated vs realized performance, the prediction distribution, the
multivariate error, data volume and quarantine counts, and the last weeks as a table."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from conveyor.domain.monitoring_history import realized_metric, recent_table, series

if TYPE_CHECKING:  # matplotlib is imported only when a figure is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _dates(index: pd.Index) -> list[Any]:
    """The index's ISO days as dates, for an x axis. Typed Any: matplotlib plots dates through its unit
    converters, but its type stubs accept numbers only."""
    return [dt.date.fromisoformat(str(d)) for d in index]


def _figure(history: pd.DataFrame) -> str:
    """The five panels, one above the other, as a base64 PNG."""
    from matplotlib.figure import Figure

    # A Figure, not pyplot: no global state (the monitor may run in a thread).
    fig = Figure(figsize=(13, 15))
    axes = fig.subplots(5, 1)
    _drift_panel(fig, axes[0], history)
    _performance_panel(axes[1], history)
    _prediction_panel(axes[2], history)
    _multivariate_panel(axes[3], history)
    _volume_panel(axes[4], history)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=72)
    return base64.b64encode(buffer.getvalue()).decode()


def _drift_panel(fig: Figure, ax: Axes, history: pd.DataFrame) -> None:
    """Per-column drift by day: each statistic over its bound (> 1: beyond what the window size explains)."""
    features = [s for s in history.loc[history["metric"] == "psi", "subject"].unique()]
    days = sorted(history["day"].unique())
    ratio = np.full((len(features), len(days)), np.nan)
    for i, name in enumerate(features):
        psi, bound = series(history, name, "psi"), series(history, name, "psi_bound")
        ks, ks_bound = series(history, name, "ks"), series(history, name, "ks_bound")
        worst = pd.concat([psi / bound, ks / ks_bound], axis=1).max(axis=1)
        ratio[i] = worst.reindex(days).to_numpy()
    image = ax.imshow(ratio, aspect="auto", cmap="RdYlGn_r", vmin=0, vmax=2, interpolation="nearest")
    ax.set_yticks(range(len(features)), features, fontsize=7)
    step = max(1, len(days) // 12)
    ax.set_xticks(range(0, len(days), step), days[::step], fontsize=7, rotation=30)
    ax.set_title("drift per column: max(PSI / PSI bound, KS / KS bound); above 1 = drifted", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.02)


def _performance_panel(ax: Axes, history: pd.DataFrame) -> None:
    """Estimated performance (with its band) vs realized performance, and the test value."""
    metric = realized_metric(history)  # the champion's primary metric (roc_auc, macro_f1, rmse)
    est, se = series(history, "model", f"estimated_{metric}"), series(history, "model", f"estimated_{metric}_se")
    if len(est):
        x = _dates(est.index)
        ax.plot(x, est.to_numpy(), "o-", label=f"estimated {metric} (CBPE, no labels)")
        band = 2 * se.reindex(est.index).fillna(0).to_numpy()
        ax.fill_between(x, est.to_numpy() - band, est.to_numpy() + band, alpha=0.2, label="+/- 2 SE")
    realized = series(history, "model", f"realized_{metric}", by="window_end")
    if len(realized):
        ax.plot(_dates(realized.index), realized.to_numpy(), "s-", label=f"realized {metric} (labels arrived)")
    expected = series(history, "model", f"expected_{metric}")
    if len(expected):
        ax.axhline(float(expected.iloc[-1]), color="grey", ls="--", label=f"test {metric}")
    ax.set_title("performance: estimated at scoring time vs realized when the labels arrive", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _prediction_panel(ax: Axes, history: pd.DataFrame) -> None:
    """The prediction distribution: median, p10-p90 and mean of the score (or regression prediction), or the
    predicted-class mix (multiclass)."""
    subject = "prediction" if len(series(history, "prediction", "p50")) else "score"
    p50 = series(history, subject, "p50")
    if len(p50):
        x = _dates(p50.index)
        ax.fill_between(
            x,
            series(history, subject, "p10").to_numpy(),
            series(history, subject, "p90").to_numpy(),
            alpha=0.2,
            label="p10-p90",
        )
        ax.plot(x, p50.to_numpy(), label=f"median {subject}")
        ax.plot(x, series(history, subject, "mean").to_numpy(), ls=":", label=f"mean {subject}")
        ax.legend(fontsize=7)
    shares = sorted(set(history.loc[history["subject"] == "predicted_class", "metric"]))
    for share in shares:  # multiclass: the predicted-class mix over time
        values = series(history, "predicted_class", share)
        ax.plot(_dates(values.index), values.to_numpy(), label=share.replace("share_", "predicted "))
    if shares:
        ax.legend(fontsize=7)
    ax.set_title("prediction distribution", fontsize=10)


def _multivariate_panel(ax: Axes, history: pd.DataFrame) -> None:
    """The mean PCA reconstruction error by day, inside the reference's band."""
    error = series(history, "model", "reconstruction_error")
    if len(error):
        x = _dates(error.index)
        ax.plot(x, error.to_numpy(), "o-", label="mean PCA reconstruction error")
        ax.fill_between(
            x,
            series(history, "model", "reconstruction_lower").to_numpy(),
            series(history, "model", "reconstruction_upper").to_numpy(),
            alpha=0.2,
            label="reference band",
        )
        ax.legend(fontsize=7)
    ax.set_title("multivariate drift", fontsize=10)


def _volume_panel(ax: Axes, history: pd.DataFrame) -> None:
    """Rows judged and scored (lines), and rows quarantined by scoring (bars, on their own axis)."""
    for metric, style in (("feature_rows", "o-"), ("rows_scored", "s-")):
        values = series(history, "data", metric).dropna()
        if len(values):
            ax.plot(_dates(values.index), values.to_numpy(), style, label=metric)
    quarantined = series(history, "data", "rows_quarantined").dropna()
    if len(quarantined):
        twin = ax.twinx()
        twin.bar(
            _dates(quarantined.index), quarantined.to_numpy(), color="crimson", alpha=0.4, label="rows quarantined"
        )
        twin.set_ylabel("quarantined", fontsize=8)
    ax.set_title("data volume (lines) and rows quarantined by scoring (bars)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left")


def render_dashboard(history: pd.DataFrame, model_name: str, today: dt.date, weeks: int) -> str:
    """The page: title, the last `weeks` weeks as a table, the figure."""
    rows = recent_table(history, today, weeks)
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0]) if rows else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in r.values()) + "</tr>"
        for r in rows
    )
    png = _figure(history) if len(history) else ""
    title = f"Monitoring: {model_name} ({len(history['day'].unique()) if len(history) else 0} judged days)"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><h2>Last {weeks} weeks</h2>"
        f"<table border='1' cellpadding='3'><tr>{head}</tr>{body}</table>"
        + (f'<img alt="monitoring history" src="data:image/png;base64,{png}">' if png else "")
        + "</body></html>"
    )
