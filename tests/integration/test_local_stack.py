"""The local stack: real servers, idempotent start, stop by PID, auth enforced."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest

from configs.settings import Settings
from conveyor.ops.local_stack import LocalStack

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
