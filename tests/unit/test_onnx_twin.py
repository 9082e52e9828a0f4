"""The ONNX twin: every model config in base.yaml exports and matches its Pipeline on the test set; a twin that
does not match (tolerance 0, a corrupted graph, a model skl2onnx cannot convert) is recorded failed."""

from __future__ import annotations

import datetime as dt
import inspect
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from configs.settings import Settings, load_settings
from conveyor.adapters.onnx_twin import OnnxTwin, TwinUnavailable, check_parity, export_twin
from conveyor.demo.synthetic import generate_window
from conveyor.services.model_fitting import entries_for
from conveyor.services.training import Candidate, _features, fit_and_evaluate


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="module")
def training_set(settings: Settings) -> pd.DataFrame:
    generator = settings.generator.model_copy(update={"n_entities": 1500})
    days = generate_window(dt.date(2026, 1, 1), 40, settings.dataset, generator)
    return pd.concat(days.values(), ignore_index=True)


@pytest.fixture(scope="module")
def candidates(settings: Settings, training_set: pd.DataFrame) -> dict[str, Candidate]:
    return {name: fit_and_evaluate(training_set, settings, name) for name in entries_for(settings)}


def _test_rows(candidate: Candidate, settings: Settings) -> pd.DataFrame:
    rows = _features(candidate.test, settings.dataset)
    # Missing values on purpose: numeric NaN goes to the graph's imputer, a missing category to the fitted fill.
    rows.loc[rows.index[:40], "age"] = np.nan
    rows.loc[rows.index[40:80], "region"] = np.nan
    rows.loc[rows.index[80:90], "payment_method"] = "never-seen"
    return rows


def test_every_model_config_in_base_yaml_has_a_twin_within_tolerance(
    settings: Settings, candidates: dict[str, Candidate]
) -> None:
    assert set(candidates) == {"default", "quick", "logistic"}
    for name, candidate in candidates.items():
        rows = _test_rows(candidate, settings)
        export = export_twin(candidate.model, rows, settings.twin.parity_tolerance)
        record = export.record
        assert record.status == "passed", (name, record.reason)
        assert record.rows_checked == len(rows) > 500
        assert record.max_abs_diff is not None and record.max_abs_diff <= settings.twin.parity_tolerance
        assert export.onnx_bytes is not None
        twin = OnnxTwin.from_bytes(export.onnx_bytes)
        assert set(twin.feature_names) == set(settings.dataset.feature_names)
        proba = twin.predict_proba(rows)
        assert proba.shape == (len(rows), 2) and proba.dtype == np.float64
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
        expected = candidate.model.predict_proba(rows)[:, 1]
        assert np.abs(proba[:, 1] - expected).max() == pytest.approx(record.max_abs_diff, abs=1e-12)
        # None is a missing category too (as NaN is: arrow hands text nulls over as None).
        with_none = rows.assign(region=rows["region"].astype(object).where(rows["region"].notna(), None))
        np.testing.assert_array_equal(twin.predict_proba(with_none), proba)
        # Column order of the frame does not matter, and extra columns are ignored.
        shuffled = rows[list(reversed(rows.columns))].assign(extra=1)
        np.testing.assert_array_equal(twin.predict_proba(shuffled), proba)


def test_tolerance_zero_is_a_failed_twin_with_the_difference_recorded(
    settings: Settings, candidates: dict[str, Candidate]
) -> None:
    candidate = candidates["default"]
    record = export_twin(candidate.model, _test_rows(candidate, settings), tolerance=0.0).record
    assert record.status == "failed" and not record.usable
    assert record.max_abs_diff is not None and 0 < record.max_abs_diff <= settings.twin.parity_tolerance
    assert "ABOVE tolerance 0" in record.reason


def test_a_corrupted_graph_fails_parity(settings: Settings, candidates: dict[str, Candidate]) -> None:
    for name in ("default", "logistic"):
        candidate = candidates[name]
        rows = _test_rows(candidate, settings)
        export = export_twin(candidate.model, rows, settings.twin.parity_tolerance)
        assert export.onnx_bytes is not None
        graph = onnx.load_from_string(export.onnx_bytes)
        shifted = 0
        for node in graph.graph.node:
            for attribute in node.attribute:
                if attribute.name in ("base_values", "intercepts"):
                    for i in range(len(attribute.floats)):
                        attribute.floats[i] += 0.5  # every score moves
                    shifted += 1
        assert shifted == 1, name
        record = check_parity(candidate.model, graph.SerializeToString(), rows, settings.twin.parity_tolerance)
        assert record.status == "failed" and record.max_abs_diff is not None and record.max_abs_diff > 0.01


def test_garbage_bytes_and_unconvertible_models_are_failed_records_not_crashes(
    settings: Settings, candidates: dict[str, Candidate]
) -> None:
    rows = _test_rows(candidates["quick"], settings)
    record = check_parity(candidates["quick"].model, b"not an onnx graph", rows, 1e-4)
    assert record.status == "failed" and "cannot score the parity rows" in record.reason
    with pytest.raises(TwinUnavailable, match="onnxruntime cannot load it"):
        OnnxTwin.from_bytes(b"not an onnx graph")
    custom = Pipeline([("f", FunctionTransformer(np.log1p)), ("m", candidates["quick"].model.steps[-1][1])])
    export = export_twin(custom, rows, 1e-4)
    assert export.onnx_bytes is None and export.record.status == "failed"
    assert "first step is a ColumnTransformer" in export.record.reason


