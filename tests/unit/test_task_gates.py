"""The gates' per-task parts (conveyor/domain/task_gates.py): the absolute bounds and floors per task, the inputs
the bootstrap takes, the per-row output distance, and the slice gate on a regression target."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from configs.settings import GatesConfig
from conveyor.domain import gates as G
from conveyor.domain.bootstrap import bootstrap
from conveyor.domain.failures import InvalidInput
from conveyor.domain.task_gates import absolute_bounds, bootstrap_inputs, bootstrap_metrics, output_shift
from conveyor.domain.task_types import ModelTask

MULTICLASS = ModelTask("multiclass", ("a", "b", "c", "d"))
REGRESSION = ModelTask("regression")


def test_bounds_per_task_and_floors_with_the_metrics_direction() -> None:
    gates = GatesConfig(floors={"mae": 3.0, "r2": 0.4})
    assert absolute_bounds(REGRESSION, gates) == [
        ("mae", 3.0, "<=", "gates.floors.mae"),  # a loss: its upper bound
        ("r2", 0.4, ">=", "gates.floors.r2"),  # replaces min_r2
    ]
    assert absolute_bounds(MULTICLASS, GatesConfig()) == [
        ("balanced_accuracy", 0.3, ">=", "1/classes + gates.min_balanced_accuracy_lift")  # chance 1/4 + 0.05
    ]
    assert [b[0] for b in absolute_bounds(ModelTask("binary", ("0", "1")), GatesConfig())] == [
        "roc_auc",
        "pr_auc",
        "brier",
    ]
    assert bootstrap_metrics(REGRESSION, gates) == ("rmse", "mae", "r2")
    with pytest.raises(InvalidInput, match=r"gates.floors \['roc_auc'\]: not metrics of task regression"):
        absolute_bounds(REGRESSION, GatesConfig(floors={"roc_auc": 0.7}))


def test_the_absolute_gate_reads_the_unfavourable_bound_of_a_loss_floor() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(0, 10, 3000)
    predicted = y + rng.normal(0, 3, 3000)  # mae about 2.4
    boot = bootstrap(y, {G.CHALLENGER: predicted}, ("rmse", "mae", "r2"), 300, 0.95, 0)
    test = {name: boot.interval(G.CHALLENGER, name) for name in ("rmse", "mae", "r2")}
    assert G.absolute_gate(test, GatesConfig(floors={"mae": 3.0}), REGRESSION).passed
    refused = G.absolute_gate(test, GatesConfig(floors={"mae": 2.0}), REGRESSION)
    assert not refused.passed and "test mae" in refused.reasons[0] and "upper bound" in refused.reasons[0]
    assert "(gates.floors.mae)" in refused.reasons[0]


def test_bootstrap_inputs_per_task() -> None:
    outputs = pd.DataFrame({"proba_a": [0.7, 0.1], "proba_b": [0.1, 0.1], "proba_c": [0.1, 0.2], "proba_d": [0.1, 0.6]})
    y, scores = bootstrap_inputs(MULTICLASS, pd.Series(["a", "d"]), outputs)
    assert y.tolist() == [0, 3] and scores.shape == (2, 4)
    with pytest.raises(InvalidInput, match="1 test labels are not among the model's classes"):
        bootstrap_inputs(MULTICLASS, pd.Series(["a", "z"]), outputs)
    y, scores = bootstrap_inputs(REGRESSION, pd.Series([1.5, 2.0]), pd.DataFrame({"prediction": [1.0, 2.5]}))
    assert y.tolist() == [1.5, 2.0] and scores.tolist() == [1.0, 2.5]


def test_output_shift_is_total_variation_or_std_scaled() -> None:
    before = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    after = np.array([[0.5, 0.0, 0.5], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(output_shift(MULTICLASS)(after, before), [0.5, 0.0])
    np.testing.assert_allclose(
        output_shift(REGRESSION, target_std=4.0)(np.array([10.0, 2.0]), np.array([8.0, 2.0])), [0.5, 0.0]
    )


def test_slice_gate_on_a_regression_target_refuses_a_worse_slice() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    y = rng.normal(0, 5, n)
    segments = pd.DataFrame({"region": np.where(np.arange(n) % 2 == 0, "north", "south")})
    champion = y + rng.normal(0, 1, n)
    challenger = champion.copy()
    south = segments["region"].to_numpy() == "south"
    challenger[south] = y[south] + rng.normal(0, 3, south.sum())  # much worse in the south only
    result = G.slice_gate(y, challenger, champion, segments, GatesConfig(), "rmse", 0, classification=False)
    assert not result.passed and result.intervals["region=north"]["verdict"] == "not different"
    assert result.intervals["region=south"]["verdict"] == "worse" and "slice region=south" in result.reasons[0]


def test_a_multiclass_directional_check_reads_its_class_column() -> None:
    from configs.settings import DirectionalCheck

    frame = pd.DataFrame({"x": np.linspace(0, 1, 200)})

    def proba(rows: pd.DataFrame) -> np.ndarray:  # P(b) rises with x, P(a) falls
        x = rows["x"].to_numpy()
        return np.column_stack([1 - x / 2, x / 2])

    rises = DirectionalCheck(feature="x", delta=0.5, direction="increase", target_class="b")
    assert G.directional_gate(proba, frame, [rises], ["x"], ("a", "b")).passed
    falls = DirectionalCheck(feature="x", delta=0.5, direction="increase", target_class="a")
    refused = G.directional_gate(proba, frame, [falls], ["x"], ("a", "b"))
    assert not refused.passed and "changed the mean P(a) by -0.2500" in refused.reasons[0]
    unknown = DirectionalCheck(feature="x", delta=0.5, target_class="z")
    missing = G.directional_gate(proba, frame, [unknown], ["x"], ("a", "b"))
    assert not missing.passed and "target_class 'z' is not a class ['a', 'b']" in missing.reasons[0]
