"""Models and scoring inputs the scoring, batch-inference, outage, deployment and prod-profile tests share."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import Publication
from conveyor.adapters.registry import ModelMetadata, ModelRegistry, ModelVersion
from conveyor.demo.synthetic import generate_day, generate_window
from conveyor.domain.task_outputs import prediction_columns
from conveyor.domain.task_types import ModelTask
from conveyor.services.training import _features, build_pipeline

DAY = dt.date(2026, 3, 1)


def train_model(settings: Settings, seed: int = 0, max_iter: int = 30) -> Pipeline:
    ds = settings.dataset
    frame = generate_day(dt.date(2026, 1, 15), ds, settings.generator, snapshot=True, n_entities=4000)
    encode = ColumnTransformer(
        [
            (
                "cat",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1),
                ds.categorical_features,
            )
        ],
        remainder="passthrough",
    )
    model = Pipeline(
        [("encode", encode), ("gbm", HistGradientBoostingClassifier(max_iter=max_iter, random_state=seed))]
    )
    return model.fit(frame[ds.feature_names], frame[ds.label_column])


def with_scoring(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"scoring": settings.scoring.model_copy(update=changes)})


def population(settings: Settings, n: int = 5000) -> pd.DataFrame:
    return generate_day(DAY, settings.dataset, settings.generator, snapshot=True, n_entities=n)


DAYS = [dt.date(2026, 3, 1), dt.date(2026, 3, 2)]


def register(settings: Settings, name: str, seed: int, promote: bool) -> int:
    store = ObjectStore(settings.storage)
    model = train_model(settings, seed=seed, max_iter=20 + seed)
    ds = settings.dataset
    sample = generate_day(dt.date(2026, 1, 20), ds, settings.generator, snapshot=True, n_entities=200)
    metadata = ModelMetadata(
        metrics={},
        gates={"passed": True},
        training_window={},
        feature_service=settings.features.feature_service,
        feature_names=ds.feature_names,
        data_fingerprint="test",
        params={},
    )
    registry = ModelRegistry(store, settings)
    reference = sample[ds.feature_names].assign(score=model.predict_proba(sample[ds.feature_names])[:, 1])
    version = registry.register(name, model, metadata, reference)
    if promote:
        registry.promote(name, version.version, actor="test", reason="champion for the flow test")
    return version.version


def publish_snapshots(store: ObjectStore, settings: Settings, root: str, n: int = 3000) -> dict[dt.date, pd.DataFrame]:
    frames = {}
    for day in DAYS:
        frame = generate_day(day, settings.dataset, settings.generator, snapshot=True, n_entities=n)
        with Publication(store, f"{root}/dt={day.isoformat()}", "snap") as pub:
            pub.write_parquet("part-0.parquet", frame)
            pub.commit()
        frames[day] = frame
    return frames


def fit_config(settings: Settings, model_config: str, days: int = 30) -> tuple[Any, pd.DataFrame]:
    """A model of the catalogue (`training.models[model_config]`) fitted on `days` of 800 customers, and the
    raw-feature rows it was fitted on (what the ONNX twin's parity is checked on)."""
    ds = settings.dataset
    generator = settings.generator.model_copy(update={"n_entities": 800})
    frame = pd.concat(generate_window(dt.date(2026, 1, 1), days, ds, generator).values(), ignore_index=True)
    rows = _features(frame, ds)
    model = build_pipeline(ds, settings.training.models[model_config], seed=0).fit(rows, frame[ds.label_column])
    return model, rows


def task_target(rows: pd.DataFrame, kind: str, seed: int = 0) -> pd.Series:
    """A target for `kind` made from the feature rows (the synthetic data's label is binary churn): regression,
    a monthly spend in currency units; multiclass, three spend tiers named so their sorted order is not the
    tier order."""
    rng = np.random.default_rng(seed)
    spend = (
        rows["monthly_charges"].fillna(60) * 3.0 + rows["tenure_months"].fillna(12) * 1.5 + rng.normal(0, 10, len(rows))
    )
    if kind == "regression":
        return spend.astype("float64")
    tiers = pd.qcut(spend, 3, labels=["silver", "bronze", "gold"]).astype(str)
    return tiers


def fit_task(settings: Settings, kind: str, days: int = 20, max_iter: int = 40) -> tuple[Any, pd.DataFrame, ModelTask]:
    """A HistGradientBoosting Pipeline (the catalogue's preprocessing) for a multiclass or regression target, the
    raw feature rows it was fitted on, and the task a version of it records."""
    ds = settings.dataset
    generator = settings.generator.model_copy(update={"n_entities": 600})
    frame = pd.concat(generate_window(dt.date(2026, 1, 1), days, ds, generator).values(), ignore_index=True)
    rows = _features(frame, ds)
    target = task_target(rows, kind)
    estimator: Any = (
        HistGradientBoostingRegressor(max_iter=max_iter, random_state=0)
        if kind == "regression"
        else HistGradientBoostingClassifier(max_iter=max_iter, random_state=0)
    )
    model = build_pipeline(ds, settings.training.models["quick"], seed=0).set_params(model=estimator)
    model.fit(rows, target)
    task = ModelTask("regression") if kind == "regression" else ModelTask("multiclass", tuple(model.classes_))
    return model, rows, task


def task_metadata(settings: Settings, task: ModelTask) -> ModelMetadata:
    return ModelMetadata(
        metrics={},
        gates={"passed": True},
        training_window={},
        feature_service=settings.features.feature_service,
        feature_names=settings.dataset.feature_names,
        data_fingerprint="test",
        params={},
        task=task.to_json(),
    )


def task_reference(model: Any, rows: pd.DataFrame, task: ModelTask) -> pd.DataFrame:
    """The reference sample a version of `task` records: feature rows and the model's outputs on them."""
    outputs = task.outputs(model, rows)
    return pd.concat([rows, outputs[prediction_columns(task)]], axis=1)


def register_task_model(
    registry: ModelRegistry, name: str, fitted: tuple[Any, pd.DataFrame, ModelTask], twin: bool = True
) -> ModelVersion:
    model, rows, task = fitted
    reference = task_reference(model, rows.head(300), task)
    twin_rows = rows.tail(1000) if twin else None
    return registry.register(name, model, task_metadata(registry.settings, task), reference, twin_rows=twin_rows)
