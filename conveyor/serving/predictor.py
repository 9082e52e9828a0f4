"""One predict request, start to end: features (from the Feast online store for entity ids, or checked against
the model's signature for rows of values), the batch scoring policies for unknown entities and missing features,
the rollout arm per row, the outputs of the serving version's task, and the rows for the prediction log.

Per the version's recorded task an answer carries: binary `score` and `decision`; multiclass `probabilities`
(class -> P) and `predicted_class`; regression `prediction`. The other output fields stay null.

The policies and the threshold are the batch engine's (`scoring.unknown_entities`, `scoring.missing_features`,
`scoring.feature_defaults`, `scoring.threshold`), and outputs come from the same `predict_outputs`, so a row
answered here equals the batch engine's answer for the same row and version."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from configs.settings import Settings
from conveyor.domain.entity_keys import key_text
from conveyor.domain.rollouts import arm_for, shadowed
from conveyor.domain.signature import (
    EntityKey,
    Violation,
    column_lists,
    frame_violations,
    key_violations,
    rows_frame,
    violations,
)
from conveyor.domain.task_types import DECISION, PREDICTED_CLASS, PREDICTION, PROBA_PREFIX, SCORE
from conveyor.serving.model_pool import Snapshot
from conveyor.serving.runtime import ServedModel

# (entity ids, feature service) -> entity column + feature columns, in the ids' order, null where none.
OnlineFeatures = Callable[[Sequence[EntityKey], str], pd.DataFrame]


class BadRows(ValueError):
    """Request rows the model's signature refuses: every violation names its row, field and rule (HTTP 422)."""

    def __init__(self, found: list[Violation]) -> None:
        self.violations = found
        super().__init__("; ".join(v.describe() for v in found[:5]) + (" ..." if len(found) > 5 else ""))


@dataclass
class Answer:
    """One row's answer: the task's outputs when it was scored, else the status says why not."""

    status: str  # scored | defaulted | unknown_entity | missing_features | invalid
    entity_id: EntityKey | None = None
    input_hash: str | None = None
    score: float | None = None  # binary
    decision: bool | None = None  # binary
    model_version: int | None = None
    arm: str | None = None
    reason: str | None = None
    task: str | None = None  # the answering version's task kind
    probabilities: dict[str, float] | None = None  # multiclass: class -> probability, in the model's class order
    predicted_class: str | None = None  # multiclass
    prediction: float | None = None  # regression

    def fill(self, model: ServedModel, arm: str, output: dict[str, Any]) -> None:
        """Set the outputs of one row (`output`: the row of `ServedModel.outputs`)."""
        self.model_version, self.arm, self.task = model.version, arm, model.task.kind
        if model.task.kind == "binary":
            self.score, self.decision = float(output[SCORE]), bool(output[DECISION])
        elif model.task.kind == "multiclass":
            self.probabilities = {c: float(output[PROBA_PREFIX + c]) for c in model.task.classes}
            self.predicted_class = str(output[PREDICTED_CLASS])
        else:
            self.prediction = float(output[PREDICTION])


@dataclass
class Outcome:
    answers: list[Answer]
    shadow: list[Answer] = field(default_factory=list)  # logged, never returned
    inputs: pd.DataFrame | None = None  # the champion's feature values, one row per answer (the prediction log's)


def input_hash(row: Mapping[str, Any]) -> str:
    """A stable digest of a row's values: its log key and rollout bucket when no entity id is given."""
    return hashlib.blake2b(json.dumps(row, sort_keys=True, default=str).encode(), digest_size=12).hexdigest()


