"""The loop demo's timeline line for the monitor's judgement, from a real drift.json (no servers: the Prefect
runs and the store are stand-ins; the report is what `write_reports` writes)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from configs.settings import load_settings
from conveyor.domain import performance_estimation as pe
from conveyor.domain.drift import DriftReport, report_prefix
from conveyor.ops import loop_demo


class _Store:
    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects

    def get_json(self, key: str) -> Any:
        return json.loads(json.dumps(self.objects[key], default=str))


def test_timeline_shows_the_estimated_performance(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    day = dt.date(2026, 3, 10)
    estimated = pe.EstimatedPerformance(
        rows=5000,
        roc_auc=0.712,
        accuracy=0.7,
        f1=0.5,
        roc_auc_se=0.01,
        accuracy_se=0.01,
        f1_se=0.01,
        threshold=0.5,
        calibration_error=0.03,
        calibrated=True,
        expected_roc_auc=0.78,
        max_drop=0.05,
        z=2.0,
        decayed=True,
        reasons=["estimated performance decay"],
    )
    report = DriftReport(
        "churn", "1", "2026-03-04", day.isoformat(), "estimated_decay", [], None, None, 0.0, [], estimated=estimated
    )
    key = f"{report_prefix(settings, settings.scoring.model_name, day.isoformat())}/drift.json"
    monkeypatch.setattr(loop_demo, "_runs_since", lambda api, name, since: [{"end_time": "2026-12-01T10:00:00+00:00"}])
    lines = loop_demo._monitor_judgement(settings, _Store({key: report.to_json()}), day, None, 0.0)  # type: ignore[arg-type]
    assert len(lines) == 1
    assert lines[0][0] == (
        "drift monitor verdict estimated_decay; estimated ROC AUC without labels 0.712 +/- 0.020 (test 0.780)"
    )
