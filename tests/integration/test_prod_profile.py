"""The production profile (CONVEYOR_PROFILE=prod) on this machine, every part an existing engine: a Prefect
server on PostgreSQL with API basic auth, a process worker, S3 credentials from the environment only, partitioned
scoring on a local Dask cluster, and Feast's online store on Redis.

Tier `prod`: `make test-prod` (or `pytest -m prod`). Needs Debian's postgresql and redis-server packages
(`.ci/run` installs them); skipped with that message otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.prefect_api import TERMINAL_STATES, wait_for
from conveyor.adapters.publication import read_manifest
from conveyor.ops.local_stack import LocalStack
from tests.integration.engines import Postgres, Redis, free_port, start_postgres, start_redis, stop

pytestmark = [pytest.mark.integration, pytest.mark.prod]
AUTH = "conveyor-admin:" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[Postgres, Redis]]:
    # Not under pytest's tmp (mode 0700, root's): PostgreSQL runs as its own user and must reach its folder.
    folder = Path(tempfile.mkdtemp(prefix="conveyor-engines-"))
    folder.chmod(0o755)
    postgres = start_postgres(folder / "postgres")
    try:
        redis = start_redis(folder / "redis")
    except BaseException:
        stop(postgres.process)
        raise
    print(f"\nPostgreSQL ready in {postgres.seconds_to_ready:.1f}s, Redis in {redis.seconds_to_ready:.1f}s")
    yield postgres, redis
    stop(redis.process)
    stop(postgres.process)
    shutil.rmtree(folder, ignore_errors=True)


def _signing_env() -> dict[str, str]:
    """Prod signs with a key from the environment and trusts its public key from the configuration."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from conveyor.adapters.signing import Signer, private_key_pem, public_key_text

    key = Ed25519PrivateKey.generate()
    return {
        "CONVEYOR_SIGNING__PRIVATE_KEY": private_key_pem(key),
        "CONVEYOR_SIGNING__TRUSTED_PUBLIC_KEYS": json.dumps(
            {Signer(key, "test").key_id: public_key_text(key.public_key())}
        ),
    }


