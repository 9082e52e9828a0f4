"""Seeded synthetic customer data: the default dataset (churn), with knobs for drift and data-quality faults.

Each day is generated independently from (seed, day), so any window can be regenerated exactly. Customers have
static traits (drawn once from the seed); on a given day a random subset of them produces an event row whose
features mix those traits with daily noise. The label (`churned` within 30 days) is a noisy logistic function
of the features; `ConceptDrift` changes that function from a date, `CovariateDrift` shifts a feature's
distribution from a date, `CorrelationDrift` breaks how a feature relates to the others (its distribution
unchanged), `Fault` corrupts a share of rows in one of the ways real feeds break.

The label follows `dataset.task` (the same customers and features in every mode):
binary      `churned` within 30 days, 0/1 (the default dataset);
regression  next month's spend, a float: the monthly charges, more products and support calls, less for a
            customer likely to leave (the churn logit), plus noise;
multiclass  the plan tier a customer moves to next month (SYNTHETIC_CLASSES), drawn from a softmax over tier
            scores driven by charges, products, contract, engagement and support calls.
Concept drift changes the label function in every mode.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from configs.settings import DatasetConfig, GeneratorConfig
from conveyor.domain.failures import InvalidInput

# The columns this generator knows how to make, in its own vocabulary; dataset.yaml names the key columns.
SYNTHETIC_FEATURES = (
    "age",
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls_30d",
    "avg_session_minutes",
    "days_since_last_login",
    "num_products",
    "contract_type",
    "payment_method",
    "region",
)
CONTRACTS = ("month_to_month", "one_year", "two_year")
PAYMENTS = ("card", "bank_transfer", "invoice", "wallet")
REGIONS = ("north", "south", "east", "west")
FIRST_ENTITY_ID = 100_000
SYNTHETIC_CLASSES = ("basic", "standard", "premium")  # the multiclass mode's plan tiers


class CovariateDrift(BaseModel):
    """From `start` on, shift `feature`: numeric by `shift` standard deviations; categorical by moving a
    `shift` share of rows to the feature's last category."""

    feature: str
    start: dt.date
    shift: float = Field(default=1.0, description="std units (numeric) or share of rows moved (categorical)")


class CorrelationDrift(BaseModel):
    """From `start` on, `feature`'s values are shuffled among each day's rows: its distribution is exactly the
    same, its relation to the other features (total_charges ~ monthly_charges x tenure) is gone."""

    feature: str
    start: dt.date


class ConceptDrift(BaseModel):
    """From `start` on, the label depends on the features differently (blended in by `strength`)."""

    start: dt.date
    strength: float = Field(default=1.0, ge=0, le=1)


FaultKind = Literal["nulls", "out_of_range", "wrong_type", "missing_column", "duplicate_keys"]


class Fault(BaseModel):
    """Corrupt `fraction` of the rows of `column` (on `day` only, or every day when None)."""

    kind: FaultKind
    column: str | None = None
    fraction: float = Field(default=0.05, gt=0, le=1)
    day: dt.date | None = None


class Scenario(BaseModel):
    """What to inject into the clean data. The default is clean, stationary data."""

    covariate_drift: list[CovariateDrift] = Field(default_factory=list)
    correlation_drift: list[CorrelationDrift] = Field(default_factory=list)
    concept_drift: ConceptDrift | None = None
    faults: list[Fault] = Field(default_factory=list)


def check_dataset_matches(dataset: DatasetConfig) -> None:
    """The synthetic source can only feed the features (and classes) it knows; fail early and say which differ."""
    unknown = sorted(set(dataset.feature_names) - set(SYNTHETIC_FEATURES))
    if unknown:
        raise InvalidInput(
            f"dataset {dataset.name!r}: source.kind 'synthetic' cannot generate features {unknown}; "
            f"it makes {list(SYNTHETIC_FEATURES)}. Use source.kind 'files' for your own data."
        )
    if dataset.task == "multiclass" and dataset.classes and set(dataset.classes) != set(SYNTHETIC_CLASSES):
        raise InvalidInput(
            f"dataset {dataset.name!r}: dataset.classes {dataset.classes}; the synthetic multiclass mode makes the "
            f"classes {list(SYNTHETIC_CLASSES)}"
        )


