"""The test-set plots of a version, per task, as PNG bytes (stored next to the version, shown in its card):
binary ROC (with the champion's curve on the same rows) + reliability diagram; multiclass confusion matrix +
one-vs-rest reliability per class; regression predicted vs actual + residuals against the prediction."""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, roc_curve

from conveyor.domain.task_types import ModelTask

# Which files each task draws, in the order the card shows them.
PLOT_FILES = {
    "binary": ("roc.png", "calibration.png"),
    "multiclass": ("confusion_matrix.png", "calibration.png"),
    "regression": ("predicted_vs_actual.png", "residuals.png"),
}


def evaluation_plots(
    y: np.ndarray,
    scores: np.ndarray,
    champion_scores: np.ndarray | None = None,
    task: ModelTask | None = None,
) -> dict[str, bytes]:
    """The task's plots of the test set (`task` None: binary). `y` and `scores` as the bootstrap takes them
    (task_gates.bootstrap_inputs): 0/1 and P(positive); class indices and the probability matrix; target and
    prediction. The champion's scores are drawn where a plot compares (binary ROC, regression)."""
    kind = "binary" if task is None else task.kind
    if kind == "multiclass":
        assert task is not None
        return _multiclass(np.asarray(y).astype(int), np.asarray(scores), task.classes)
    if kind == "regression":
        return _regression(np.asarray(y, dtype=float), np.asarray(scores, dtype=float), champion_scores)
    return _binary(np.asarray(y), np.asarray(scores), champion_scores)


def _binary(y: np.ndarray, scores: np.ndarray, champion_scores: np.ndarray | None) -> dict[str, bytes]:
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


def _multiclass(y: np.ndarray, proba: np.ndarray, classes: tuple[str, ...]) -> dict[str, bytes]:
    k = len(classes)
    matrix = confusion_matrix(y, proba.argmax(axis=1), labels=list(range(k)))
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(5.5, 5), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{matrix[i, j]:,}", ha="center", va="center", color="white" if share[i, j] > 0.5 else "k")
    ax.set(xticks=range(k), yticks=range(k), xticklabels=classes, yticklabels=classes)
    ax.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix (test set)")
    out = {"confusion_matrix.png": _png(fig)}
    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.subplots()
    for i, name in enumerate(classes):  # one-vs-rest: P(class) against how often the class is the truth
        truth = (y == i).astype(int)
        if len(np.unique(truth)) == 2:
            prob_true, prob_pred = calibration_curve(truth, proba[:, i], n_bins=10, strategy="quantile")
            ax.plot(prob_pred, prob_true, marker="o", label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="mean predicted probability", ylabel="observed share", title="Calibration per class (test set)")
    ax.legend(loc="upper left")
    out["calibration.png"] = _png(fig)
    return out


def _regression(y: np.ndarray, predicted: np.ndarray, champion: np.ndarray | None) -> dict[str, bytes]:
    shown = np.random.default_rng(0).permutation(len(y))[:5000]  # a readable scatter, the same rows every time
    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.subplots()
    ax.scatter(y[shown], predicted[shown], s=4, alpha=0.35, label="challenger")
    if champion is not None:
        ax.scatter(y[shown], np.asarray(champion, dtype=float)[shown], s=4, alpha=0.25, label="champion")
    low, high = float(np.nanmin(y)), float(np.nanmax(y))
    ax.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (test set)")
    ax.legend(loc="upper left")
    out = {"predicted_vs_actual.png": _png(fig)}
    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.subplots()
    ax.scatter(predicted[shown], (y - predicted)[shown], s=4, alpha=0.35)
    ax.axhline(0.0, linestyle="--", color="grey", linewidth=1)
    ax.set(xlabel="predicted", ylabel="residual (actual - predicted)", title="Residuals (test set)")
    out["residuals.png"] = _png(fig)
    return out


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()
