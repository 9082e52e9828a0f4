"""What kind of prediction a model makes (`dataset.task`) and everything that follows from it, in one place.

    task = ModelTask.of(settings.dataset)         # from the config (training) ...
    task = ModelTask.from_json(metadata["task"])  # ... or from a registered version (scoring, serving, monitoring)
    y = task.coerce_labels(frame[label], "label 'churned'")   # training targets, or InvalidLabels naming the rule
    out = task.outputs(model, features, threshold)            # the batch / online output columns, per task
    task.metrics(y, out)                                      # the task's metrics; task.primary_metric decides gates

binary      target: bool, 0/1 (ints or floats 1.0/0.0), or two named classes with `dataset.positive_class`;
            model: a classifier trained on 0/1; outputs `score` (P(positive)) and `decision` (score >= threshold).
multiclass  target: strings or integers (stored as text); model: a classifier; outputs one `proba_<class>` column
            per class (in `classes` order) and `predicted_class`.
regression  target: numbers; model: a regressor; output `prediction`.

A registered version records its task (`to_json`), so a consumer never re-derives it from today's config: a
multiclass model keeps its classes and their order even after dataset.yaml changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from conveyor.domain.failures import InvalidInput

TaskKind = Literal["binary", "multiclass", "regression"]
TASK_KINDS: tuple[TaskKind, ...] = ("binary", "multiclass", "regression")


class InvalidLabels(InvalidInput):
    """Target values the task cannot use; the message names the column, the rule, the count and examples."""


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    description: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("roc_auc", True, "area under the ROC curve (ranking quality)"),
        Metric("pr_auc", True, "average precision (area under the precision-recall curve)"),
        Metric("brier", False, "mean squared error of the predicted probability"),
        Metric("log_loss", False, "cross-entropy of the predicted probabilities"),
        Metric("macro_f1", True, "F1 averaged over classes, each class weighing the same"),
        Metric("balanced_accuracy", True, "recall averaged over classes"),
        Metric("rmse", False, "root mean squared error, in the target's unit"),
        Metric("mae", False, "mean absolute error, in the target's unit"),
        Metric("r2", True, "share of the target's variance explained (0: no better than its mean)"),
    )
}

# The metric gates decide on, per task (the champion comparison, slices, the card's headline).
PRIMARY_METRIC: dict[TaskKind, str] = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}
# Every metric reported per task (training, the card, realized performance in monitoring).
TASK_METRICS: dict[TaskKind, tuple[str, ...]] = {
    "binary": ("roc_auc", "pr_auc", "brier", "log_loss"),
    "multiclass": ("macro_f1", "balanced_accuracy", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}

SCORE, DECISION, PREDICTED_CLASS, PREDICTION = "score", "decision", "predicted_class", "prediction"
PROBA_PREFIX = "proba_"


@dataclass(frozen=True)
class ModelTask:
    kind: TaskKind
    # Classification: the label values in the model's column order (binary: negative, positive); () for regression.
    classes: tuple[str, ...] = ()
    # Binary with named classes ('churned' / 'stayed'): the one that is 1. None: the target is bool or 0/1.
    positive_class: str | None = None

    @classmethod
    def of(cls, dataset: Any) -> ModelTask:
        """From `settings.dataset` (`task`, `positive_class`, `classes`). Classes not declared there are learned
        from the training labels (`with_classes_from`)."""
        kind = cast(TaskKind, dataset.task)
        if kind == "binary":
            positive = dataset.positive_class
            return cls("binary", ("0", "1") if positive is None else (), None if positive is None else str(positive))
        if kind == "multiclass":
            return cls("multiclass", tuple(str(c) for c in dataset.classes or ()))
        return cls("regression")

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ModelTask:
        """A version's recorded task; versions registered before tasks existed are binary 0/1."""
        if not data:
            return cls("binary", ("0", "1"))
        return cls(
            cast(TaskKind, data["kind"]), tuple(str(c) for c in data.get("classes", ())), data.get("positive_class")
        )

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "classes": list(self.classes), "positive_class": self.positive_class}

    @property
    def is_classification(self) -> bool:
        return self.kind != "regression"

    @property
    def primary_metric(self) -> str:
        return PRIMARY_METRIC[self.kind]

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.primary_metric].higher_is_better

    @property
    def metric_names(self) -> tuple[str, ...]:
        return TASK_METRICS[self.kind]

    @property
    def output_columns(self) -> list[str]:
        """The prediction columns of a scored row (after the entity and timestamp)."""
        if self.kind == "binary":
            return [SCORE, DECISION]
        if self.kind == "multiclass":
            return [*(PROBA_PREFIX + c for c in self.classes), PREDICTED_CLASS]
        return [PREDICTION]

    # ---- labels ---------------------------------------------------------------------------------------------
    def coerce_labels(self, values: pd.Series, where: str) -> pd.Series:
        """The training target: binary 0/1 ints, multiclass class names (text), regression floats. `where`
        names the column (and file) in the error. Nulls are refused: a row without a target cannot train."""
        nulls = int(values.isna().sum())
        if nulls:
            raise InvalidLabels(f"{where}: {nulls} of {len(values)} values are missing (rule: every row has a target)")
        if self.kind == "regression":
            return _numbers(values, where)
        if self.kind == "binary":
            return self._binary(values, where)
        return self._class_names(values, where)

    def with_classes_from(self, values: pd.Series) -> ModelTask:
        """Classes not declared in the config, from the raw training labels: multiclass, the sorted class names;
        binary with a positive_class, (the other class, positive_class)."""
        if self.classes or self.kind == "regression":
            return self
        text = _as_text(values.dropna())
        if self.kind == "multiclass":
            return ModelTask("multiclass", tuple(sorted(text.unique())))
        others = sorted(set(text.unique()) - {self.positive_class})
        return ModelTask(
            "binary",
            (others[0] if others else f"not {self.positive_class}", str(self.positive_class)),
            self.positive_class,
        )

    def _binary(self, values: pd.Series, where: str) -> pd.Series:
        if self.positive_class is not None:  # two named classes: positive_class is 1, the other 0
            text = _as_text(values)
            distinct = sorted(text.unique())
            if len(distinct) > 2 or (len(distinct) == 2 and self.positive_class not in distinct):
                raise InvalidLabels(
                    f"{where}: distinct values {distinct[:6]}; rule: a binary target has two classes, "
                    f"positive_class {self.positive_class!r} and one other"
                )
            return (text == self.positive_class).astype("int64")
        if values.dtype == bool:
            return values.astype("int64")
        numeric = pd.to_numeric(values, errors="coerce")
        _refuse_unless(numeric.isin([0, 1]), values, where, "0 or 1, or true/false (named classes: set positive_class)")
        return numeric.astype("int64")

    def _class_names(self, values: pd.Series, where: str) -> pd.Series:
        text = _as_text(values)
        if self.classes:
            _refuse_unless(text.isin(self.classes), text, where, f"one of the declared classes {list(self.classes)}")
        elif text.nunique() < 2:
            raise InvalidLabels(f"{where}: {text.nunique()} distinct value(s); rule: multiclass needs at least two")
        return text

    # ---- predictions ----------------------------------------------------------------------------------------
    def outputs(self, model: Any, features: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
        """The output columns (`output_columns`) for `features`, from `model.predict_proba` (classification, in
        `classes` order) or `model.predict` (regression)."""
        if self.kind == "regression":
            return pd.DataFrame(
                {PREDICTION: np.asarray(model.predict(features), dtype="float64")}, index=features.index
            )
        return self.outputs_from_proba(
            np.asarray(model.predict_proba(features), dtype="float64"), threshold, features.index
        )

    def outputs_from_proba(self, proba: np.ndarray, threshold: float = 0.5, index: Any = None) -> pd.DataFrame:
        if self.kind == "binary":
            score = proba[:, 1]
            return pd.DataFrame({SCORE: score, DECISION: score >= threshold}, index=index)
        columns = {PROBA_PREFIX + c: proba[:, i] for i, c in enumerate(self.classes)}
        picked = np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
        return pd.DataFrame({**columns, PREDICTED_CLASS: picked}, index=index)

    def probabilities(self, outputs: pd.DataFrame) -> np.ndarray:
        """Classification: (rows, classes) probabilities back from the output columns."""
        if self.kind == "binary":
            score = outputs[SCORE].to_numpy(dtype="float64")
            return np.column_stack([1 - score, score])
        return outputs[[PROBA_PREFIX + c for c in self.classes]].to_numpy(dtype="float64")

    # ---- metrics --------------------------------------------------------------------------------------------
    def metrics(self, y: pd.Series | np.ndarray, outputs: pd.DataFrame) -> dict[str, float]:
        """`metric_names` (+ rows) of the outputs against coerced targets; NaN where a metric is undefined (one
        class only)."""
        from sklearn import metrics as skm  # heavy: only where metrics are computed

        out: dict[str, float] = {"rows": float(len(outputs))}
        nan = float("nan")
        if self.kind == "regression":
            truth, predicted = np.asarray(y, dtype="float64"), outputs[PREDICTION].to_numpy(dtype="float64")
            out.update(
                rmse=float(np.sqrt(np.mean((truth - predicted) ** 2))) if len(truth) else nan,
                mae=float(np.mean(np.abs(truth - predicted))) if len(truth) else nan,
                r2=float(skm.r2_score(truth, predicted)) if len(truth) > 1 else nan,
            )
            return out
        proba = np.clip(self.probabilities(outputs), 1e-7, 1 - 1e-7)
        if self.kind == "binary":
            truth = np.asarray(y).astype(int)
            two = len(np.unique(truth)) == 2
            out.update(
                positive_rate=float(truth.mean()) if len(truth) else nan,
                brier=float(skm.brier_score_loss(truth, proba[:, 1])) if len(truth) else nan,
                roc_auc=float(skm.roc_auc_score(truth, proba[:, 1])) if two else nan,
                pr_auc=float(skm.average_precision_score(truth, proba[:, 1])) if two else nan,
                log_loss=float(skm.log_loss(truth, proba[:, 1], labels=[0, 1])) if two else nan,
            )
            return out
        truth_text = np.asarray(y).astype(str)
        predicted = outputs[PREDICTED_CLASS].astype(str).to_numpy()
        out.update(
            macro_f1=float(
                skm.f1_score(truth_text, predicted, average="macro", labels=list(self.classes), zero_division=0)
            ),
            balanced_accuracy=float(skm.balanced_accuracy_score(truth_text, predicted)) if len(truth_text) else nan,
            log_loss=float(
                skm.log_loss(truth_text, proba / proba.sum(axis=1, keepdims=True), labels=list(self.classes))
            )
            if len(truth_text)
            else nan,
        )
        recall = skm.recall_score(truth_text, predicted, average=None, labels=list(self.classes), zero_division=0)
        out.update({f"recall_{c}": float(r) for c, r in zip(self.classes, recall, strict=True)})
        return out


def _as_text(values: pd.Series) -> pd.Series:
    """Labels as text; integral floats lose their '.0' (3.0 -> '3'), so a parquet float column of classes matches
    the same classes written as ints."""
    if pd.api.types.is_float_dtype(values):
        integral = values.dropna() == np.floor(values.dropna())
        if bool(integral.all()):
            return values.astype("Int64").astype(str)
    if values.dtype == bool:
        return values.map({True: "true", False: "false"})
    return values.astype(str).str.strip()


def _numbers(values: pd.Series, where: str) -> pd.Series:
    numeric = pd.to_numeric(values, errors="coerce")
    _refuse_unless(numeric.notna() & np.isfinite(numeric.fillna(0)), values, where, "a finite number")
    return numeric.astype("float64")


def _refuse_unless(ok: pd.Series, values: pd.Series, where: str, rule: str) -> None:
    bad = ~ok.fillna(False).astype(bool)
    count = int(bad.sum())
    if count:
        examples = sorted({str(v) for v in values[bad].head(50)})[:5]
        raise InvalidLabels(f"{where}: {count} of {len(values)} values break rule '{rule}' (e.g. {examples})")