def _population(seed: int, n_entities: int) -> dict[str, np.ndarray]:
    """Static per-customer traits, identical for every day."""
    rng = np.random.default_rng([seed, 0])
    return {
        "entity_id": np.arange(FIRST_ENTITY_ID, FIRST_ENTITY_ID + n_entities, dtype=np.int64),
        "age": rng.integers(18, 86, n_entities),
        "tenure0": rng.gamma(1.6, 14.0, n_entities),
        "charge0": rng.uniform(18.0, 140.0, n_entities),
        "support_rate": rng.lognormal(-0.3, 0.7, n_entities),
        "engagement": rng.gamma(3.0, 12.0, n_entities),
        "num_products": np.clip(rng.poisson(1.2, n_entities) + 1, 1, 10),
        "contract": rng.choice(len(CONTRACTS), n_entities, p=[0.55, 0.25, 0.20]),
        "payment": rng.choice(len(PAYMENTS), n_entities, p=[0.40, 0.30, 0.15, 0.15]),
        "region": rng.choice(len(REGIONS), n_entities, p=[0.30, 0.25, 0.25, 0.20]),
    }


def churn_logit(features: pd.DataFrame, concept_drift_strength: float = 0.0) -> np.ndarray:
    """The true label function (before noise). Concept drift blends in a different one."""
    f = features
    before = (
        -1.0
        + 1.1 * (f["contract_type"] == "month_to_month")
        - 0.7 * (f["contract_type"] == "two_year")
        + 0.30 * f["support_calls_30d"]
        - 0.035 * f["tenure_months"]
        + 0.012 * (f["monthly_charges"] - 70.0)
        + 0.045 * f["days_since_last_login"]
        - 0.30 * (f["num_products"] - 1)
        - 0.015 * (f["avg_session_minutes"] - 35.0)
        + 0.45 * (f["payment_method"] == "invoice")
    ).to_numpy(dtype=float)
    if concept_drift_strength <= 0:
        return before
    after = (
        -1.0
        + 1.2 * (f["region"] == "south")
        - 0.25 * f["support_calls_30d"]
        + 0.03 * f["tenure_months"]
        - 0.012 * (f["monthly_charges"] - 70.0)
        + 0.6 * (f["payment_method"] == "wallet")
    ).to_numpy(dtype=float)
    return (1 - concept_drift_strength) * before + concept_drift_strength * after


def generate_day(
    day: dt.date,
    dataset: DatasetConfig,
    generator: GeneratorConfig,
    scenario: Scenario | None = None,
    snapshot: bool = False,
    n_entities: int | None = None,
) -> pd.DataFrame:
    """One day of raw rows. `snapshot=True` gives one row per customer (a scoring population)."""
    check_dataset_matches(dataset)
    scenario = scenario or Scenario()
    n = n_entities or generator.n_entities
    people = _population(generator.seed, n)
    rng = np.random.default_rng([generator.seed, day.toordinal(), int(snapshot)])

    if snapshot:
        idx = np.arange(n)
    else:
        rate = generator.events_per_entity_per_month / 30.0
        idx = np.flatnonzero(rng.random(n) < rate)
    months = max((day - generator.start_date).days, 0) / 30.44
    frame = _event_rows(day, people, idx, months, rng)
    for drift in scenario.covariate_drift:
        if day >= drift.start:
            _shift_feature(frame, dataset, drift, rng)
    for broken in scenario.correlation_drift:
        if day >= broken.start:
            if broken.feature not in frame.columns:
                raise InvalidInput(f"correlation drift: no feature {broken.feature!r} in the synthetic data")
            frame[broken.feature] = rng.permutation(frame[broken.feature].to_numpy())

    concept = scenario.concept_drift
    strength = concept.strength if concept is not None and day >= concept.start else 0.0
    frame["churned"] = synthetic_label(frame, dataset.task, strength, rng)

    frame = _with_key_columns(frame, dataset).rename(
        columns={"event_timestamp": dataset.timestamp_column, "churned": dataset.label_column}
    )
    keep = [*dataset.entity_columns, dataset.timestamp_column, *dataset.feature_names, dataset.label_column]
    frame = frame[keep].sort_values(dataset.timestamp_column, kind="stable").reset_index(drop=True)
    for fault in scenario.faults:
        if fault.day is None or fault.day == day:
            frame = inject_fault(frame, dataset, fault, rng)
    return frame


