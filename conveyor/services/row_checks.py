"""Scoring row checks: which rows of a chunk are scored and which are quarantined, and why.

The rows are judged by the rule engine (conveyor/domain/rule_engine.py) over the scoring suite
(configs/expectations/scoring.json), the same engine and suite that validate scoring inputs: a row flagged by a
strict row-level rule (types, ranges, categories, nulls in key columns, duplicate keys within the chunk) is
invalid, and the first such rule in suite order is its reason. Nulls in feature columns (the rows of the
suite's not-null rules on features, whatever their `mostly`) are the scoring policies' to decide: a row with no
feature value at all is an unknown entity (`scoring.unknown_entities`), one with some missing has missing
features (`scoring.missing_features`); each is quarantined or scored with `scoring.feature_defaults`.
An arrow chunk that no row-level rule flags (`arrow_rows_pass`, column-level arrow compute) skips the row pass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from configs.settings import DatasetConfig, ScoringConfig
from conveyor.domain.arrow_rules import arrow_rows_pass
from conveyor.domain.rule_engine import repair_numbers, row_rules

NOT_NULL = "expect_column_values_to_not_be_null"
UNKNOWN_ENTITY = "unknown entity: no feature values"
MISSING_FEATURES = "missing features"


@dataclass
class CheckedChunk:
    features: pd.DataFrame  # rows to score, defaults applied
    entities: pd.DataFrame  # the key column(s) of the rows to score
    quarantined: pd.DataFrame  # entity, features as text, reason
    counts: Counter[str]


def check_chunk(
    chunk: pd.DataFrame | pa.Table,
    suite: dict[str, Any],
    dataset: DatasetConfig,
    cfg: ScoringConfig,
    parameters: dict[str, str] | None = None,
) -> CheckedChunk:
    """Row checks for one chunk; an arrow chunk no row-level rule flags skips the row-level pass."""
    if isinstance(chunk, pa.Table):
        clean = arrow_rows_pass(chunk, suite)
        frame = chunk.to_pandas()
        if clean:
            counts: Counter[str] = Counter(rows_in=len(frame), scored=len(frame))
            return CheckedChunk(frame[dataset.feature_names], frame[dataset.entity_columns], pd.DataFrame(), counts)
        return check_rows(frame, suite, dataset, cfg, parameters, arrow=chunk)
    return check_rows(chunk, suite, dataset, cfg, parameters)


def _judge(
    frame: pd.DataFrame,
    suite: dict[str, Any],
    features: list[str],
    parameters: dict[str, str],
    arrow: pa.Table | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(reason per row, "" when valid; null mask per row of the features the suite has a not-null rule for)."""
    reason = np.full(len(frame), "", dtype=object)
    nulls: dict[str, np.ndarray] = {}
    for rule in row_rules(frame, suite, parameters, arrow):
        if rule.expectation == NOT_NULL and rule.column in features:
            nulls[rule.column] = nulls.get(rule.column, rule.rows) | rule.rows
        elif rule.strict and rule.rows.any():
            reason[rule.rows & (reason == "")] = rule.reason()
    null_matrix = np.column_stack(list(nulls.values())) if nulls else np.zeros((len(frame), 0), dtype=bool)
    return reason, null_matrix


def check_rows(
    frame: pd.DataFrame,
    suite: dict[str, Any],
    dataset: DatasetConfig,
    cfg: ScoringConfig,
    parameters: dict[str, str] | None = None,
    arrow: pa.Table | None = None,
) -> CheckedChunk:
    """Split a chunk into rows to score (defaults applied per policy) and rows to quarantine (with a reason).
    `arrow`: the table `frame` was converted from, if any (the rule engine reads text columns through it)."""
    features, keys = dataset.feature_names, dataset.entity_columns
    reason, nulls = _judge(frame, suite, features, parameters or {}, arrow)
    invalid = reason != ""
    any_null = nulls.any(axis=1)
    unknown = (nulls.all(axis=1) & any_null) & ~invalid
    missing = any_null & ~unknown & ~invalid
    if cfg.unknown_entities == "quarantine" and unknown.any():
        reason = np.where(unknown, UNKNOWN_ENTITY, reason)
    if cfg.missing_features == "quarantine" and missing.any():
        reason = np.where(missing, MISSING_FEATURES, reason)
    quarantine = reason != ""
    keep = ~quarantine
    defaulted = (unknown | missing) & keep

    scored, entities = repair_numbers(frame[features], suite), frame[keys]
    quarantined = pd.DataFrame()
    if not keep.all():
        quarantined = frame.loc[quarantine, [*keys, *features]].astype(str)
        quarantined["reason"] = reason[quarantine]
        scored = scored.loc[keep].reset_index(drop=True)
        entities = entities.loc[keep].reset_index(drop=True)
    if defaulted.any() and cfg.feature_defaults:
        scored = scored.fillna({k: v for k, v in cfg.feature_defaults.items() if k in scored.columns})
    counts: Counter[str] = Counter(
        rows_in=len(frame),
        invalid=int(invalid.sum()),
        unknown_entities=int(unknown.sum()),
        missing_features=int(missing.sum()),
        quarantined=int(quarantine.sum()),
        defaulted=int(defaulted.sum()),
        scored=len(scored),
    )
    return CheckedChunk(scored, entities, quarantined, counts)
