"""The Prefect server the CLI talks to: which one (per profile), the environment that points a process at it, and
the zombie-run automation every Conveyor server gets (installed by `conveyor stack up` and `conveyor deploy`), and
applying prefect.yaml's deployments to it (`deploy_all`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from configs.settings import TELEMETRY_OFF_ENV, ConfigError, Settings
from conveyor.adapters.prefect_api import ZOMBIE_AUTOMATION, api_client, ensure_zombie_automation
from conveyor.ops.local_stack import LocalStack
from conveyor.ops.processes import StackError, http_status, project_bin


def prefect_client_env(settings: Settings) -> dict[str, str]:
    """PREFECT_* variables for a process that must use the configured Prefect server (never Prefect's temporary
    one). Local profile: the local stack's server (`prefect.api_url` is derived from `local_stack.prefect_port`).
    Prod: `prefect.api_url`, else an exported PREFECT_API_URL; neither is a ConfigError saying what to set."""
    if settings.active_profile == "local":
        env = LocalStack(settings).client_env()
    else:
        env = dict(TELEMETRY_OFF_ENV)
        if settings.prefect.api_auth_string is not None:
            env["PREFECT_API_AUTH_STRING"] = settings.prefect.api_auth_string.get_secret_value()
    api_url = settings.prefect.api_url or os.environ.get("PREFECT_API_URL")
    if not api_url:
        raise ConfigError(
            f"prefect.api_url: not set for profile {settings.active_profile!r}, and PREFECT_API_URL is unset: "
            "set CONVEYOR_PREFECT__API_URL to your Prefect server's API, e.g. https://prefect.example.com/api"
        )
    env["PREFECT_API_URL"] = api_url
    return env


def use_prefect_server(settings: Settings) -> dict[str, str]:
    """Point this process at the configured Prefect server (call before prefect is imported); a variable the
    caller exported (PREFECT_API_URL, ...) wins. Returns the environment now in effect."""
    wanted = prefect_client_env(settings)
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in wanted}


def require_healthy(api_url: str) -> None:
    """Fail with what to do when nothing answers at `api_url` (instead of Prefect's minutes of retries)."""
    answer = http_status(api_url.rstrip("/") + "/health", timeout=5)
    if answer is None or answer[0] != 200:
        raise ConfigError(
            f"PREFECT_API_URL: no Prefect server answers at {api_url} (GET /health: "
            f"{'no connection' if answer is None else f'HTTP {answer[0]}'}); start it with `conveyor stack up` "
            "(local profile) or point CONVEYOR_PREFECT__API_URL at a running server"
        )


def install_zombie_automation(settings: Settings, env: dict[str, str]) -> str:
    """Install (or update) the automation that marks a flow run Crashed once it missed
    `prefect.zombie_after_missed_heartbeats` heartbeats, on the server `env` points at. Returns a line to print."""
    if not settings.prefect.zombie_after_missed_heartbeats:
        return "zombie-run automation not installed: prefect.zombie_after_missed_heartbeats is 0"
    from prefect.settings import get_current_settings

    heartbeat = get_current_settings().flows.heartbeat_frequency
    if heartbeat is None:
        return "zombie-run automation not installed: PREFECT_FLOWS_HEARTBEAT_FREQUENCY is unset (no heartbeats)"
    within = settings.prefect.zombie_after_missed_heartbeats * heartbeat
    with api_client(env["PREFECT_API_URL"], env.get("PREFECT_API_AUTH_STRING")) as api:
        done = ensure_zombie_automation(api, within)
    return f"automation {ZOMBIE_AUTOMATION!r} {done}: a run silent for {within}s is marked Crashed"


def deploy_all(project_root: Path, env: dict[str, str], timeout: float = 300.0) -> str:
    """`prefect deploy --all --no-prompt` from the project root (every deployment in prefect.yaml); returns its
    output. Raises StackError with the tail of the output when it fails."""
    result = subprocess.run(
        [project_bin("prefect"), "--no-prompt", "deploy", "--all"],
        cwd=project_root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise StackError(f"`prefect deploy --all` failed (exit {result.returncode}):\n{output[-3000:]}")
    return output