def _statuses(features: pd.DataFrame, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """(status per row, scorable mask) by the batch policies: no feature value at all is an unknown entity,
    some missing is missing features; each quarantined (not scored) or defaulted, as configured."""
    cfg = settings.scoring
    names = settings.dataset.feature_names
    nulls = features.isna().to_numpy()[:, [features.columns.get_loc(name) for name in names]]
    unknown, some = nulls.all(axis=1), nulls.any(axis=1)
    missing = some & ~unknown
    status = np.full(len(features), "scored", dtype=object)
    status[unknown] = "unknown_entity" if cfg.unknown_entities == "quarantine" else "defaulted"
    status[missing] = "missing_features" if cfg.missing_features == "quarantine" else "defaulted"
    return status, np.isin(status, ("scored", "defaulted"))


def _with_defaults(features: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    defaults = {k: v for k, v in settings.scoring.feature_defaults.items() if k in features.columns}
    return features.fillna(defaults) if defaults and features.isna().any().any() else features


class Predictor:
    def __init__(self, settings: Settings, model_name: str, online_features: OnlineFeatures) -> None:
        self.settings = settings
        self.model_name = model_name
        self.online_features = online_features

    def for_entities(self, snapshot: Snapshot, entity_ids: Sequence[EntityKey]) -> Outcome:
        if found := key_violations(entity_ids, self.settings.dataset):
            raise BadRows(found)
        keys = [key_text(self.settings.dataset, i) for i in entity_ids]
        fetched: dict[str, pd.DataFrame] = {}

        def features(model: ServedModel) -> pd.DataFrame:
            if model.feature_service not in fetched:
                fetched[model.feature_service] = self.online_features(entity_ids, model.feature_service)
            return fetched[model.feature_service]

        base = [Answer("scored", entity_id=i) for i in entity_ids]
        return self._answer(snapshot, keys, base, features, check=True)

    def for_rows(self, snapshot: Snapshot, rows: Sequence[Mapping[str, Any]]) -> Outcome:
        found = violations(rows, self.settings.dataset)
        if found:
            raise BadRows(found)
        frame = rows_frame(rows, self.settings.dataset)
        hashes = [input_hash(row) for row in rows]
        base = [Answer("scored", input_hash=h) for h in hashes]
        return self._answer(snapshot, hashes, base, lambda model: frame, check=False)

    def _answer(
        self,
        snapshot: Snapshot,
        keys: list[str],
        answers: list[Answer],
        features: Callable[[ServedModel], pd.DataFrame],
        check: bool,
    ) -> Outcome:
        plan, champion, challenger = snapshot.effective_plan, snapshot.champion, snapshot.challenger
        arms = [arm_for(key, plan, self.model_name) for key in keys]
        frame = features(champion)
        status, scorable = _statuses(frame, self.settings)
        if check:  # values from the store are checked like request rows; a bad one is quarantined, not scored
            for violation in frame_violations(frame, self.settings.dataset):
                status[violation.row], scorable[violation.row] = "invalid", False
                answers[violation.row].reason = violation.describe()
        for answer, row_status in zip(answers, status, strict=True):
            answer.status = str(row_status)
        by_arm: dict[str, tuple[ServedModel, list[int]]] = {"champion": (champion, [])}
        if challenger is not None:
            by_arm["challenger"] = (challenger, [])
        for i, arm in enumerate(arms):
            if scorable[i]:
                by_arm[arm][1].append(i)
        for arm_name, (model, rows) in by_arm.items():
            self._score(model, arm_name, rows, features(model), answers)
        shadow: list[Answer] = []
        if challenger is not None and plan.mode == "shadow":
            rows = [i for i, key in enumerate(keys) if scorable[i] and shadowed(key, plan, self.model_name)]
            shadow = [Answer(answers[i].status, answers[i].entity_id, answers[i].input_hash) for i in rows]
            self._score(challenger, "shadow", list(range(len(rows))), features(challenger).iloc[rows], shadow)
        return Outcome(answers, shadow, frame)

    def _score(self, model: ServedModel, arm: str, rows: list[int], frame: pd.DataFrame, answers: list[Answer]) -> None:
        if not rows:
            return
        part = frame if len(rows) == len(frame) else frame.iloc[rows]
        outputs = column_lists(model.outputs(_with_defaults(part, self.settings), self.settings.scoring.threshold))
        for position, i in enumerate(rows):
            answers[i].fill(model, arm, {name: values[position] for name, values in outputs.items()})
