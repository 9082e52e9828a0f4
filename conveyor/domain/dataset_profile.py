"""A first `dataset.yaml` from a sample of a user's rows: each column's type, observed range (with a margin),
categories and missing share; the likely key, timestamp and label columns; the task the label implies.

Pure: a DataFrame of sampled rows in, a profile and a YAML-ready dict out (conveyor/services/dataset_setup.py
reads the files and writes the result). The draft is a starting point to review, not a verdict: ranges are the
observed ones widened by `margin`, and a column the rules cannot place is left out and said so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

ColumnKind = Literal["integer", "float", "bool", "timestamp", "text"]
Task = Literal["binary", "multiclass", "regression"]

MAX_CATEGORIES = 50  # a text column with more distinct values is not a category (an id, free text)
_BOOL_TEXT = {"true", "false", "yes", "no"}
_KEY_NAME = re.compile(r"(^id$|_id$|^id_|_key$|^key$|^uuid$)", re.IGNORECASE)
_TIME_NAME = re.compile(r"(time|date|_ts$|^ts$|_at$)", re.IGNORECASE)
_LABEL_NAME = re.compile(r"^(label|target|y|outcome|class|churn(ed)?|is_.*|has_.*)$", re.IGNORECASE)


class ProfileError(ValueError):
    """The sample cannot become a dataset.yaml; the message names the column and the reason."""


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    kind: ColumnKind
    rows: int
    missing_share: float
    distinct: int
    min: float | None = None
    max: float | None = None
    values: list[str] = field(default_factory=list)  # sorted distinct values, when there are few

    @property
    def present(self) -> int:
        return round(self.rows * (1 - self.missing_share))


@dataclass(frozen=True)
class Roles:
    entity: str
    timestamp: str
    label: str
    task: Task


def _kind(values: pd.Series) -> tuple[ColumnKind, pd.Series]:
    """The column's kind and its values converted to it (text: as it is)."""
    present = values.dropna()
    if pd.api.types.is_bool_dtype(values):
        return "bool", values
    if pd.api.types.is_datetime64_any_dtype(values):
        return "timestamp", values
    if pd.api.types.is_numeric_dtype(values):
        whole = present.to_numpy(dtype=float)
        return ("integer" if np.array_equal(whole, np.round(whole)) else "float"), values
    text = present.astype(str).str.strip()
    if len(text) and set(text.str.lower()) <= _BOOL_TEXT:
        return "bool", values
    numbers = pd.to_numeric(text, errors="coerce")
    if len(text) and numbers.notna().all():
        converted = pd.to_numeric(values, errors="coerce")
        whole = numbers.to_numpy(dtype=float)
        return ("integer" if np.array_equal(whole, np.round(whole)) else "float"), converted
    if len(text) and text.str.contains(r"^\d{4}-\d\d-\d\d", regex=True).all():
        stamps = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
        if stamps.notna().all():
            return "timestamp", pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    return "text", values


def profile_column(name: str, values: pd.Series) -> ColumnProfile:
    kind, converted = _kind(values)
    present = converted.dropna()
    missing = float(values.isna().mean()) if len(values) else 0.0
    distinct = int(present.astype(str).nunique()) if kind in ("text", "bool") else int(present.nunique())
    low = high = None
    if kind in ("integer", "float") and len(present):
        low, high = float(present.min()), float(present.max())
    few = sorted(present.astype(str).unique().tolist()) if distinct <= MAX_CATEGORIES else []
    return ColumnProfile(name, kind, len(values), missing, distinct, low, high, few)


def profile(frame: pd.DataFrame) -> list[ColumnProfile]:
    """One profile per column of the sample, in its order."""
    if frame.empty:
        raise ProfileError("the sample has no rows: nothing to profile")
    return [profile_column(str(name), frame[name]) for name in frame.columns]


def _pick(profiles: list[ColumnProfile], role: str, given: str | None, fits: Any, name_rule: re.Pattern[str]) -> str:
    if given is not None:
        if given not in {p.name for p in profiles}:
            raise ProfileError(f"{role} column {given!r} is not in the sample (columns: {[p.name for p in profiles]})")
        return given
    candidates = [p for p in profiles if fits(p)]
    named = [p for p in candidates if name_rule.search(p.name)]
    if named or candidates:
        return (named or candidates)[0].name
    raise ProfileError(f"no column looks like the {role} (pass --{role} NAME)")


