from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from configs.settings import Settings, load_settings
from conveyor.demo.synthetic import (
    SYNTHETIC_CLASSES,
    ConceptDrift,
    CovariateDrift,
    Fault,
    Scenario,
    churn_logit,
    generate_day,
)

DAY = dt.date(2026, 2, 1)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings("local")


def _day(settings: Settings, scenario: Scenario | None = None, day: dt.date = DAY, n: int = 20_000) -> pd.DataFrame:
    return generate_day(day, settings.dataset, settings.generator, scenario, snapshot=True, n_entities=n)


def test_same_seed_same_data_other_seed_other_data(settings: Settings) -> None:
    first = generate_day(DAY, settings.dataset, settings.generator)
    again = generate_day(DAY, settings.dataset, settings.generator)
    pd.testing.assert_frame_equal(first, again)
    reseeded = settings.generator.model_copy(update={"seed": 8})
    other = generate_day(DAY, settings.dataset, reseeded)
    assert not first.equals(other)


def test_schema_follows_the_dataset_config(settings: Settings) -> None:
    frame = generate_day(DAY, settings.dataset, settings.generator)
    ds = settings.dataset
    assert list(frame.columns) == [ds.entity_column, ds.timestamp_column, *ds.feature_names, ds.label_column]
    assert len(frame) > 100
    assert frame[ds.timestamp_column].dt.tz is not None
    assert (frame[ds.timestamp_column].dt.date == DAY).all()
    assert not frame[[ds.entity_column, ds.timestamp_column]].duplicated().any()
    for spec in ds.features:
        column = frame[spec.name]
        if spec.is_numeric:
            assert column.between(spec.min, spec.max).all(), spec.name
        else:
            assert set(column.unique()) <= set(spec.categories or []), spec.name
    rate = frame[ds.label_column].mean()
    assert 0.1 < rate < 0.5


def test_label_depends_on_features(settings: Settings) -> None:
    frame = _day(settings)
    auc = roc_auc_score(frame[settings.dataset.label_column], churn_logit(frame))
    assert 0.70 < auc < 0.95  # learnable, but noisy


def test_covariate_drift_shifts_numeric_feature_from_its_start(settings: Settings) -> None:
    drift = Scenario(covariate_drift=[CovariateDrift(feature="monthly_charges", start=DAY, shift=1.0)])
    before = _day(settings, drift, day=DAY - dt.timedelta(days=1))
    clean = _day(settings)
    shifted = _day(settings, drift)
    assert before["monthly_charges"].mean() == pytest.approx(clean["monthly_charges"].mean(), rel=0.02)
    gain = shifted["monthly_charges"].mean() - clean["monthly_charges"].mean()
    assert gain > 0.8 * clean["monthly_charges"].std()
    pd.testing.assert_series_equal(shifted["age"], clean["age"])  # other features untouched


def test_covariate_drift_on_category_moves_mass(settings: Settings) -> None:
    drift = Scenario(covariate_drift=[CovariateDrift(feature="region", start=DAY, shift=0.5)])
    clean_share = (_day(settings)["region"] == "west").mean()
    drifted_share = (_day(settings, drift)["region"] == "west").mean()
    assert drifted_share > clean_share + 0.3


def test_concept_drift_changes_the_label_function(settings: Settings) -> None:
    ds = settings.dataset
    clean = _day(settings)
    drifted = _day(settings, Scenario(concept_drift=ConceptDrift(start=DAY, strength=1.0)))
    pd.testing.assert_frame_equal(clean[ds.feature_names], drifted[ds.feature_names])
    auc_clean = roc_auc_score(clean[ds.label_column], churn_logit(clean))
    auc_drifted = roc_auc_score(drifted[ds.label_column], churn_logit(drifted))  # the old function
    assert auc_clean - auc_drifted > 0.2


@pytest.mark.parametrize("column", ["monthly_charges", "region"])
def test_fault_nulls(settings: Settings, column: str) -> None:
    frame = _day(settings, Scenario(faults=[Fault(kind="nulls", column=column, fraction=0.1)]), n=5000)
    assert frame[column].isna().sum() == 500