@pytest.fixture(scope="module")
def prod_env(
    engines: tuple[Postgres, Redis], s3_server: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """One setting picks the profile; the rest is where the engines are and credentials, all from env."""
    postgres, redis = engines
    key, secret = s3_server.storage.resolved_credentials() or ("", "")
    postgres.psql("postgres", "CREATE DATABASE feast")
    state = tmp_path_factory.mktemp("prod-state")
    port = free_port()
    env = {
        "CONVEYOR_PROFILE": "prod",
        "CONVEYOR_LOCAL_STACK__STATE_DIR": str(state),
        "CONVEYOR_LOCAL_STACK__PREFECT_PORT": str(port),
        "CONVEYOR_PREFECT__API_URL": f"http://127.0.0.1:{port}/api",  # prod derives nothing from local_stack
        "CONVEYOR_STORAGE__ENDPOINT_URL": str(s3_server.storage.endpoint_url),
        "CONVEYOR_PREFECT__DATABASE_URL": postgres.url("prefect"),
        "CONVEYOR_PREFECT__API_AUTH_STRING": AUTH,
        "CONVEYOR_STORAGE__BUCKET": f"conveyor-prod-{uuid.uuid4().hex[:8]}",
        "AWS_ACCESS_KEY_ID": key,  # S3 credentials from the environment (boto3's default chain)
        "AWS_SECRET_ACCESS_KEY": secret,
        "CONVEYOR_FEATURES__REDIS_CONNECTION_STRING": redis.feast_connection_string,
        "CONVEYOR_FEATURES__REGISTRY_URL": postgres.url("feast", driver="postgresql+psycopg"),
        "CONVEYOR_FEATURES__STATE_DIR": str(state / "feast"),
        "CONVEYOR_SCORING__TASK_RUNNER": "dask",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        **_signing_env(),
    }
    dropped = ["CONVEYOR_STORAGE__CREDENTIALS_FILE"]  # prod never reads a credentials file
    saved = {k: os.environ.get(k) for k in [*env, *dropped]}
    os.environ.update(env)
    for key_name in dropped:
        os.environ.pop(key_name, None)
    yield env
    for key_name, old in saved.items():
        if old is None:
            os.environ.pop(key_name, None)
        else:
            os.environ[key_name] = old


@pytest.fixture(scope="module")
def prod_stack(prod_env: dict[str, str]) -> Iterator[LocalStack]:
    settings = load_settings()
    assert settings.active_profile == "prod" and settings.storage.credentials_file is None
    stack = LocalStack(settings)
    timings = stack.up(("prefect", "worker"))
    print(f"\nPrefect server on PostgreSQL ready in {timings['prefect']:.1f}s, worker in {timings['worker']:.1f}s")
    try:
        subprocess.run([str(Path(sys.executable).parent / "conveyor"), "deploy"], check=True, timeout=300)
        yield stack
    finally:
        stack.down(services=("worker", "prefect"))


def _wait_run(stack: LocalStack, run_id: str, timeout: float = 240) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        _, run = stack.api("GET", f"/flow_runs/{run_id}")
        return run if isinstance(run, dict) and run["state_type"] in TERMINAL_STATES else None

    return wait_for(finished, timeout, f"flow run {run_id} to finish")


def test_api_auth_string_is_enforced_and_health_stays_open(
    prod_stack: LocalStack, engines: tuple[Postgres, Redis]
) -> None:
    api = prod_stack.prefect_api_url
    request = urllib.request.Request(
        api + "/deployments/filter",
        data=b"{}",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    with urllib.request.urlopen(api + "/health", timeout=10) as health:
        assert health.status == 200
    status, deployments = prod_stack.api("POST", "/deployments/filter", {})  # with the configured auth string
    assert status == 200 and {"ingest", "batch-inference"} <= {d["name"] for d in deployments}  # type: ignore[union-attr]
    # The secrets (API auth, database password) are in neither the server's nor the worker's log.
    for service in ("prefect", "worker"):
        text = prod_stack._log_file(service).read_text(errors="replace")
        assert AUTH.split(":")[1] not in text and engines[0].password not in text


def test_scheduled_scoring_deployment_runs_on_dask_with_postgres_and_env_credentials(
    prod_stack: LocalStack, engines: tuple[Postgres, Redis]
) -> None:
    from tests.integration.scoring_data import DAYS, publish_snapshots, register

    postgres, _ = engines
    settings = load_settings()
    name = f"churn_{uuid.uuid4().hex[:8]}"
    register(settings, name, seed=0, promote=True)
    store = ObjectStore(settings.storage)
    root = f"features-{uuid.uuid4().hex[:8]}/churn"
    publish_snapshots(store, settings, root, n=500)

    query = {"deployments": {"name": {"any_": ["batch-inference"]}}}
    _, deployments = prod_stack.api("POST", "/deployments/filter", query)
    deployment = deployments[0]  # type: ignore[index]
    status, run = prod_stack.api(
        "POST",
        f"/deployments/{deployment['id']}/create_flow_run",
        {
            "parameters": {
                "scoring_date": DAYS[0].isoformat(),
                "end_date": DAYS[1].isoformat(),
                "model_name": name,
                "features_prefix": root,
            }
        },
    )
    assert status == 201, run
    finished = _wait_run(prod_stack, run["id"])  # type: ignore[index]
    assert finished["state_type"] == "COMPLETED", finished["state"]

    for day in DAYS:
        manifest = read_manifest(store, f"{settings.storage.prefixes.predictions}/{name}/dt={day.isoformat()}")
        assert manifest is not None
    # Partitions were scored by a Dask LocalCluster: prefect-dask says so on the flow run's console (worker log).
    assert "Creating a new Dask cluster" in prod_stack._log_file("worker").read_text(errors="replace")
    # The run lives in PostgreSQL, not in a SQLite file.
    count = postgres.psql(
        "prefect", f"SELECT count(*) FROM flow_run WHERE id = '{finished['id']}' AND state_type = 'COMPLETED'"
    )
    assert count == "1"
    assert not list(Path(prod_stack.prefect_home).glob("*.db")), "the prod server must not create a SQLite db"


def test_feast_on_redis_with_a_registry_in_postgres_shared_by_workers(
    prod_env: dict[str, str], engines: tuple[Postgres, Redis], tmp_path: Path
) -> None:
    from conveyor.adapters import feature_store as fsm
    from conveyor.adapters import raw_data
    from tests.unit.test_feature_store import ROWS, day

    postgres, redis = engines
    settings = load_settings()
    config = fsm.repo_config(settings)
    assert config.online_store.type == "redis" and config.registry.registry_type == "sql"
    frame = pd.DataFrame(ROWS)
    table = raw_data.RawTable(str(tmp_path / "raw" / "churn"))  # a local Delta table: this test is about Redis/SQL
    patch_raw = pytest.MonkeyPatch()
    patch_raw.setattr(raw_data, "raw_table", lambda config, settings: table)
    for partition_day, part in frame.groupby(frame["event_timestamp"].dt.date):
        raw_data.write_raw_day(table, settings.dataset, partition_day, part, run_id="fixture")
    applied = fsm.apply_definitions(settings)
    assert applied.registry.startswith("postgresql+psycopg://") and postgres.password not in applied.registry
    fsm.materialize_window(settings, day(0), day(11))
    online = fsm.online_features(settings, [1, 2, 4, 3])
    assert online["age"].tolist()[:3] == [32, 40, 50]
    assert online.iloc[3].drop("customer_id").isna().all()
    assert int(redis.cli("DBSIZE")) >= 3  # the values are in Redis, one hash per entity key
    # The registry lives in PostgreSQL, not in a file of this worker's state folder.
    assert int(postgres.psql("feast", "SELECT count(*) FROM feature_services")) >= 1
    assert not list(Path(settings.features.state_dir or tmp_path).glob("registry*"))

    # A second worker (own state folder, nothing applied there) sees the same definitions and the recorded
    # materialization, so it reads the same online values and resumes incrementally where the first stopped.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVEYOR_FEATURES__STATE_DIR", str(tmp_path / "worker-b"))
        other = load_settings()
        assert other.features.state_dir != settings.features.state_dir
        pd.testing.assert_frame_equal(fsm.online_features(other, [1, 2, 4, 3]), online)
        assert fsm.materialized_until(other) == fsm.materialized_until(settings)
        assert set(fsm.materialized_until(other).values()) == {day(11).to_pydatetime()}
    patch_raw.undo()