def _task(label: ColumnProfile) -> Task:
    if label.distinct == 2:
        return "binary"
    if label.kind == "float" or (label.kind == "integer" and label.distinct > 20):
        return "regression"
    return "multiclass"


def guess_roles(
    profiles: list[ColumnProfile], entity: str | None = None, timestamp: str | None = None, label: str | None = None
) -> Roles:
    """The key, event-time and label columns: the ones given, else the first that fits by its values (a name like
    `customer_id`, `event_time`, `churned` breaks ties); the task follows from the label's values."""
    ts = _pick(profiles, "timestamp", timestamp, lambda p: p.kind == "timestamp", _TIME_NAME)
    rest = [p for p in profiles if p.name != ts]
    lab = _pick(
        rest, "label", label, lambda p: p.missing_share == 0 and p.distinct == 2 and p.kind != "timestamp", _LABEL_NAME
    )
    keys = [p for p in rest if p.name != lab]
    ent = _pick(
        keys,
        "entity",
        entity,
        lambda p: p.kind in ("integer", "text") and p.missing_share == 0 and p.distinct > MAX_CATEGORIES,
        _KEY_NAME,
    )
    by_name = {p.name: p for p in profiles}
    return Roles(ent, ts, lab, _task(by_name[lab]))


def _widened(low: float, high: float, margin: float, integer: bool) -> tuple[float, float]:
    pad = (high - low) * margin
    lo, hi = low - pad, high + pad
    if low >= 0:  # a count or an amount that never went negative is not invited to
        lo = max(lo, 0.0)
    return (float(math.floor(lo)), float(math.ceil(hi))) if integer else (round(lo, 6), round(hi, 6))


def _null_share(observed: float) -> float | None:
    """A tolerance above what the sample showed, or None (the global default) for a column that is ~never empty."""
    if observed <= 0.005:
        return None
    return min(1.0, math.ceil((observed * 1.5 + 0.01) * 100) / 100)


def feature_entry(p: ColumnProfile, margin: float) -> tuple[dict[str, Any] | None, str | None]:
    """(the feature's dataset.yaml entry, or None and why it was left out)."""
    entry: dict[str, Any] = {"name": p.name}
    if p.kind in ("integer", "float") and p.min is not None and p.max is not None:
        low, high = _widened(p.min, p.max, margin, p.kind == "integer")
        if p.kind == "integer":
            entry.update(dtype="int64", min=int(low), max=int(high))
        else:
            entry.update(dtype="float64", min=low, max=high)
    elif p.kind == "bool":
        entry["dtype"] = "bool"
    elif p.kind == "text" and p.values:
        entry.update(dtype="category", categories=p.values)
    elif p.kind == "text":
        return None, f"{p.name!r}: {p.distinct:,} distinct text values (an id or free text, not a category)"
    elif p.kind == "timestamp":
        return None, f"{p.name!r}: a second timestamp (features are numbers, categories or booleans)"
    else:
        return None, f"{p.name!r}: no values in the sample"
    if (share := _null_share(p.missing_share)) is not None:
        entry["max_null_share"] = share
    return entry, None


def draft_dataset(
    profiles: list[ColumnProfile], roles: Roles, name: str, source_path: str, margin: float = 0.1
) -> tuple[dict[str, Any], list[str]]:
    """(the dataset.yaml content, the columns left out with why)."""
    by_name = {p.name: p for p in profiles}
    key = by_name[roles.entity]
    features, skipped = [], []
    for p in profiles:
        if p.name in (roles.entity, roles.timestamp, roles.label):
            continue
        entry, why = feature_entry(p, margin)
        if entry is not None:
            features.append(entry)
        elif why is not None:
            skipped.append(why)
    if not features:
        raise ProfileError(f"no column besides {roles.entity!r}, {roles.timestamp!r}, {roles.label!r} is a feature")
    dataset = {
        "name": name,
        "entity_column": roles.entity,
        "entity_dtype": "int64" if key.kind == "integer" else "string",
        "timestamp_column": roles.timestamp,
        "label_column": roles.label,
        "source": {"kind": "files", "path": source_path},
        "features": features,
    }
    return dataset, skipped
