"""Evaluation gates: pure functions that decide whether a trained model may serve. Thresholds: `settings.gates`.

Each gate returns a GateResult (passed, metrics, intervals, reasons); `decide` combines them into a GateDecision
that the training flow branches on and the registry stores with the version. The champion comparison scores the
champion on the challenger's own test set, so both are judged on the same rows, and decides on the paired
bootstrap interval of the difference (conveyor/domain/bootstrap.py), never on two point estimates: a difference
inside the test set's noise is "not different", and the configured rule (`gates.promote_when`) decides.

Every gate takes the task's view (conveyor/domain/task_gates.py): the metrics and absolute bounds of binary,
multiclass or regression, the primary metric with its direction (a gain is signed so that positive = better, also
for a loss such as RMSE), and the model's outputs for the behavioural checks (scores, probability rows or
predictions).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from configs.settings import DirectionalCheck, GatesConfig
from conveyor.domain.bootstrap import BootstrapResult, Interval, bootstrap
from conveyor.domain.task_gates import GATED_METRICS as TASK_GATED_METRICS
from conveyor.domain.task_gates import absolute_bounds
from conveyor.domain.task_types import ModelTask

BETTER, NOT_DIFFERENT, WORSE = "better", "not different", "worse"
CHALLENGER, CHAMPION = "challenger", "champion"

Scorer = Callable[[pd.DataFrame], np.ndarray]
# Per row, how far two outputs of one row are apart (conveyor/domain/task_gates.py: output_shift).
Shift = Callable[[np.ndarray, np.ndarray], np.ndarray]
BINARY = ModelTask("binary", ("0", "1"))
# The binary metrics the absolute floors and the champion comparison read (per task: task_gates.GATED_METRICS).
GATED_METRICS = TASK_GATED_METRICS["binary"]


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    metrics: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    # name -> Interval.to_json() (+ "verdict", "rows" where they apply): what the decision was made on
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)


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

    def intervals_of(self, gate: str) -> dict[str, dict[str, Any]]:
        """The intervals one gate decided on (empty when that gate did not run)."""
        return next((dict(r.intervals) for r in self.results if r.name == gate), {})

    @property
    def verdict(self) -> str | None:
        """better | not different | worse on the primary metric; None without a champion comparison."""
        for r in self.results:
            if r.name == "challenger_vs_champion":
                primary = next((i for i in r.intervals.values() if i.get("primary")), None)
                return None if primary is None else str(primary["verdict"])
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "champion_version": self.champion_version,
            "verdict": self.verdict,
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
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in r.metrics.items() if not r.intervals or k.endswith("rows"))
            lines.append(f"| {r.name} | {'yes' if r.passed else '**no**'} | {metrics} | {'; '.join(r.reasons)} |")
        rows = [(r.name, name, i) for r in self.results for name, i in r.intervals.items()]
        if rows:
            level = rows[0][2]["confidence"]
            lines += [
                "",
                f"Intervals: {level:.0%} paired bootstrap over the test rows ({rows[0][2]['resamples']} resamples)",
                "",
                "| gate | quantity | estimate | CI low | CI high | verdict |",
                "|---|---|---|---|---|---|",
            ]
            for gate, name, i in rows:
                fmt = "{:+.4f}" if "verdict" in i else "{:.4f}"  # gains are signed, metric values are not
                cells = " | ".join(fmt.format(i[k]) for k in ("estimate", "low", "high"))
                lines.append(f"| {gate} | {name} | {cells} | {i.get('verdict', '')} |")
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


def evaluation_bootstrap(
    y: np.ndarray | pd.Series,
    challenger: np.ndarray,
    champion: np.ndarray | None,
    gates: GatesConfig,
    seed: int,
    metric_names: tuple[str, ...] = GATED_METRICS,
) -> BootstrapResult:
    """The gated metrics of the challenger (and the champion, on the same resamples) on the test rows."""
    scores = {CHALLENGER: challenger} if champion is None else {CHALLENGER: challenger, CHAMPION: champion}
    return bootstrap(np.asarray(y), scores, metric_names, gates.bootstrap_resamples, gates.confidence, seed)


def absolute_gate(test: Mapping[str, Interval], gates: GatesConfig, task: ModelTask = BINARY) -> GateResult:
    """Minimum quality whatever the champion, on the interval's unfavourable bound (lower for a score, upper for
    a loss), so a model passes only if it clears the bound with confidence. Binary: ROC AUC and PR AUC floors, a
    Brier ceiling; multiclass: balanced accuracy above chance; regression: R2 above gates.min_r2; plus
    gates.floors (conveyor/domain/task_gates.py)."""
    reasons = []
    checks = absolute_bounds(task, gates)
    for name, bound, op, key in checks:
        ci = test[name]
        side, value = ("lower", ci.low) if op == ">=" else ("upper", ci.high)
        ok = value >= bound if op == ">=" else value <= bound
        if not ok:  # NaN fails both comparisons: an undefined metric never passes
            reasons.append(f"test {name} {ci.text()}: the {side} bound {value:.4f} is not {op} {bound:g} ({key})")
    metrics = {name: test[name].estimate for name, *_ in checks}
    # Every interval computed, bounded or not: the card and the metrics table show them (multiclass / regression
    # bootstrap all of their task's metrics, binary its three bounded ones).
    intervals = {name: ci.to_json() for name, ci in test.items()}
    return GateResult("absolute_minimums", not reasons, metrics, reasons, intervals)


def verdict(gain: Interval, min_improvement: float, max_regression: float) -> str:
    """better: the whole interval above +min_improvement; worse: the whole interval below -max_regression;
    otherwise not different (no difference beyond the margins is established by this test set)."""
    if gain.low > min_improvement:
        return BETTER
    if gain.high < -max_regression:
        return WORSE
    return NOT_DIFFERENT


def champion_gate(boot: BootstrapResult | None, primary: str, gates: GatesConfig) -> GateResult:
    """Challenger vs champion on the same test rows, on the paired interval of each metric's gain (positive =
    the challenger is better). Any metric 'worse' refuses; the primary metric then follows `promote_when`:
    better (its lower bound above min_improvement_to_replace) or not_worse (above -max_regression_vs_champion)."""
    if boot is None or CHAMPION not in boot.estimates:
        return GateResult("challenger_vs_champion", True, {}, [])
    reasons, metrics, intervals = [], {}, {}
    names = [primary, *[m for m in boot.estimates[CHALLENGER] if m != primary]]
    for name in names:
        gain = boot.gain(CHALLENGER, CHAMPION, name)
        found = verdict(gain, gates.min_improvement_to_replace, gates.max_regression_vs_champion)
        metrics[f"{name}_challenger"] = boot.estimates[CHALLENGER][name]
        metrics[f"{name}_champion"] = boot.estimates[CHAMPION][name]
        metrics[f"{name}_gain"] = gain.estimate
        intervals[f"{name} gain"] = {**gain.to_json(), "verdict": found, "primary": name == primary}
        if found == WORSE:
            reasons.append(
                f"{name} is worse than the champion's: gain {gain.text(signed=True)} lies below "
                f"-max_regression_vs_champion {-gates.max_regression_vs_champion}"
            )
    gain = boot.gain(CHALLENGER, CHAMPION, primary)
    found = intervals[f"{primary} gain"]["verdict"]
    if found != WORSE and gates.promote_when == "better" and found != BETTER:
        reasons.append(
            f"{primary} {found} from the champion: gain {gain.text(signed=True)}; promote_when=better needs the "
            f"lower bound above min_improvement_to_replace {gates.min_improvement_to_replace}: the champion stays"
        )
    elif found != WORSE and gates.promote_when == "not_worse" and not gain.low > -gates.max_regression_vs_champion:
        reasons.append(
            f"{primary} {found} from the champion: gain {gain.text(signed=True)}; promote_when=not_worse needs "
            f"the lower bound above -max_regression_vs_champion {-gates.max_regression_vs_champion}"
        )
    return GateResult("challenger_vs_champion", not reasons, metrics, reasons, intervals)


@dataclass(frozen=True)
class SliceBootstrap:
    column: str
    value: str
    rows: int
    result: BootstrapResult | None  # None: skipped (fewer than min_slice_rows rows, or a classifier's single class)

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"


def slice_bootstraps(
    y: np.ndarray | pd.Series,
    scores: Mapping[str, np.ndarray],
    segments: pd.DataFrame,
    metric_name: str,
    gates: GatesConfig,
    seed: int,
    classification: bool = True,
) -> list[SliceBootstrap]:
    """Per segment value (e.g. contract_type=two_year): `metric_name` of each model on that slice's rows, each
    slice resampled on its own (seeded by its position, so the same slices get the same resamples). Labels and
    scores as the bootstrap takes them (task_gates.bootstrap_inputs); a classification slice needs two classes."""
    labels = np.asarray(y).astype(int) if classification else np.asarray(y, dtype=float)
    out = []
    for column in segments.columns:
        values = segments[column].astype(str).to_numpy()
        for value in sorted(set(values)):
            mask = values == value
            rows = int(mask.sum())
            if rows < gates.min_slice_rows or (classification and len(np.unique(labels[mask])) < 2):
                out.append(SliceBootstrap(column, value, rows, None))
                continue
            sliced = {model: np.asarray(s)[mask] for model, s in scores.items()}
            result = bootstrap(
                labels[mask], sliced, (metric_name,), gates.bootstrap_resamples, gates.confidence, seed + len(out)
            )
            out.append(SliceBootstrap(column, value, rows, result))
    return out


def slice_gate(
    y_true: pd.Series,
    challenger: np.ndarray,
    champion: np.ndarray | None,
    segments: pd.DataFrame,
    gates: GatesConfig,
    metric_name: str = "roc_auc",
    seed: int = 0,
    classification: bool = True,
) -> GateResult:
    """Per segment value: refused when the slice's paired gain interval lies entirely below
    -max_slice_regression (the challenger is shown worse there). Slices under `min_slice_rows` rows or with one
    class are skipped, and counted."""
    if champion is None or segments.empty or segments.shape[1] == 0:
        return GateResult("slice_no_regression", True, {}, [])
    reasons, metrics, intervals, skipped = [], {}, {}, 0
    scores = {CHALLENGER: challenger, CHAMPION: champion}
    for part in slice_bootstraps(y_true, scores, segments, metric_name, gates, seed, classification):
        if part.result is None:
            skipped += 1
            continue
        gain = part.result.gain(CHALLENGER, CHAMPION, metric_name)
        found = verdict(gain, 0.0, gates.max_slice_regression)
        metrics[part.name] = gain.estimate
        intervals[part.name] = {**gain.to_json(), "verdict": found, "rows": part.rows}
        if found == WORSE:
            reasons.append(
                f"slice {part.name} ({part.rows} rows): {metric_name} gain {gain.text(signed=True)} lies below "
                f"-max_slice_regression {-gates.max_slice_regression} (challenger "
                f"{part.result.estimates[CHALLENGER][metric_name]:.4f} vs champion "
                f"{part.result.estimates[CHAMPION][metric_name]:.4f})"
            )
    metrics["slices_skipped"] = float(skipped)
    return GateResult("slice_no_regression", not reasons, metrics, reasons, intervals)


def _abs_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))


def invariance_gate(
    score: Scorer,
    frame: pd.DataFrame,
    features: list[str],
    invariant_features: list[str],
    gates: GatesConfig,
    seed: int = 0,
    shift_of: Shift = _abs_change,
) -> GateResult:
    """Behavioural: (1) a column the model was not trained on must not change any output (the pipeline selects
    its own columns); (2) permuting each of `invariant_features` (dataset.yaml) moves outputs by at most
    `max_invariance_shift` on average. `score` returns the model's outputs (scores, probability rows or
    predictions) and `shift_of` their per-row distance (task_gates.output_shift)."""
    base = score(frame)
    reasons, metrics = [], {}
    extra = frame.assign(__irrelevant_column__=np.random.default_rng(seed).random(len(frame)))
    shift = float(np.max(shift_of(score(extra), base))) if len(frame) else 0.0
    metrics["extra_column_max_shift"] = shift
    if shift > 1e-12:
        reasons.append(
            f"an unused extra column changed scores by up to {shift:.3g}: the model reads columns "
            "outside its feature list"
        )
    rng = np.random.default_rng(seed)
    for name in invariant_features:
        if name not in features:
            continue
        permuted = frame.assign(**{name: rng.permutation(frame[name].to_numpy())})
        mean_shift = float(np.mean(shift_of(score(permuted), base)))
        metrics[f"{name}_mean_abs_shift"] = mean_shift
        if mean_shift > gates.max_invariance_shift:
            reasons.append(
                f"permuting {name!r} moved scores by {mean_shift:.4f} on average "
                f"(> max_invariance_shift {gates.max_invariance_shift})"
            )
    return GateResult("behaviour_invariance", not reasons, metrics, reasons)


def directional_gate(
    score: Scorer,
    frame: pd.DataFrame,
    checks: list[DirectionalCheck],
    features: list[str],
    classes: tuple[str, ...] = (),
    output: str = "score",
) -> GateResult:
    """Behavioural: adding `delta` to a feature moves the mean output the expected way (e.g. more support calls
    never lower the average churn score). `score` returns scores or predictions (one value a row), or, for a
    multiclass model, probability rows in `classes` order: a check then reads its `target_class` column."""
    if not len(frame) or not checks:
        return GateResult("behaviour_directional", True, {}, [])
    base_output = np.asarray(score(frame))
    reasons, metrics = [], {}
    for check in checks:
        if check.feature not in features:
            continue
        column, what = None, f"mean {output}"
        if base_output.ndim == 2:
            if check.target_class not in classes:
                reasons.append(f"{check.feature}: target_class {check.target_class!r} is not a class {list(classes)}")
                continue
            column, what = classes.index(str(check.target_class)), f"mean P({check.target_class})"
        base = base_output if column is None else base_output[:, column]
        moved_output = np.asarray(score(frame.assign(**{check.feature: frame[check.feature] + check.delta})))
        moved = moved_output if column is None else moved_output[:, column]
        change = float(np.mean(moved) - np.mean(base))
        label = check.feature if column is None else f"{check.feature}->{check.target_class}"
        metrics[f"{label}+{check.delta:g}_mean_change"] = change
        signed = change if check.direction == "increase" else -change
        if signed < -check.tolerance:
            reasons.append(
                f"{check.feature} + {check.delta:g} changed the {what} by {change:+.4f}; expected "
                f"an {check.direction} (tolerance {check.tolerance})"
            )
    return GateResult("behaviour_directional", not reasons, metrics, reasons)


def decide(
    results: list[GateResult], champion_version: int | None, champion_metrics: dict[str, float] | None = None
) -> GateDecision:
    return GateDecision(all(r.passed for r in results), results, champion_version, champion_metrics)
