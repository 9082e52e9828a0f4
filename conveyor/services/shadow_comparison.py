"""Champion vs challenger on the same rows (shadow scoring), accumulated chunk by chunk, per the champion's task.

binary      agreement of the decisions; shift of `score` (challenger - champion); both positive rates.
multiclass  agreement of `predicted_class`; shift of the probability of the champion's predicted class; the
            largest change of any class probability; both models' class shares.
regression  no agreement (None); shift of `prediction`, in the target's unit.

A challenger whose task (or classes) differ from the champion's is not comparable row by row: only `rows` is
counted and `comparable` is False, with the reason in `note`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from conveyor.domain.task_types import DECISION, PREDICTED_CLASS, PREDICTION, SCORE, ModelTask


@dataclass
class ShadowComparison:
    """How often champion and challenger agree and how far their outputs moved (see the module docstring)."""

    champion_version: str
    challenger_version: str
    task: str = "binary"
    comparable: bool = True
    note: str = ""
    rows: int = 0
    agreement: float | None = 0.0
    mean_score_shift: float = 0.0  # mean(challenger - champion) of the compared value
    mean_abs_score_shift: float = 0.0
    max_abs_score_shift: float = 0.0
    champion_positive_rate: float | None = None
    challenger_positive_rate: float | None = None
    champion_class_shares: dict[str, float] | None = None
    challenger_class_shares: dict[str, float] | None = None
    _sums: dict[str, float] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, champion: str, challenger: str, task: ModelTask, challenger_task: ModelTask) -> ShadowComparison:
        comparison = cls(champion, challenger, task.kind)
        if challenger_task != task:
            comparison.comparable, comparison.agreement = False, None
            comparison.note = f"challenger task {challenger_task.to_json()} differs from the champion's "
            comparison.note += str(task.to_json())
        elif task.kind == "regression":
            comparison.agreement = None
        return comparison

    def update(self, champion: pd.DataFrame, challenger: pd.DataFrame, task: ModelTask) -> None:
        """Add one chunk: both models' output columns (`ModelTask.output_columns`) for the same rows."""
        self.rows += len(champion)
        if not self.comparable or not len(champion):
            return
        agree, diff, largest = _compare(champion, challenger, task)
        s = self._sums
        for key, value in (("agree", agree), ("diff", float(diff.sum())), ("absdiff", float(np.abs(diff).sum()))):
            s[key] = s.get(key, 0.0) + value
        self.max_abs_score_shift = max(self.max_abs_score_shift, largest)
        n = self.rows
        if self.agreement is not None:
            self.agreement = s["agree"] / n
        self.mean_score_shift, self.mean_abs_score_shift = s["diff"] / n, s["absdiff"] / n
        if task.kind == "binary":
            for key, frame in (("pos_a", champion), ("pos_b", challenger)):
                s[key] = s.get(key, 0.0) + float(frame[DECISION].sum())
            self.champion_positive_rate, self.challenger_positive_rate = s["pos_a"] / n, s["pos_b"] / n
        elif task.kind == "multiclass":
            for prefix, frame in (("a:", champion), ("b:", challenger)):
                for name, count in frame[PREDICTED_CLASS].astype(str).value_counts().items():
                    s[prefix + str(name)] = s.get(prefix + str(name), 0.0) + float(count)
            self.champion_class_shares = {c: s.get("a:" + c, 0.0) / n for c in task.classes}
            self.challenger_class_shares = {c: s.get("b:" + c, 0.0) / n for c in task.classes}

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def _compare(champion: pd.DataFrame, challenger: pd.DataFrame, task: ModelTask) -> tuple[float, np.ndarray, float]:
    """(rows agreeing, per-row shift of the compared value, largest absolute change of any output value)."""
    if task.kind == "binary":
        diff = challenger[SCORE].to_numpy(dtype="float64") - champion[SCORE].to_numpy(dtype="float64")
        agree = float((champion[DECISION].to_numpy() == challenger[DECISION].to_numpy()).sum())
        return agree, diff, float(np.abs(diff).max())
    if task.kind == "regression":
        diff = challenger[PREDICTION].to_numpy(dtype="float64") - champion[PREDICTION].to_numpy(dtype="float64")
        return 0.0, diff, float(np.abs(diff).max())
    a, b = task.probabilities(champion), task.probabilities(challenger)
    picked = a.argmax(axis=1)
    rows = np.arange(len(a))
    diff = b[rows, picked] - a[rows, picked]
    agree = float((champion[PREDICTED_CLASS].to_numpy() == challenger[PREDICTED_CLASS].to_numpy()).sum())
    return agree, diff, float(np.abs(b - a).max())
