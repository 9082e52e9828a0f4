"""The feast CLI sees the repo and the registry the flows used; `conveyor data compact|vacuum` on the raw table."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deltalake import write_deltalake

from configs.settings import Settings, load_settings
from conveyor.adapters import feature_store as fsm
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import arrow_day, raw_table, read_raw_window, table_version, write_raw_day
from conveyor.demo.synthetic import Scenario
from conveyor.ops import cli
from conveyor.services.ingest import land_synthetic

pytestmark = pytest.mark.integration
START = dt.date(2026, 1, 1)


@pytest.fixture
def env(s3_server: Settings, tmp_path: Path) -> Iterator[Settings]:
    patch = pytest.MonkeyPatch()
    patch.setenv("CONVEYOR_STORAGE__BUCKET", f"data-{uuid.uuid4().hex[:10]}")
    patch.setenv("CONVEYOR_FEATURES__STATE_DIR", str(tmp_path / "feast"))
    patch.setenv("CONVEYOR_GENERATOR__N_ENTITIES", "200")
    yield load_settings()
    patch.undo()


def _feast(settings: Settings, *args: str) -> str:
    """The feast CLI as a user runs it after `eval "$(conveyor data feast-env)"`."""
    feast = str(Path(sys.executable).parent / "feast")
    environ = {**os.environ, **fsm.feast_env(settings, with_secrets=False)}
    done = subprocess.run(
        [feast, "-c", str(settings.features.repo_dir), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=settings.project_root,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_feast_cli_plans_and_lists_against_the_flows_registry(env: Settings) -> None:
    land_synthetic(env, ObjectStore(env.storage), START, 2, Scenario(), run_id="land")
    applied = fsm.apply_definitions(env)
    assert applied.registry == str(env.features.state_dir / "registry.db")  # type: ignore[operator]
    views = _feast(env, "feature-views", "list")
    assert "churn_features" in views
    services = _feast(env, "feature-services", "list")
    assert "churn_v1" in services
    # --skip-source-validation: no S3 request from the CLI (its pyarrow validation ignores our endpoint).
    plan = _feast(env, "plan", "--skip-source-validation")
    # The CLI imported feature_repo/definitions.py and found exactly what the flows applied to the same registry.
    assert "No changes to registry" in plan and "conveyor_churn_features" in plan, plan


def test_compact_then_vacuum_and_what_it_costs(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    store = ObjectStore(env.storage)
    land_synthetic(env, store, START, 3, Scenario(), run_id="land-1")
    land_synthetic(env, store, START, 3, Scenario(), run_id="land-2")  # day rewrites leave old files behind
    table = raw_table(env.storage, env)
    # A day in two files (two appends, as another writer of the format might leave it): something to compact.
    day = START + dt.timedelta(days=1)
    frame = read_raw_window(store, env, day, day)
    write_raw_day(table, env.dataset, day, frame.iloc[::2], run_id="half")
    write_deltalake(
        table.uri,
        arrow_day(frame.iloc[1::2], env.dataset, day),
        mode="append",
        partition_by=["dt"],
        storage_options=table.storage_options,
    )
    before = table_version(table)
    assert before is not None
    rows = read_raw_window(store, env, START, START + dt.timedelta(days=2))
    assert cli.main(["data", "compact"]) == 0
    compacted = capsys.readouterr().out
    assert "compacted 2 files into 1" in compacted and f"now version {before + 1}" in compacted, compacted
    pd_rows = read_raw_window(store, env, START, START + dt.timedelta(days=2))
    assert len(pd_rows) == len(rows)

    assert cli.main(["data", "vacuum", "--retention-hours", "0", "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "would delete" in listed and read_raw_window(store, env, START, START, version=0) is not None
    assert cli.main(["data", "vacuum", "--retention-hours", "0"]) == 0
    assert "deleted" in capsys.readouterr().out
    assert len(read_raw_window(store, env, START, START + dt.timedelta(days=2))) == len(rows)
    with pytest.raises(OSError):  # version 0's files are gone: vacuum ends time travel to it
        read_raw_window(store, env, START, START, version=0)
