"""Test fixtures. Integration tests run against real servers that this session starts on free loopback ports,
in a temporary state folder, and stops by PID at the end: a developer's own `.local/` stack is never touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from configs.settings import TELEMETRY_OFF_ENV, Settings, load_settings
from conveyor.ops.local_stack import free_port, private_stack_env

for _key, _value in TELEMETRY_OFF_ENV.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """CONVEYOR_* variables pointing every load_settings() in this session at the test stack."""
    state_dir = tmp_path_factory.mktemp("stack")
    env = {
        **private_stack_env(state_dir, bucket="conveyor-test"),
        "CONVEYOR_STORAGE__MAX_ATTEMPTS": "3",
        "CONVEYOR_STORAGE__BACKOFF_SECONDS": "0.05",
    }
    with _environ(env):
        yield env


@pytest.fixture(scope="session")
def test_settings(stack_env: dict[str, str]) -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def s3_server(test_settings: Settings) -> Iterator[Settings]:
    """A real SeaweedFS S3 server (SigV4 enforced) for this test session."""
    from conveyor.ops.local_stack import LocalStack

    stack = LocalStack(test_settings)
    stack.up(services=("s3",))
    yield load_settings()  # now with the generated credentials file in place
    stack.down(services=("s3",))


@pytest.fixture
def store(s3_server: Settings):  # type: ignore[no-untyped-def]
    """An ObjectStore on a fresh bucket of the session's S3 server (created on first write)."""
    from conveyor.adapters.object_store import ObjectStore

    config = s3_server.storage.model_copy(update={"bucket": f"t-{uuid.uuid4().hex[:12]}"})
    return ObjectStore(config)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One Prefect test server for the session (flows run against it; it does not evaluate triggers)."""
    from prefect.settings import PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    home: Path = tmp_path_factory.mktemp("prefect-home")
    with temporary_settings({PREFECT_HOME: home}), prefect_test_harness(server_startup_timeout=120):
        yield


# Set only while the served stack starts: the server, the worker and the flow runs it spawns inherit them.
SERVED_STACK_ENV = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",  # default 60: a cron run would be created late
    "PREFECT_WORKER_QUERY_SECONDS": "2",  # default 10: the worker polls for due runs
    "CONVEYOR_GENERATOR__DAYS": "3",  # ingest runs land a small window
}


@contextmanager
def _environ(overrides: dict[str, str]) -> Iterator[None]:
    """Environment overrides for a session-scoped fixture (the `monkeypatch` fixture is function-scoped)."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in overrides.items():
            patch.setenv(key, value)
        yield


@pytest.fixture(scope="session")
def served_stack(s3_server: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The documented way to run Conveyor: a real Prefect server + a process worker polling the work pool
    (`conveyor stack up --worker` does the same) and `conveyor deploy` (every deployment in prefect.yaml).
    Its own state folder and port, so tests that start/stop the session's plain Prefect server don't touch it;
    it shares the session's S3 server and bucket, so tests can read what its flow runs wrote."""
    import subprocess
    import sys

    from conveyor.ops.local_stack import LocalStack

    served_state = tmp_path_factory.mktemp("served")
    overrides = {
        **SERVED_STACK_ENV,
        "CONVEYOR_LOCAL_STACK__STATE_DIR": str(served_state),
        "CONVEYOR_LOCAL_STACK__PREFECT_PORT": str(free_port()),  # prefect.api_url follows it
        # Moving the state folder moves what is derived from it: keep the shared S3 keys, Feast state and
        # registry signing keys (versions the tests register are verified by the served flows, and back).
        "CONVEYOR_STORAGE__CREDENTIALS_FILE": str(s3_server.storage.credentials_file),
        "CONVEYOR_FEATURES__STATE_DIR": str(s3_server.features.state_dir),
        "CONVEYOR_SIGNING__KEY_DIR": str(s3_server.signing.key_dir),
    }
    with _environ(overrides):
        stack = LocalStack(load_settings())
    try:
        with _environ(overrides):
            timings = stack.up(("prefect", "worker"))
            print(f"served stack: prefect ready in {timings['prefect']:.1f}s, worker in {timings['worker']:.1f}s")
            subprocess.run([str(Path(sys.executable).parent / "conveyor"), "deploy"], check=True, timeout=600)
        yield stack
    finally:
        stack.down(services=("worker", "prefect"))
