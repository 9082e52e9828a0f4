"""The `conveyor` command's configuration errors and its `flow` command's parameter handling (no servers)."""

from __future__ import annotations

import datetime as dt
import os
import sys
import types
from pathlib import Path
from typing import Annotated

import pytest
from prefect import flow
from pydantic import Field

from configs.settings import CONFIG_DIR, ConfigError, load_settings
from conveyor.ops import cli
from conveyor.ops.cli_flow import coerce_params, flow_entrypoints, parse_params
from conveyor.ops.prefect_server import prefect_client_env


@pytest.fixture(autouse=True)
def _no_conveyor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith(("CONVEYOR_", "PREFECT_API_"))]:
        monkeypatch.delenv(key)


def test_prod_without_a_prefect_server_names_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was a bare KeyError('PREFECT_API_URL'), after the whole pipeline had run on a temporary server."""
    monkeypatch.setenv("CONVEYOR_PROFILE", "prod")
    never = types.ModuleType("flows.pipeline")

    def conveyor_pipeline(**_: object) -> None:
        raise AssertionError("the pipeline must not start without a Prefect server")

    never.conveyor_pipeline = conveyor_pipeline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "flows.pipeline", never)
    for command in (["run", "--no-loop"], ["run"], ["deploy"], ["flow", "run", "ingest"]):
        assert cli.main(command) == 2, command
        printed = capsys.readouterr().out
        assert "prefect.api_url: not set for profile 'prod'" in printed, printed
        assert "CONVEYOR_PREFECT__API_URL" in printed and "PREFECT_API_URL is unset" in printed


def test_prod_uses_the_configured_or_exported_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4321/api")
    assert prefect_client_env(load_settings("prod"))["PREFECT_API_URL"] == "http://127.0.0.1:4321/api"
    monkeypatch.setenv("CONVEYOR_PREFECT__API_URL", "http://127.0.0.1:4322/api")
    assert prefect_client_env(load_settings("prod"))["PREFECT_API_URL"] == "http://127.0.0.1:4322/api"


def test_local_profile_points_clients_at_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_LOCAL_STACK__PREFECT_PORT", "4777")
    assert prefect_client_env(load_settings("local"))["PREFECT_API_URL"] == "http://127.0.0.1:4777/api"


def test_flow_names_come_from_prefect_yaml_and_flows() -> None:
    names = flow_entrypoints(CONFIG_DIR.parent)
    assert names["validate-raw"] == names["validate_raw"] == "flows/validation.py:validate_raw"
    assert names["batch-inference"] == "flows/batch_inference.py:batch_inference"
    assert {"ingest", "training", "drift-monitor", "retraining"} <= set(names)
    assert all(Path(CONFIG_DIR.parent, e.split(":")[0]).exists() for e in names.values())


@flow(name="probe")
def _probe(
    start_date: dt.date,
    days: Annotated[int | None, Field(ge=1, le=10)] = None,
    features: list[str] | None = None,
    label: str = "x",
) -> None:
    """A flow's signature, as the real ones have."""


def test_params_are_converted_by_the_flows_signature() -> None:
    raw = parse_params(["start_date=2026-01-03", "days=3", 'features=["age", "region"]', "label=42"])
    assert coerce_params(_probe, raw) == {
        "start_date": dt.date(2026, 1, 3),
        "days": 3,
        "features": ["age", "region"],
        "label": "42",
    }


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["start_date=2026-01-03", "days=0"], r"--param days='0': Input should be greater than or equal to 1"),
        (["start_date=yesterday"], r"--param start_date='yesterday'"),
        (["start_date=2026-01-03", "dayz=3"], r"unknown parameter\(s\) \['dayz'\]"),
        (["days=3"], r"missing required parameter\(s\) \['start_date'\]"),
        (["days"], r"--param 'days': expected NAME=VALUE"),
    ],
)
def test_bad_params_name_the_parameter_and_rule(pairs: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        coerce_params(_probe, parse_params(pairs))


def test_an_unknown_flow_lists_the_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["flow", "run", "trainig"]) == 2
    printed = capsys.readouterr().out
    assert "flow 'trainig': no such flow or deployment" in printed and "'training'" in printed
