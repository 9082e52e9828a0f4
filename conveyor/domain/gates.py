"""Evaluation gates: pure functions that decide whether a trained model may serve. Thresholds: `settings.gates`.

Each gate returns a GateResult (passed, metrics, reasons); `decide` combines them into a GateDecision that the
training flow branches on and the registry stores with the version. The champion comparison scores the champion
on the challenger's own test set, so both are judged on the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from configs.settings import DirectionalCheck, GatesConfig

Scorer = Callable[[pd.DataFrame], np.ndarray]
# Higher is better for these; lower is better for the rest (brier, log_loss).
_HIGHER_IS_BETTER = {"roc_auc", "pr_auc"}


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    metrics: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GateDecision:
    """All gates together: the model may be promoted only when every gate passed."""

    passed: bool
    results: list[GateResult]
    champion_version: int | None
    # The champion's metrics on the challenger's test set (None: no champion, or it could not score these rows).
    champion_metrics: dict[str, float] | None = None

    @property
    def reasons(self) -> list[str]:
        return [f"{r.name}: {reason}" for r in self.results for reason in r.reasons]

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "champion_version": self.champion_version,
            "reasons": self.reasons,
            "results": [asdict(r) for r in self.results],
        }

    def markdown(self) -> str:
        verdict = "PASSED: the model may be promoted" if self.passed else "FAILED: the champion stays"
        lines = [
            f"## Gate decision: {verdict}",
            "",
            f"Compared against champion: {'v' + str(self.champion_version) if self.champion_version else 'none'}",
            "",
            "| gate | passed | metrics | reasons |",
            "|---|---|---|---|",
        ]
        for r in self.results:
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in r.metrics.items())
            lines.append(f"| {r.name} | {'yes' if r.passed else '**no**'} | {metrics} | {'; '.join(r.reasons)} |")
        return "\n".join(lines)


def classification_metrics(y_true: np.ndarray | pd.Series, scores: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), Brier score, log loss, positive rate and row count."""
    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(scores, dtype=float), 1e-7, 1 - 1e-7)
    out = {
        "rows": float(len(y)),
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
        "brier": float(brier_score_loss(y, p)) if len(y) else float("nan"),
    }
    if len(np.unique(y)) == 2:
        out.update(
            roc_auc=float(roc_auc_score(y, p)),
            pr_auc=float(average_precision_score(y, p)),
            log_loss=float(log_loss(y, p)),
        )
    else:  # one class only: ranking metrics are undefined
        out.update(roc_auc=float("nan"), pr_auc=float("nan"), log_loss=float("nan"))
    return out


def minimum_rows_gate(training_rows: int, gates: GatesConfig) -> GateResult:
    ok = training_rows >= gates.min_training_rows
    reasons = [] if ok else [f"{training_rows} training rows < min_training_rows {gates.min_training_rows}"]
    return GateResult("minimum_training_rows", ok, {"training_rows": float(training_rows)}, reasons)


def absolute_gate(test_metrics: Mapping[str, float], gates: GatesConfig) -> GateResult:
    """Minimum quality whatever the champion: ROC AUC, PR AUC floors and a Brier ceiling (calibration)."""
    reasons = []
    checks = [
        ("roc_auc", gates.min_roc_auc, ">="),
        ("pr_auc", gates.min_pr_auc, ">="),
        ("brier", gates.max_brier, "<="),
    ]
    for metric, bound, op in checks:
        value = float(test_metrics.get(metric, float("nan")))
        ok = value >= bound if op == ">=" else value <= bound
        if not ok:  # NaN fails both comparisons: an undefined metric never passes
            reasons.append(
                f"test {metric} {value:.4f} is not {op} {bound} (gates.{'min' if op == '>=' else 'max'}_{metric})"
            )
    metrics = {m: float(test_metrics.get(m, float("nan"))) for m, _, _ in checks}
    return GateResult("absolute_minimums", not reasons, metrics, reasons)


def champion_gate(
    challenger: Mapping[str, float], champion: Mapping[str, float] | None, primary: str, gates: GatesConfig
) -> GateResult:
    """Same test set: the primary metric must beat the champion by `min_improvement_to_replace`, and no metric
    (ROC AUC, PR AUC, Brier) may be worse than the champion's by more than `max_regression_vs_champion`."""
    if champion is None:
        return GateResult("challenger_vs_champion", True, {}, [])
    reasons = []
    metrics: dict[str, float] = {}
    for metric in ("roc_auc", "pr_auc", "brier"):
        new, old = float(challenger[metric]), float(champion[metric])
        gain = new - old if metric in _HIGHER_IS_BETTER else old - new
        metrics[f"{metric}_challenger"], metrics[f"{metric}_champion"], metrics[f"{metric}_gain"] = new, old, gain
        if not gain >= -gates.max_regression_vs_champion:
            reasons.append(
                f"{metric} {new:.4f} is worse than the champion's {old:.4f} by {-gain:.4f} "
                f"(> max_regression_vs_champion {gates.max_regression_vs_champion})"
            )
    gain = metrics[f"{primary}_gain"]
    regressed = not gain >= -gates.max_regression_vs_champion  # already reported above
    if not regressed and not gain >= gates.min_improvement_to_replace:
        reasons.append(
            f"{primary} gain {gain:+.4f} over the champion is below min_improvement_to_replace "
            f"{gates.min_improvement_to_replace}"
        )
    return GateResult("challenger_vs_champion", not reasons, metrics, reasons)


