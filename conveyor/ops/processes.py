"""Processes and ports on this machine: free loopback ports, a PID's liveness, stopping a process group by its
PID, the project's own executables. Used by the local stack and by the tests' engines."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path


class StackError(RuntimeError):
    """The local stack could not do what was asked; the message says what to do."""


def project_bin(name: str) -> str:
    # Executables installed next to this interpreter (the project's venv), not whatever is first on PATH.
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_s3_base_port(low: int = 20000, high: int = 39000) -> int:
    """A base port for SeaweedFS with base..base+4 and each + 10000 (its gRPC ports) free."""
    for _ in range(200):
        base = random.randint(low, high)
        if all(port_free("127.0.0.1", p) and port_free("127.0.0.1", p + 10000) for p in range(base, base + 5)):
            return base
    raise StackError(f"no free port range for an S3 server between {low} and {high}")


def http_status(url: str, timeout: float = 2.0) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(200).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except (urllib.error.URLError, OSError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) still answers kill(0); it is not running.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def stop_process_group(pid: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> bool:
    """SIGTERM the process group led by `pid` (a process started with `start_new_session=True`), give it
    `timeout` seconds, then SIGKILL it. Reaps `process` when this interpreter started it. Returns whether it
    ended on SIGTERM."""

    def gone() -> bool:
        return process.poll() is not None if process is not None else not pid_alive(pid)

    _signal_group(pid, signal.SIGTERM)
    graceful = wait_until(gone, timeout)
    if not graceful:
        _signal_group(pid, signal.SIGKILL)
        wait_until(gone, 10)
    return graceful


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The service was started in its own session, so its process group id is its PID: this signals exactly
    # the server and the children it spawned (uvicorn workers), nothing else.
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()
