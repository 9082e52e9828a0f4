"""The online-service tests' shared helpers: settings of a service of their own (bucket, Feast state, port) on the
session's S3 server, a registered champion, online features, and a service process started and stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from configs.settings import Settings, load_settings
from conveyor.adapters.feature_store import apply_definitions, write_online_rows
from conveyor.ops.local_stack import API, LocalStack, free_port
from tests.integration.scoring_data import population

CONVEYOR = str(Path(sys.executable).parent / "conveyor")


def service_env(base: Settings, feast_dir: Path, **extra: str) -> dict[str, str]:
    """CONVEYOR_* variables for one service: a fresh bucket, its own Feast state and port, fast polls and flushes."""
    return {
        "CONVEYOR_STORAGE__BUCKET": f"t-{uuid.uuid4().hex[:12]}",
        "CONVEYOR_FEATURES__STATE_DIR": str(feast_dir),
        "CONVEYOR_STORAGE__CREDENTIALS_FILE": str(base.storage.credentials_file),
        "CONVEYOR_SERVING__PORT": str(free_port()),
        "CONVEYOR_SERVING__POLL_SECONDS": "0.3",
        "CONVEYOR_SERVING__LOG_FLUSH_SECONDS": "1",
        **extra,
    }


def settings_for(env: dict[str, str]) -> Settings:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return load_settings()
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def online_population(settings: Settings, n: int = 300) -> pd.DataFrame:
    """`n` entities' feature rows, written to the service's Feast online store (declarations applied first)."""
    frame = population(settings, n)
    apply_definitions(settings)
    write_online_rows(settings, frame)
    return frame


def start_service(env: dict[str, str], log_path: Path, timeout: float = 120) -> subprocess.Popen[bytes]:
    """`conveyor serve` in its own process group, waited on until /health answers."""
    port = env["CONVEYOR_SERVING__PORT"]
    with open(log_path, "ab") as fh:
        process = subprocess.Popen(
            [CONVEYOR, "serve"], env={**os.environ, **env}, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop_service(process)
    raise RuntimeError(f"service not healthy after {timeout}s: {log_path.read_text()[-3000:]}")


def stop_service(process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """SIGTERM by PID (the service drains and flushes), SIGKILL only if it ignores that; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait(10)


def wait_for(predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def running_service(env: dict[str, str], settings: Settings) -> Iterator[str]:
    """The service started by `LocalStack.up(("api",))` (what `conveyor stack up --api` does) with `env`; yields
    its URL once it is ready (its champion loaded), stops it by PID after."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        stack = LocalStack(settings)
        stack.up((API,))
        try:
            url = stack.api_url
            wait_for(lambda: httpx.get(f"{url}/ready", timeout=10).json()["ready"], what="the service's champion")
            yield url
        finally:
            assert stack.down((API,)) == [API]
