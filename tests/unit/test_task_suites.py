"""The raw suite's label rule follows `dataset.task`, with both engines: binary 0/1 whether ints, floats 1.0/0.0
or bool; multiclass the declared classes; regression a finite number. Bad label values are named by column,
rule and count."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from configs.settings import Settings, load_settings
from conveyor.demo.synthetic import generate_day
from conveyor.domain.expectations import write_default_suites
from conveyor.services.validation import failure_message, validate_frame

DAY = dt.date(2026, 2, 1)
AS_OF = dt.datetime(2026, 2, 2, tzinfo=dt.UTC)


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    monkeypatch.setenv("CONVEYOR_VALIDATION__SUITES_DIR", str(tmp_path / "suites"))
    for key, value in env.items():
        monkeypatch.setenv(f"CONVEYOR_DATASET__{key.upper()}", value)
    settings = load_settings("local")
    write_default_suites(settings)  # what `conveyor validation init-suites` does after editing dataset.yaml
    return settings


def _failures(frame: pd.DataFrame, settings: Settings, engine: str) -> list[tuple[str | None, str, int]]:
    result = validate_frame(frame, "raw", settings, as_of=AS_OF, engine=engine)
    return [(o.column, o.expectation, o.unexpected_count or 0) for o in result.failed]


@pytest.mark.parametrize("engine", ["fast", "gx"])
def test_binary_labels_as_floats_or_bools_pass_and_other_values_fail(settings: Settings, engine: str) -> None:
    frame = generate_day(DAY, settings.dataset, settings.generator)
    label = settings.dataset.label_column
    assert _failures(frame.assign(**{label: frame[label].astype(float)}), settings, engine) == []  # 1.0 / 0.0
    assert _failures(frame.assign(**{label: frame[label].astype(bool)}), settings, engine) == []
    broken = frame.assign(**{label: frame[label].astype(float)})
    broken.loc[[1, 5, 9], label] = 2.0
    assert (label, "expect_column_values_to_be_in_set", 3) in _failures(broken, settings, engine)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings("local")


@pytest.mark.parametrize("engine", ["fast", "gx"])
def test_regression_labels_must_be_finite_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    settings = _settings(tmp_path, monkeypatch, task="regression")
    frame = generate_day(DAY, settings.dataset, settings.generator)
    label = settings.dataset.label_column
    assert _failures(frame, settings, engine) == []
    broken = frame.copy()
    broken.loc[[2, 4], label] = np.inf
    assert _failures(broken, settings, engine) == [(label, "expect_column_values_to_be_between", 2)]
    result = validate_frame(broken, "raw", settings, as_of=AS_OF, engine=engine)
    message = failure_message(result, DAY.isoformat(), "s3://b/quarantine/x/")
    assert f"column {label!r}" in message and "2 of" in message


@pytest.mark.parametrize("engine", ["fast", "gx"])
def test_multiclass_labels_must_be_declared_classes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    monkeypatch.setenv("CONVEYOR_DATASET__DIRECTIONAL", "[]")  # dataset.yaml's check names no class
    settings = _settings(tmp_path, monkeypatch, task="multiclass", classes='["basic", "standard", "premium"]')
    frame = generate_day(DAY, settings.dataset, settings.generator)
    label = settings.dataset.label_column
    assert _failures(frame, settings, engine) == []
    broken = frame.copy()
    broken.loc[[0, 3, 6, 7], label] = "platinum"
    assert _failures(broken, settings, engine) == [(label, "expect_column_values_to_be_in_set", 4)]
