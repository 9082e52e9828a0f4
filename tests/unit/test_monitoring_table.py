"""Monitoring-table rows, the last-weeks table and the dashboard page, from real judgements (pure)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from configs.settings import load_settings
from conveyor.demo.synthetic import CovariateDrift, Scenario, generate_window
from conveyor.domain import drift
from conveyor.domain.monitoring_dashboard import render_dashboard
from conveyor.domain.monitoring_history import DataVolume, judgement_rows, markdown_table, recent_table, series


def test_judgements_become_rows_a_table_and_a_dashboard() -> None:
    settings = load_settings()
    ds = settings.dataset

    def window(start: dt.date, days: int, scenario: Scenario | None = None) -> pd.DataFrame:
        return pd.concat(generate_window(start, days, ds, settings.generator, scenario).values(), ignore_index=True)

    reference = window(dt.date(2026, 1, 1), 30)
    reference["score"] = np.random.default_rng(0).beta(2, 5, len(reference))
    drifted_from = dt.date(2026, 2, 12)
    scenario = Scenario(covariate_drift=[CovariateDrift(feature="days_since_last_login", start=drifted_from)])
    frames = []
    for day in (dt.date(2026, 2, 10), dt.date(2026, 2, 11), dt.date(2026, 2, 12)):
        current = window(day, 1, scenario)
        scores = np.random.default_rng(day.day).beta(2, 5, len(current))
        report = drift.compare(
            reference,
            current,
            ds,
            settings.drift.model_copy(update={"min_rows": 100}),
            model_name="m",
            model_version="3",
            window_start=day,
            window_end=day,
            current_scores=pd.Series(scores),
        )
        frames.append(judgement_rows(report, DataVolume(len(current), len(current), 2, 0), scores))
    history = pd.concat(frames, ignore_index=True)
    login = series(history, "days_since_last_login", "drifted")
    assert login.to_list() == [0.0, 0.0, 1.0]  # the generator's drift starts on the third day
    assert series(history, "data", "rows_quarantined").to_list() == [2.0, 2.0, 2.0]
    table = recent_table(history, dt.date(2026, 2, 12), weeks=1)
    assert [r["day"] for r in table] == ["2026-02-10", "2026-02-11", "2026-02-12"]
    assert table[-1]["drifted"] == "days_since_last_login" and table[-1]["verdict"] == "drift"
    assert markdown_table(table).count("\n") == 4
    page = render_dashboard(history, "m", dt.date(2026, 2, 12), weeks=1)
    assert "Monitoring: m (3 judged days)" in page and page.count("data:image/png;base64,") == 1
