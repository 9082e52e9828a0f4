"""The local stack: real servers, idempotent start, stop by PID, auth enforced."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.raw_data import published_days
from conveyor.ops.local_stack import LocalStack, private_stack_env
from conveyor.ops.processes import free_s3_base_port

pytestmark = pytest.mark.integration


def test_s3_up_is_idempotent_and_enforces_sigv4(s3_server: Settings) -> None:
    stack = LocalStack(s3_server)
    (state,) = [s for s in stack.status() if s.name == "s3"]
    assert state.healthy and state.pid is not None
    assert stack.up(services=("s3",))["s3"] < 2.0  # found running, not restarted
    (again,) = [s for s in stack.status() if s.name == "s3"]
    assert again.pid == state.pid
    with pytest.raises(urllib.error.HTTPError) as info:  # anonymous request: refused
        urllib.request.urlopen(f"{stack.s3_url}/{s3_server.storage.bucket}/", timeout=5)
    assert info.value.code == 403
    creds = s3_server.storage.credentials_file
    assert creds is not None and oct(os.stat(creds).st_mode & 0o777) == "0o600"


def _volume_topology(settings: Settings) -> dict[str, int]:
    """The SeaweedFS master's volume counts (`/dir/status`): Max (the limit) and Free."""
    master = settings.local_stack.s3_port + 1  # LocalStack pins the master next to the S3 port
    with urllib.request.urlopen(f"http://127.0.0.1:{master}/dir/status", timeout=10) as response:
        topology = json.load(response)["Topology"]
    return {"Max": topology["Max"], "Free": topology["Free"]}


def test_s3_takes_more_buckets_than_seaweedfs_would_by_default(s3_server: Settings) -> None:
    """A bucket takes a SeaweedFS volume, and left alone SeaweedFS allows free disk / 1 GiB of them (63 here): the
    suite's 64th bucket failed every write with InternalError. `local_stack.s3_max_volumes` sets the limit: the
    server reports it, and each new bucket takes one of its volumes (so the limit is what bounds the buckets)."""
    before = _volume_topology(s3_server)
    assert before["Max"] == s3_server.local_stack.s3_max_volumes
    base = ObjectStore(s3_server.storage)
    names = [f"many-{i:03d}-{os.getpid()}" for i in range(3)]
    try:
        for name in names:
            ObjectStore(s3_server.storage.model_copy(update={"bucket": name})).put_bytes("one.txt", name.encode())
        assert _volume_topology(s3_server)["Free"] <= before["Free"] - len(names)
    finally:  # give the volumes back: the session's server serves every other test
        for name in names:
            try:
                base.client.delete_object(Bucket=name, Key="one.txt")
                base.client.delete_bucket(Bucket=name)
            except Exception:  # a bucket the loop never reached
                pass


def test_prefect_server_starts_and_stops_by_pid(test_settings: Settings) -> None:
    stack = LocalStack(test_settings)
    stack.up(services=("prefect",))
    try:
        (state,) = [s for s in stack.status() if s.name == "prefect"]
        assert state.healthy and state.pid is not None
        with urllib.request.urlopen(f"{stack.prefect_api_url}/health", timeout=5) as response:
            assert response.read().strip() == b"true"
    finally:
        assert stack.down(services=("prefect",)) == ["prefect"]
    pid = state.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert stack.down(services=("prefect",)) == []  # nothing left to stop


def _conveyor(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real `conveyor` command, as a person runs it."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "conveyor"), *args],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def own_stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A stack of its own (`conveyor stack up` in a subprocess), stopped by PID at the end."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")},
        **private_stack_env(tmp_path / "stack", bucket="conveyor-cli"),
        "CONVEYOR_GENERATOR__N_ENTITIES": "200",  # the flow runs below are about the CLI, not the data
    }
    env.pop("PREFECT_HOME", None)
    yield env
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        LocalStack(load_settings()).down()


def test_stack_up_follows_its_port_advice_and_runs_flows_by_hand(own_stack_env: dict[str, str]) -> None:
    """A busy S3 port: `stack up` says which setting to change; with it changed, server and clients move (the
    S3 endpoint and Prefect API URL are derived, not set); `stack up` installs the zombie-run automation; and
    `conveyor flow run` runs a flow on this stack's server, visible there, exit code from its state."""
    env = own_stack_env
    busy = int(env["CONVEYOR_LOCAL_STACK__S3_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", busy))
        squatter.listen()
        refused = _conveyor(env, "stack", "up")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    advice = re.search(r"(CONVEYOR_LOCAL_STACK__S3_PORT)=<port>", refused.stdout)
    assert advice is not None and f"[{busy}]" in refused.stdout, refused.stdout

    env[advice.group(1)] = str(free_s3_base_port())  # follow the advice, nothing else
    started = _conveyor(env, "stack", "up")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "automation 'conveyor-crash-zombie-flow-runs' created" in started.stdout, started.stdout
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        settings = load_settings()
    stack = LocalStack(settings)
    assert settings.storage.endpoint_url == stack.s3_url.rstrip("/") and env[advice.group(1)] in stack.s3_url
    store = ObjectStore(settings.storage)  # a client with the derived endpoint reaches the moved server
    store.put_bytes("probe/hello.txt", b"moved")
    assert store.get_bytes("probe/hello.txt") == b"moved"
    again = _conveyor(env, "stack", "up")  # a second `make run` on a running stack: the automation is updated
    assert again.returncode == 0, again.stdout + again.stderr
    assert "automation 'conveyor-crash-zombie-flow-runs' updated" in again.stdout, again.stdout
    status, automations = stack.api("POST", "/automations/filter", {})
    assert status == 200 and [a["name"] for a in automations] == ["conveyor-crash-zombie-flow-runs"]  # type: ignore[union-attr]

    ok = _conveyor(env, "flow", "run", "ingest", "--param", "start_date=2026-01-01", "--param", "days=2")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    run_id = re.search(r"flow run ([0-9a-f-]{36}) \(ingest\): Completed", ok.stdout)
    assert run_id is not None, ok.stdout
    assert f"{stack.prefect_api_url.removesuffix('/api')}/runs/flow-run/{run_id.group(1)}" in ok.stdout
    status, run = stack.api("GET", f"/flow_runs/{run_id.group(1)}")
    assert status == 200 and run["state_type"] == "COMPLETED", run  # type: ignore[index]
    assert len(published_days(store, settings)) == 2

    failing = _conveyor(
        env, "flow", "run", "validate-raw", "--param", "start_date=2027-01-01", "--param", "end_date=2027-01-02"
    )
    assert failing.returncode == 1, failing.stdout + failing.stderr
    failed_id = re.search(r"flow run ([0-9a-f-]{36}) \(validate-raw\): Failed", failing.stdout)
    assert failed_id is not None and "no published raw partitions" in failing.stdout, failing.stdout
    status, run = stack.api("GET", f"/flow_runs/{failed_id.group(1)}")
    assert status == 200 and run["state_type"] == "FAILED", run  # type: ignore[index]
