"""The local stack: a SeaweedFS S3 server, a Prefect server and (optionally) a Prefect process worker on
127.0.0.1, started and stopped by PID.

`up()` is idempotent (a running, healthy service is left alone), `down()` stops only the processes whose PIDs
it recorded. Everything lives under `local_stack.state_dir` (git-ignored): data, logs, PID files, and the
generated S3 credentials (mode 0600, never printed).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from configs.settings import TELEMETRY_OFF_ENV, Settings
from conveyor.adapters.prefect_api import api_client
from conveyor.ops.processes import (
    StackError,
    free_port,
    free_s3_base_port,
    http_status,
    pid_alive,
    port_free,
    project_bin,
    stop_process_group,
    wait_until,
)

# Re-exported: tests and benchmarks import these from here.
__all__ = [
    "SERVICES",
    "STOP_ORDER",
    "WITH_WORKER",
    "API",
    "LocalStack",
    "ServiceState",
    "StackError",
    "free_port",
    "pid_alive",
    "private_stack_env",
    "stop_process_group",
]

log = logging.getLogger(__name__)

SERVICES = ("s3", "prefect")  # `up()` default; `up(WITH_WORKER)` adds the worker
WITH_WORKER = ("s3", "prefect", "worker")
STOP_ORDER = ("api", "worker", "s3", "prefect")  # the worker goes first: it must not outlive the server it polls
API = "api"  # the online inference service (`conveyor serve`): `up((*SERVICES, API))`, `stack up --api`


@dataclass(frozen=True)
class ServiceState:
    name: str
    pid: int | None
    healthy: bool
    url: str


def private_stack_env(state_dir: Path, bucket: str) -> dict[str, str]:
    """CONVEYOR_* variables for a stack of its own (free ports, its own state folder and bucket), so tests and
    benchmarks never touch a developer's `.local/` stack on the default ports. Only the stack's own settings:
    the clients' S3 endpoint, Prefect API URL, credentials file and Feast state follow from them."""
    return {
        "CONVEYOR_PROFILE": "local",
        "CONVEYOR_LOCAL_STACK__STATE_DIR": str(state_dir),
        "CONVEYOR_LOCAL_STACK__S3_PORT": str(free_s3_base_port()),
        "CONVEYOR_LOCAL_STACK__PREFECT_PORT": str(free_port()),
        "CONVEYOR_STORAGE__BUCKET": bucket,
    }


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cfg = settings.local_stack
        self.state_dir = self.cfg.state_dir
        self.host = self.cfg.host
        # Popen handles of the services started by this object, kept so they are reaped (no zombies).
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    # ---- layout ---------------------------------------------------------------------------------------
    def _pid_file(self, service: str) -> Path:
        return self.state_dir / "pids" / f"{service}.json"

    def _log_file(self, service: str) -> Path:
        return self.state_dir / "logs" / f"{service}.log"

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect"

    @property
    def s3_url(self) -> str:
        """Where the stack's S3 server listens (the local profile's `storage.endpoint_url` unless overridden)."""
        return self.cfg.s3_url

    @property
    def prefect_api_url(self) -> str:
        """Where the stack's Prefect server listens (the local profile's `prefect.api_url` unless overridden)."""
        return self.cfg.prefect_api_url

    def _s3_ports(self) -> dict[str, int]:
        # Every SeaweedFS port is pinned: a busy default port silently moves up by one otherwise.
        base = self.cfg.s3_port
        return {
            "s3.port": base,
            "master.port": base + 1,
            "volume.port": base + 2,
            "filer.port": base + 3,
            "admin.port": base + 4,
        }

    def ports(self, service: str) -> list[int]:
        if service == "worker":
            return []
        if service == API:
            return [self.settings.serving.port]
        if service == "s3":
            http = list(self._s3_ports().values())
            return http + [p + 10000 for p in http]  # SeaweedFS puts gRPC at http port + 10000
        return [self.cfg.prefect_port]

    # ---- credentials ----------------------------------------------------------------------------------
    def s3_credentials(self) -> tuple[str, str]:
        """The keys the S3 server enforces: configured ones, else generated once into the credentials file."""
        configured = self.settings.storage.resolved_credentials()
        if configured:
            return configured
        path = self.settings.storage.credentials_file or self.state_dir / "s3-credentials.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        creds = {"access_key_id": "conveyor-" + secrets.token_hex(6), "secret_access_key": secrets.token_hex(24)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(creds, fh)
        return creds["access_key_id"], creds["secret_access_key"]

    # ---- health ---------------------------------------------------------------------------------------
    def healthy(self, service: str) -> bool:
        if service == "worker":
            return self.worker_online()
        if service == API:
            result = http_status(f"{self.api_url}/health")
            return result is not None and result[0] == 200
        if service == "s3":
            # Any S3 answer (403 for an unsigned request when auth is on) means the gateway is serving.
            return http_status(self.s3_url + "/") is not None
        result = http_status(self.prefect_api_url + "/health")
        return result is not None and result[0] == 200 and result[1].strip() == "true"

    def _recorded_pid(self, service: str) -> int | None:
        path = self._pid_file(service)
        if not path.exists():
            return None
        pid = int(json.loads(path.read_text())["pid"])
        if pid_alive(pid):
            return pid
        path.unlink()  # stale: the process is gone
        return None

    def status(self) -> list[ServiceState]:
        urls = {
            "s3": self.s3_url,
            "prefect": self.prefect_api_url,
            "worker": f"{self.prefect_api_url}/work_pools/{self.settings.prefect.work_pool}",
        }
        states = [ServiceState(s, self._recorded_pid(s), self.healthy(s), urls[s]) for s in WITH_WORKER]
        if self._recorded_pid(API) is not None:
            states.append(ServiceState(API, self._recorded_pid(API), self.healthy(API), self.api_url))
        return states

    # ---- Prefect API (plain HTTP: this module never imports prefect) ----------------------------------
    def api(self, method: str, path: str, body: object | None = None) -> tuple[int, object]:
        """Call the stack's Prefect REST API (`conveyor.adapters.prefect_api.api_client`: basic auth from
        PREFECT_API_AUTH_STRING when set, a busy server's 503 retried); returns (status, JSON body or error text)."""
        # Never logged: the secret only goes into the request header.
        secret = self.settings.prefect.api_auth_string
        auth = secret.get_secret_value() if secret is not None else os.environ.get("PREFECT_API_AUTH_STRING")
        with api_client(self.prefect_api_url, auth or None) as client:
            response = client.request(method, path, json=body)
        if response.is_error:
            return response.status_code, response.text[:300]
        return response.status_code, response.json() if response.content else None

    def ensure_work_pool(self) -> bool:
        """Create the process work pool if it does not exist; True when it was created."""
        pool = self.settings.prefect.work_pool
        status, _ = self.api("GET", f"/work_pools/{pool}")
        if status == 200:
            return False
        try:
            status, detail = self.api(
                "POST", "/work_pools/", {"name": pool, "type": "process", "description": "Conveyor flows, run in place"}
            )
        except httpx.TimeoutException:
            # The create may have been applied before the answer was lost: the pool existing now is the answer.
            if self.api("GET", f"/work_pools/{pool}")[0] == 200:
                return True
            raise
        if status not in (200, 201, 409):
            raise StackError(f"could not create work pool {pool!r} at {self.prefect_api_url}: HTTP {status} {detail}")
        return status != 409

    def worker_online(self) -> bool:
        """A worker of this stack's pool has sent a heartbeat (it is polling for runs)."""
        try:
            status, workers = self.api("POST", f"/work_pools/{self.settings.prefect.work_pool}/workers/filter", {})
        except httpx.TransportError:
            return False
        if status != 200 or not isinstance(workers, list):
            return False
        name = self.worker_name
        return any(w.get("name") == name and w.get("status") == "ONLINE" for w in workers)

    @property
    def worker_name(self) -> str:
        return f"conveyor-{self.settings.prefect.work_pool}-{self.cfg.prefect_port}"

    # ---- start/stop -----------------------------------------------------------------------------------
    def _command(self, service: str) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that start `service`."""
        env = {**os.environ, **TELEMETRY_OFF_ENV}
        build = {"worker": self._worker_command, "s3": self._s3_command, API: self._api_command}.get(
            service, self._prefect_command
        )
        return build(env), env

    def _worker_command(self, env: dict[str, str]) -> list[str]:
        # Flow runs inherit this environment: the client settings, CONVEYOR_* and where the code is
        # (prefect.yaml's pull step: set_working_directory {{ $CONVEYOR_PROJECT_ROOT }}).
        env.update(self.client_env())
        env["CONVEYOR_PROJECT_ROOT"] = str(self.settings.project_root)
        self.ensure_work_pool()
        cmd = [
            project_bin("prefect"),
            "worker",
            "start",
            "--pool",
            self.settings.prefect.work_pool,
            "--type",
            "process",
            "--name",
            self.worker_name,
            "--install-policy",
            "never",
        ]
        return cmd

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.settings.serving.port}"

    def _api_command(self, env: dict[str, str]) -> list[str]:
        # The service reads the same settings (CONVEYOR_* in this environment), on the loopback address.
        return [project_bin("conveyor"), "serve", "--host", self.host]

    def _s3_command(self, env: dict[str, str]) -> list[str]:
        data_dir = self.state_dir / "seaweedfs"
        data_dir.mkdir(parents=True, exist_ok=True)
        key, secret = self.s3_credentials()
        env.update({"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret})
        cmd = [
            project_bin("weed"),
            "mini",
            f"-dir={data_dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-volume.max={self.cfg.s3_max_volumes}",
        ]
        cmd += [f"-{flag}={port}" for flag, port in self._s3_ports().items()]
        return cmd

    def _prefect_command(self, env: dict[str, str]) -> list[str]:
        self.prefect_home.mkdir(parents=True, exist_ok=True)
        env["PREFECT_HOME"] = str(self.prefect_home)
        env.pop("PREFECT_API_URL", None)  # the server must not think it is a client of another server
        # The UI's browser code calls this URL; left unset it points at port 4200 whatever --port says.
        env["PREFECT_UI_API_URL"] = self.prefect_api_url
        env["PREFECT_SERVER_API_PORT"] = str(self.cfg.prefect_port)
        database_url = self.settings.prefect.database_url
        if database_url is not None:  # PostgreSQL (prod profile); SQLite under PREFECT_HOME otherwise
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url.get_secret_value()
        auth = self.settings.prefect.api_auth_string
        if auth is not None:
            env["PREFECT_SERVER_API_AUTH_STRING"] = auth.get_secret_value()
        cmd = [
            project_bin("prefect"),
            "server",
            "start",
            "--host",
            self.host,
            "--port",
            str(self.cfg.prefect_port),
            "--analytics-off",
        ]
        return cmd

    def _start(self, service: str) -> int:
        busy = [p for p in self.ports(service) if not port_free(self.host, p)]
        if busy:
            raise StackError(port_clash_message(service, self.host, busy))
        cmd, env = self._command(service)
        log_path = self._log_file(service)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_fh:
            process = subprocess.Popen(
                cmd,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.state_dir,
                start_new_session=True,  # own process group: stopped as one by its PID
            )
        self._processes[service] = process
        pid_file = self._pid_file(service)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(json.dumps({"pid": process.pid, "cmd": cmd[:3], "started_at": time.time()}))
        return process.pid

    def _wait(self, service: str, pid: int) -> None:
        deadline = time.monotonic() + self.cfg.start_timeout_seconds
        while time.monotonic() < deadline:
            if self.healthy(service):
                return
            if not pid_alive(pid):
                raise StackError(f"{service} exited during start-up; see {self._log_file(service)}")
            time.sleep(0.25)
        raise StackError(
            f"{service} was not healthy after {self.cfg.start_timeout_seconds:.0f}s; see {self._log_file(service)}"
        )

    def up(self, services: tuple[str, ...] = SERVICES) -> dict[str, float]:
        """Start what is not running, wait for health; returns seconds spent per service."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        timings: dict[str, float] = {}
        for service in services:
            started = time.monotonic()
            pid = self._recorded_pid(service)
            if pid is None:
                pid = self._start(service)
                log.info("started %s (pid %d)", service, pid)
            else:
                log.info("%s already running (pid %d)", service, pid)
            self._wait(service, pid)
            timings[service] = time.monotonic() - started
        return timings

    def down(self, services: tuple[str, ...] = STOP_ORDER, timeout: float = 30.0) -> list[str]:
        """Stop the processes this stack started (by their recorded PIDs). Returns what was stopped."""
        stopped = []
        for service in services:
            pid = self._recorded_pid(service)
            if pid is None:
                continue
            if not stop_process_group(pid, timeout, self._processes.pop(service, None)):
                log.warning("%s (pid %d) ignored SIGTERM for %.0fs; it was sent SIGKILL", service, pid, timeout)
            # A restarted SeaweedFS silently moves to the next port if the old one is still bound.
            wait_until(lambda s=service: all(port_free(self.host, p) for p in self.ports(s)), 15)  # type: ignore[misc]
            self._pid_file(service).unlink(missing_ok=True)
            stopped.append(service)
        return stopped

    def client_env(self) -> dict[str, str]:
        """Environment for processes that use this stack (flows, workers, the Prefect CLI)."""
        env = {**TELEMETRY_OFF_ENV, "PREFECT_API_URL": self.prefect_api_url, "PREFECT_HOME": str(self.prefect_home)}
        auth = self.settings.prefect.api_auth_string
        if auth is not None:
            env["PREFECT_API_AUTH_STRING"] = auth.get_secret_value()
        return env


# The one setting that moves a server, and the client setting derived from it (local profile).
PORT_SETTINGS = {
    "s3": ("CONVEYOR_LOCAL_STACK__S3_PORT", "storage.endpoint_url"),
    "prefect": ("CONVEYOR_LOCAL_STACK__PREFECT_PORT", "prefect.api_url"),
    API: ("CONVEYOR_SERVING__PORT", "the service's URL"),
}


def port_clash_message(service: str, host: str, busy: list[int]) -> str:
    """What to do when a service's port is taken: the setting that moves the server and its clients."""
    variable, client_key = PORT_SETTINGS[service]
    return (
        f"{service}: port(s) {busy} on {host} are already in use by a process this stack did not start. Stop it, "
        f"or move the {service} server with {variable}=<port>: its clients follow ({client_key} is derived from "
        f"it unless set explicitly)."
    )