def slice_gate(
    y_true: pd.Series, challenger: np.ndarray, champion: np.ndarray | None, segments: pd.DataFrame, gates: GatesConfig
) -> GateResult:
    """Per segment value (e.g. contract_type=two_year): challenger ROC AUC may not drop below the champion's
    by more than `max_slice_regression`. Slices under `min_slice_rows` or with one class are skipped."""
    if champion is None or segments.empty or segments.shape[1] == 0:
        return GateResult("slice_no_regression", True, {}, [])
    y = np.asarray(y_true).astype(int)
    reasons, metrics, skipped = [], {}, 0
    for column in segments.columns:
        values = segments[column].astype(str).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            if mask.sum() < gates.min_slice_rows or len(np.unique(y[mask])) < 2:
                skipped += 1
                continue
            new, old = roc_auc_score(y[mask], challenger[mask]), roc_auc_score(y[mask], champion[mask])
            metrics[f"{column}={value}"] = float(new - old)
            if new - old < -gates.max_slice_regression:
                reasons.append(
                    f"slice {column}={value} ({int(mask.sum())} rows): roc_auc {new:.4f} vs champion "
                    f"{old:.4f} (drop {old - new:.4f} > max_slice_regression {gates.max_slice_regression})"
                )
    metrics["slices_skipped"] = float(skipped)
    return GateResult("slice_no_regression", not reasons, metrics, reasons)


def invariance_gate(
    score: Scorer, frame: pd.DataFrame, features: list[str], gates: GatesConfig, seed: int = 0
) -> GateResult:
    """Behavioural: (1) a column the model was not trained on must not change any score (the pipeline selects
    its own columns); (2) permuting each of `gates.invariant_features` moves scores by at most
    `max_invariance_shift` on average."""
    base = score(frame)
    reasons, metrics = [], {}
    extra = frame.assign(__irrelevant_column__=np.random.default_rng(seed).random(len(frame)))
    shift = float(np.max(np.abs(score(extra) - base))) if len(frame) else 0.0
    metrics["extra_column_max_shift"] = shift
    if shift > 1e-12:
        reasons.append(
            f"an unused extra column changed scores by up to {shift:.3g}: the model reads columns "
            "outside its feature list"
        )
    rng = np.random.default_rng(seed)
    for name in gates.invariant_features:
        if name not in features:
            continue
        permuted = frame.assign(**{name: rng.permutation(frame[name].to_numpy())})
        mean_shift = float(np.mean(np.abs(score(permuted) - base)))
        metrics[f"{name}_mean_abs_shift"] = mean_shift
        if mean_shift > gates.max_invariance_shift:
            reasons.append(
                f"permuting {name!r} moved scores by {mean_shift:.4f} on average "
                f"(> max_invariance_shift {gates.max_invariance_shift})"
            )
    return GateResult("behaviour_invariance", not reasons, metrics, reasons)


def directional_gate(
    score: Scorer, frame: pd.DataFrame, checks: list[DirectionalCheck], features: list[str]
) -> GateResult:
    """Behavioural: adding `delta` to a feature moves the mean score the expected way (e.g. more support calls
    never lower the average churn score)."""
    base = float(np.mean(score(frame))) if len(frame) else 0.0
    reasons, metrics = [], {}
    for check in checks:
        if check.feature not in features:
            continue
        moved = frame.assign(**{check.feature: frame[check.feature] + check.delta})
        change = float(np.mean(score(moved))) - base
        metrics[f"{check.feature}+{check.delta:g}_mean_change"] = change
        signed = change if check.direction == "increase" else -change
        if signed < -check.tolerance:
            reasons.append(
                f"{check.feature} + {check.delta:g} changed the mean score by {change:+.4f}; expected "
                f"an {check.direction} (tolerance {check.tolerance})"
            )
    return GateResult("behaviour_directional", not reasons, metrics, reasons)


def decide(
    results: list[GateResult], champion_version: int | None, champion_metrics: dict[str, float] | None = None
) -> GateDecision:
    return GateDecision(all(r.passed for r in results), results, champion_version, champion_metrics)