def _with_key_columns(frame: pd.DataFrame, dataset: DatasetConfig) -> pd.DataFrame:
    """The customer id as the dataset's key: its one column, or for a composite key the id's base-1000 digits
    spread over the columns (the last column the lowest): every customer its own key tuple, on every day."""
    ids = frame.pop("entity_id").to_numpy()
    columns = dataset.entity_columns
    for column in reversed(columns[1:]):
        frame[column] = ids % 1000
        ids = ids // 1000
    frame[columns[0]] = ids
    return frame


def synthetic_label(
    frame: pd.DataFrame, task: str, concept_drift_strength: float, rng: np.random.Generator
) -> np.ndarray:
    """The label of each row for `task` (see the module docstring); concept drift blends in another function."""
    m = len(frame)
    logit = churn_logit(frame, concept_drift_strength) + rng.normal(0.0, 0.5, m)
    churn_risk = 1.0 / (1.0 + np.exp(-logit))
    if task == "regression":
        spend = (
            frame["monthly_charges"].to_numpy(dtype=float) * (1.0 + 0.12 * (frame["num_products"].to_numpy() - 1))
            + 3.0 * frame["support_calls_30d"].to_numpy()
        ) * (1.0 - 0.6 * churn_risk) + rng.normal(0.0, 6.0, m)
        return np.round(np.clip(spend, 0.0, None), 2)
    if task == "multiclass":
        return _plan_tier(frame, concept_drift_strength, rng)
    return (rng.random(m) < churn_risk).astype(np.int64)


def _plan_tier(frame: pd.DataFrame, concept_drift_strength: float, rng: np.random.Generator) -> np.ndarray:
    f = frame
    charges = f["monthly_charges"].to_numpy(dtype=float) - 70.0
    products = f["num_products"].to_numpy(dtype=float) - 1.0
    standard = 0.4 + 0.03 * charges + 0.5 * products + 0.02 * (f["avg_session_minutes"].to_numpy() - 35.0)
    premium = (
        -0.8
        + 0.06 * charges
        + 0.9 * products
        + 1.2 * (f["contract_type"] == "two_year").to_numpy()
        - 0.25 * f["support_calls_30d"].to_numpy()
    )
    if concept_drift_strength > 0:  # tiers follow the region and the payment method instead
        south, wallet = (f["region"] == "south").to_numpy(), (f["payment_method"] == "wallet").to_numpy()
        premium = (1 - concept_drift_strength) * premium + concept_drift_strength * (1.5 * south - 0.5)
        standard = (1 - concept_drift_strength) * standard + concept_drift_strength * (1.5 * wallet - 0.2)
    scores = np.column_stack([np.zeros(len(f)), standard, premium]) + rng.gumbel(0.0, 0.6, (len(f), 3))
    return np.asarray(SYNTHETIC_CLASSES, dtype=object)[scores.argmax(axis=1)]