def test_skl2onnx_fix_still_fits_the_function_it_wraps() -> None:
    from skl2onnx.common import tree_ensemble

    from conveyor.adapters import skl2onnx_fixes

    assert skl2onnx_fixes.install() is True
    stock = tree_ensemble.add_node.__wrapped__  # type: ignore[attr-defined]
    assert "nodes_missing_value_tracks_true" in inspect.signature(stock).parameters
    assert skl2onnx_fixes.install() is True  # idempotent: wrapped once
    assert not hasattr(tree_ensemble.add_node.__wrapped__, "__wrapped__")  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def task_models(settings: Settings) -> dict[str, tuple[Any, pd.DataFrame, Any]]:
    from tests.integration.scoring_data import fit_task

    return {kind: fit_task(settings, kind, days=8, max_iter=25) for kind in ("multiclass", "regression")}


def test_multiclass_and_regression_twins_match_their_pipelines(
    settings: Settings, task_models: dict[str, tuple[Any, pd.DataFrame, Any]]
) -> None:
    tolerance = settings.twin.parity_tolerance
    model, rows, task = task_models["multiclass"]
    rows = rows.assign(region=rows["region"].where(rows.index % 7 != 0, np.nan))  # missing categories too
    export = export_twin(model, rows, tolerance)
    assert export.record.status == "passed" and export.record.scale is None, export.record.reason
    assert "class probability difference" in export.record.reason
    twin = OnnxTwin.from_bytes(export.onnx_bytes or b"")
    assert twin.kind == "classifier"
    proba = twin.predict_proba(rows)
    assert proba.shape == (len(rows), 3) and twin.predict_proba(rows.head(0)).shape == (0, 3)
    assert np.abs(proba - model.predict_proba(rows)).max() == pytest.approx(export.record.max_abs_diff, abs=1e-12)
    assert list(task.outputs(twin, rows).columns) == task.output_columns  # the task's outputs from the twin
    with pytest.raises(TwinUnavailable, match="predict needs a regressor twin; this one is a classifier"):
        twin.predict(rows)

    model, rows, task = task_models["regression"]
    export = export_twin(model, rows, tolerance)
    record = export.record
    assert record.status == "passed" and record.scale == pytest.approx(np.std(model.predict(rows)))
    assert record.max_abs_diff is not None and record.max_abs_diff / record.scale <= tolerance
    assert record.allowed_abs_diff == pytest.approx(tolerance * record.scale)
    twin = OnnxTwin.from_bytes(export.onnx_bytes or b"")
    assert twin.kind == "regressor" and twin.predict(rows.head(0)).shape == (0,)
    np.testing.assert_allclose(twin.predict(rows), model.predict(rows), rtol=0, atol=record.allowed_abs_diff)
    with pytest.raises(TwinUnavailable, match="predict_proba needs a classifier twin"):
        twin.predict_proba(rows)


def test_a_shifted_regression_graph_fails_parity_relative_to_the_target_scale(
    settings: Settings, task_models: dict[str, tuple[Any, pd.DataFrame, Any]]
) -> None:
    model, rows, _ = task_models["regression"]
    export = export_twin(model, rows, settings.twin.parity_tolerance)
    graph = onnx.load_from_string(export.onnx_bytes or b"")
    shifted = 0
    for node in graph.graph.node:
        for attribute in node.attribute:
            if attribute.name == "base_values":
                attribute.floats[0] += 0.01  # one hundredth of a currency unit on every prediction
                shifted += 1
    assert shifted == 1
    record = check_parity(model, graph.SerializeToString(), rows, settings.twin.parity_tolerance)
    assert record.status == "failed" and record.max_abs_diff == pytest.approx(0.01, rel=0.05)
    assert "x the target scale" in record.reason and "ABOVE tolerance" in record.reason
    # The tolerance is relative: a tolerance of 1.5x the shift over the target scale lets the same graph pass.
    loose = check_parity(model, graph.SerializeToString(), rows, 0.01 / record.scale * 1.5)  # type: ignore[operator]
    assert loose.status == "passed"


def test_a_request_sized_frame_gets_the_same_feeds_as_a_batch(
    settings: Settings, candidates: dict[str, Candidate]
) -> None:
    """Up to SMALL_FRAME_ROWS rows, the feeds are built from Python values (the online service's one-row
    requests); they must equal the column-wise batch path's, missing values (None, NaN, pd.NA) included, and
    the twin's answers must not depend on which path a row took."""
    from conveyor.adapters import onnx_twin

    candidate = candidates["default"]
    export = export_twin(candidate.model, _test_rows(candidate, settings), settings.twin.parity_tolerance)
    assert export.onnx_bytes is not None
    twin = OnnxTwin.from_bytes(export.onnx_bytes)
    rows = _test_rows(candidate, settings).head(onnx_twin.SMALL_FRAME_ROWS * 2).reset_index(drop=True)
    rows["region"] = rows["region"].astype(object)
    rows.loc[0, "region"], rows.loc[1, "region"], rows.loc[2, "age"] = None, pd.NA, None
    small = rows.head(5)
    batch_feeds = onnx_twin._feeds(rows, twin._inputs)  # more rows than SMALL_FRAME_ROWS: column-wise
    small_feeds = onnx_twin._feeds(small, twin._inputs)
    assert set(small_feeds) == set(batch_feeds)
    for name, values in small_feeds.items():
        expected = batch_feeds[name][: len(small)]
        assert values.dtype == expected.dtype and values.shape == expected.shape, name
        if values.dtype.kind == "f":
            assert np.array_equal(values, expected, equal_nan=True), name
        else:
            assert (values == expected).all(), (name, values.ravel(), expected.ravel())
    assert np.array_equal(twin.predict_proba(small), twin.predict_proba(rows)[: len(small)])