def test_fault_out_of_range(settings: Settings) -> None:
    frame = _day(settings, Scenario(faults=[Fault(kind="out_of_range", column="age", fraction=0.02)]), n=5000)
    assert (frame["age"] > 100).sum() == 100


def test_fault_wrong_type(settings: Settings) -> None:
    frame = _day(settings, Scenario(faults=[Fault(kind="wrong_type", column="tenure_months", fraction=0.01)]), n=5000)
    assert frame["tenure_months"].dtype == object
    assert (frame["tenure_months"] == "n/a").sum() == 50


def test_fault_missing_column(settings: Settings) -> None:
    frame = _day(settings, Scenario(faults=[Fault(kind="missing_column", column="region")]), n=1000)
    assert "region" not in frame.columns


def test_fault_duplicate_keys(settings: Settings) -> None:
    ds = settings.dataset
    frame = _day(settings, Scenario(faults=[Fault(kind="duplicate_keys", fraction=0.03)]), n=1000)
    assert len(frame) == 1030
    assert frame[[ds.entity_column, ds.timestamp_column]].duplicated().sum() == 30


def test_fault_only_on_its_day(settings: Settings) -> None:
    scenario = Scenario(faults=[Fault(kind="nulls", column="age", fraction=0.5, day=DAY)])
    assert _day(settings, scenario, day=DAY + dt.timedelta(days=1), n=500)["age"].notna().all()
    assert _day(settings, scenario, n=500)["age"].isna().sum() == 250


def test_synthetic_source_refuses_unknown_features(settings: Settings) -> None:
    dataset = settings.dataset.model_copy(deep=True)
    dataset.features.append(dataset.features[0].model_copy(update={"name": "credit_score"}))
    with pytest.raises(ValueError, match=r"cannot generate features \['credit_score'\]"):
        generate_day(DAY, dataset, settings.generator)


def test_snapshot_has_one_row_per_entity(settings: Settings) -> None:
    frame = _day(settings, n=200_000)
    assert len(frame) == 200_000
    assert frame[settings.dataset.entity_column].is_unique
    assert np.isfinite(frame["total_charges"]).all()


def _mode(settings: Settings, task: str) -> Settings:
    return settings.model_copy(update={"dataset": settings.dataset.model_copy(update={"task": task})})


def test_regression_mode_makes_a_learnable_float_target(settings: Settings) -> None:
    regression = _mode(settings, "regression")
    frame = _day(regression)
    spend = frame[settings.dataset.label_column]
    assert spend.dtype == np.float64 and (spend >= 0).all() and spend.std() > 10
    assert np.corrcoef(spend, frame["monthly_charges"])[0, 1] > 0.5  # the signal the gates need
    drifted = _day(regression, Scenario(concept_drift=ConceptDrift(start=DAY, strength=1.0)))
    assert not np.allclose(drifted[settings.dataset.label_column], spend)  # same features, another function
    pd.testing.assert_frame_equal(
        frame.drop(columns=[settings.dataset.label_column]), drifted.drop(columns=[settings.dataset.label_column])
    )


def test_multiclass_mode_makes_the_plan_tiers_with_signal(settings: Settings) -> None:
    multiclass = _mode(settings, "multiclass")
    frame = _day(multiclass)
    tier = frame[settings.dataset.label_column]
    shares = tier.value_counts(normalize=True)
    assert set(shares.index) == set(SYNTHETIC_CLASSES) and shares.min() > 0.1
    premium_rate = (tier == "premium").groupby(frame["contract_type"]).mean()
    assert premium_rate["two_year"] > premium_rate["month_to_month"] + 0.1
    drifted = _day(multiclass, Scenario(concept_drift=ConceptDrift(start=DAY, strength=1.0)))
    south = drifted["region"] == "south"
    assert (drifted[settings.dataset.label_column][south] == "premium").mean() > (tier[south] == "premium").mean()


def test_multiclass_mode_refuses_classes_it_does_not_make(settings: Settings) -> None:
    dataset = settings.dataset.model_copy(update={"task": "multiclass", "classes": ["gold", "silver"]})
    with pytest.raises(ValueError, match=r"classes \['gold', 'silver'\]; the synthetic multiclass mode makes"):
        generate_day(DAY, dataset, settings.generator)