def _event_rows(
    day: dt.date, people: dict[str, np.ndarray], idx: np.ndarray, months: float, rng: np.random.Generator
) -> pd.DataFrame:
    """The feature rows of the customers `idx` on `day` (in the generator's own column names): their static
    traits aged by `months`, mixed with the day's noise."""
    m = len(idx)
    seconds = rng.integers(0, 86_400 * 1_000_000, m)  # microsecond precision: what parquet/duckdb keep
    midnight = pd.Timestamp(day, tz="UTC")

    tenure = np.clip(np.round(people["tenure0"][idx] + months), 0, 120).astype(np.int64)
    charges = np.clip(people["charge0"][idx] * rng.normal(1.0, 0.05, m), 0, 500)
    return pd.DataFrame(
        {
            "entity_id": people["entity_id"][idx],
            "event_timestamp": midnight + pd.to_timedelta(seconds, unit="us"),
            "age": np.clip(people["age"][idx] + int(months // 12), 18, 100).astype(np.int64),
            "tenure_months": tenure,
            "monthly_charges": np.round(charges, 2),
            "total_charges": np.round(np.clip(charges * np.maximum(tenure, 1) * rng.normal(1, 0.03, m), 0, 60000), 2),
            "support_calls_30d": np.clip(rng.poisson(people["support_rate"][idx]), 0, 50).astype(np.int64),
            "avg_session_minutes": np.round(np.clip(rng.gamma(4.0, people["engagement"][idx] / 4.0), 0, 600), 1),
            "days_since_last_login": np.clip(
                rng.geometric(np.clip(people["engagement"][idx] / 60, 0.02, 0.95)) - 1, 0, 365
            ).astype(np.int64),
            "num_products": people["num_products"][idx].astype(np.int64),
            "contract_type": np.asarray(CONTRACTS)[people["contract"][idx]],
            "payment_method": np.asarray(PAYMENTS)[people["payment"][idx]],
            "region": np.asarray(REGIONS)[people["region"][idx]],
        }
    )


def _shift_feature(
    frame: pd.DataFrame, dataset: DatasetConfig, drift: CovariateDrift, rng: np.random.Generator
) -> None:
    if drift.feature not in frame.columns:
        raise InvalidInput(f"covariate drift: no feature {drift.feature!r} in the synthetic data")
    spec = dataset.feature(drift.feature)
    column = frame[drift.feature]
    if spec.is_numeric:
        shifted = column + drift.shift * float(column.std() or 1.0)
        # Drift moves the distribution but stays inside the declared domain: it is not a data-quality fault.
        shifted = shifted.clip(lower=spec.min, upper=spec.max)
        frame[drift.feature] = shifted.round().astype(column.dtype) if spec.dtype == "int64" else shifted
    else:
        categories = spec.categories or sorted(column.unique())
        moved = rng.random(len(frame)) < min(abs(drift.shift), 1.0)
        frame.loc[moved, drift.feature] = categories[-1]


def inject_fault(frame: pd.DataFrame, dataset: DatasetConfig, fault: Fault, rng: np.random.Generator) -> pd.DataFrame:
    """Return a copy of `frame` broken in the way `fault` describes."""
    frame = frame.copy()
    column = fault.column or dataset.features[0].name
    if fault.kind != "duplicate_keys" and column not in frame.columns:
        raise InvalidInput(f"fault {fault.kind}: no column {column!r} in the data")
    n = len(frame)
    count = max(1, int(round(fault.fraction * n))) if n else 0
    rows = rng.choice(n, size=count, replace=False) if count else np.array([], dtype=int)
    if fault.kind == "nulls":
        frame[column] = frame[column].astype("float64" if dataset.feature(column).is_numeric else "object")
        frame.loc[frame.index[rows], column] = None
    elif fault.kind == "out_of_range":
        spec = dataset.feature(column)
        if not spec.is_numeric:
            frame.loc[frame.index[rows], column] = "__unknown_category__"
        else:
            bad = (spec.max if spec.max is not None else frame[column].max()) * 10 + 1
            frame[column] = frame[column].astype("float64")
            frame.loc[frame.index[rows], column] = bad
    elif fault.kind == "wrong_type":
        as_text = frame[column].astype(str).astype(object)
        as_text.iloc[rows] = "n/a"
        frame[column] = as_text
    elif fault.kind == "missing_column":
        frame = frame.drop(columns=[column])
    elif fault.kind == "duplicate_keys":
        frame = pd.concat([frame, frame.iloc[rows]], ignore_index=True)
    return frame


def generate_window(
    start: dt.date,
    days: int,
    dataset: DatasetConfig,
    generator: GeneratorConfig,
    scenario: Scenario | None = None,
) -> dict[dt.date, pd.DataFrame]:
    """`days` consecutive daily partitions from `start`."""
    return {
        start + dt.timedelta(days=i): generate_day(start + dt.timedelta(days=i), dataset, generator, scenario)
        for i in range(days)
    }
