"""`conveyor dataset init --from PATH` drafts dataset.yaml and the suites from a sample of a user's files;
`conveyor dataset check` lists every problem between the config and the data at once."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from configs.settings import CONFIG_DIR, load_settings
from conveyor.demo.synthetic import generate_day
from conveyor.domain.dataset_profile import ProfileError, guess_roles, profile
from conveyor.ops import cli

DAY = dt.date(2026, 2, 1)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the configs the commands may rewrite (CONVEYOR_CONFIG_DIR), and a folder of source files."""
    for key in [k for k in os.environ if k.startswith("CONVEYOR_")]:
        monkeypatch.delenv(key)
    shutil.copytree(CONFIG_DIR, tmp_path / "configs", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setenv("CONVEYOR_CONFIG_DIR", str(tmp_path / "configs"))
    (tmp_path / "accounts").mkdir()
    return tmp_path


def user_rows(days: int = 3, start: dt.date = DAY) -> pd.DataFrame:
    """The churn data as a user's export: text ids, a free-text column, a feature that is often empty."""
    settings = load_settings("local", CONFIG_DIR)
    frames = [generate_day(start + dt.timedelta(days=i), settings.dataset, settings.generator) for i in range(days)]
    frame = pd.concat(frames, ignore_index=True)
    frame["customer_id"] = frame["customer_id"].map(lambda i: f"C{i:06d}")
    frame["notes"] = [f"call #{i}" for i in range(len(frame))]
    empty = np.random.default_rng(3).random(len(frame)) < 0.12
    frame.loc[empty, "avg_session_minutes"] = np.nan
    return frame


def test_init_drafts_a_dataset_yaml_that_loads_and_passes_its_own_check(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = user_rows()
    rows.to_csv(workspace / "accounts" / "export.csv", index=False)

    assert cli.main(["dataset", "init", "--from", str(workspace / "accounts"), "--force"]) == 0

    out = capsys.readouterr().out
    drafted = yaml.safe_load((workspace / "configs" / "dataset.yaml").read_text())
    assert drafted["name"] == "accounts" and drafted["entity_column"] == "customer_id"
    assert drafted["entity_dtype"] == "string" and drafted["timestamp_column"] == "event_timestamp"
    assert drafted["label_column"] == "churned" and "(binary)" in out
    features = {f["name"]: f for f in drafted["features"]}
    assert "notes" not in features and "left out 'notes'" in out
    assert features["contract_type"]["categories"] == sorted(rows["contract_type"].unique())
    age = features["age"]
    assert age["dtype"] == "int64" and 0 <= age["min"] <= rows["age"].min() and age["max"] >= rows["age"].max()
    assert features["avg_session_minutes"]["max_null_share"] >= 0.12
    assert "max_null_share" not in features["age"]
    settings = load_settings()  # the draft is a valid config, and its suites were written beside it
    assert settings.training.model_name == "accounts" and settings.features.feature_service == "accounts_v1"
    raw_suite = (workspace / "configs" / "expectations" / "raw.json").read_text()
    assert '"name": "accounts_raw"' in raw_suite

    assert cli.main(["dataset", "check"]) == 0
    assert "no problem" in capsys.readouterr().out


def test_check_lists_every_problem_at_once(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = user_rows()
    rows.to_csv(workspace / "accounts" / "a.csv", index=False)
    assert cli.main(["dataset", "init", "--from", str(workspace / "accounts"), "--force"]) == 0
    later = user_rows(1, DAY + dt.timedelta(days=3)).assign(age=150)  # outside the drafted range
    later.loc[0, "region"] = "mars"  # a category never seen
    later.to_csv(workspace / "accounts" / "b.csv", index=False)
    later.drop(columns=["tenure_months"]).to_csv(workspace / "accounts" / "c.csv", index=False)
    capsys.readouterr()

    assert cli.main(["dataset", "check"]) == 1

    out = capsys.readouterr().out
    assert "c.csv: no column 'tenure_months'" in out
    assert "column 'age'" in out and "column 'region'" in out
    assert "3 problem(s)" in out, out


def test_init_refuses_an_existing_dataset_yaml_without_force(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user_rows(1).to_csv(workspace / "accounts" / "a.csv", index=False)
    before = (workspace / "configs" / "dataset.yaml").read_text()
    assert cli.main(["dataset", "init", "--from", str(workspace / "accounts")]) == 2
    assert "exists (--force overwrites it" in capsys.readouterr().out
    assert (workspace / "configs" / "dataset.yaml").read_text() == before


def test_two_named_classes_are_refused_naming_the_column(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = user_rows(1)
    rows.assign(churned=rows["churned"].map({0: "no", 1: "yes"})).to_csv(workspace / "accounts" / "a.csv", index=False)
    assert cli.main(["dataset", "init", "--from", str(workspace / "accounts"), "--force"]) == 2
    assert "label 'churned' has the values ['no', 'yes']: store it as 0/1" in capsys.readouterr().out


def test_a_numeric_or_multiclass_label_drafts_its_task(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = user_rows(1)
    price = rows.assign(churned=np.linspace(10.5, 990.5, len(rows)))
    price.to_csv(workspace / "accounts" / "a.csv", index=False)
    assert cli.main(["dataset", "init", "--from", str(workspace / "accounts"), "--label", "churned", "--force"]) == 0
    drafted = yaml.safe_load((workspace / "configs" / "dataset.yaml").read_text())
    assert drafted["task"] == "regression" and list(drafted).index("task") == list(drafted).index("label_column") + 1
    tiers = rows.assign(churned=np.resize(["basic", "standard", "premium"], len(rows)))
    tiers.to_csv(workspace / "accounts" / "a.csv", index=False)
    # A drafted dataset.yaml holds no behavioural checks (they name features: the user's choice), so a multiclass
    # label drafts a config that loads.
    assert cli.main(["dataset", "init", "--from", str(workspace / "accounts"), "--label", "churned", "--force"]) == 0
    drafted = yaml.safe_load((workspace / "configs" / "dataset.yaml").read_text())
    assert drafted["task"] == "multiclass" and "directional" not in drafted


def test_roles_given_beat_the_guess_and_unknown_ones_are_named() -> None:
    frame = pd.DataFrame(
        {
            "account": [f"A{i}" for i in range(100)],
            "ts": pd.date_range("2026-01-01", periods=100, freq="h", tz="UTC").astype(str),
            "flag": [0, 1] * 50,
            "other_flag": [1, 0] * 50,
            "amount": np.arange(100) * 1.5,
        }
    )
    found = guess_roles(profile(frame))
    assert (found.entity, found.timestamp, found.label, found.task) == ("account", "ts", "flag", "binary")
    assert guess_roles(profile(frame), label="other_flag").label == "other_flag"
    with pytest.raises(ProfileError, match=r"label column 'nope' is not in the sample"):
        guess_roles(profile(frame), label="nope")
