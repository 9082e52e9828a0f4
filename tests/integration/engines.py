"""PostgreSQL and Redis from Debian's packages, started for a test by PID on free loopback ports in a temporary
folder (the production profile's engines, on one machine). Skips with the install command when missing."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor.ops.local_stack import free_port, stop_process_group


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited during start-up (code {process.returncode}); see {log}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"not listening on {port} after {timeout:.0f}s; see {log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop an engine this helper started (its own process group), by PID: SIGTERM, then SIGKILL after 30 s."""
    stop_process_group(process.pid, 30, process)


@dataclass
class Postgres:
    port: int
    user: str
    password: str
    process: subprocess.Popen[bytes]
    bin_dir: Path
    seconds_to_ready: float

    def url(self, database: str, driver: str = "postgresql+asyncpg") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def psql(self, database: str, sql: str) -> str:
        result = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-At",
                "-c",
                sql,
            ],
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return result.stdout.strip()


def start_postgres(folder: Path) -> Postgres:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        pytest.skip("prod tier: PostgreSQL binaries not found (apt-get install postgresql)")
    bin_dir = Path(candidates[-1]).parent
    started = time.monotonic()
    data, log = folder / "pgdata", folder / "postgres.log"
    folder.mkdir(parents=True, exist_ok=True)
    user, password = "conveyor", secrets.token_hex(12)
    (folder / "pwfile").write_text(password)
    run_as: dict[str, object] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as Debian's `postgres` user
        account = pwd.getpwnam("postgres")
        run_as = {"user": account.pw_uid, "group": account.pw_gid}
        for path in (folder, folder / "pwfile"):
            os.chown(path, account.pw_uid, account.pw_gid)
    init = subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            user,
            f"--pwfile={folder / 'pwfile'}",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        **run_as,
    )  # type: ignore[call-overload]
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed (exit {init.returncode}): {init.stderr[-2000:]}")
    port = free_port()
    with open(log, "ab") as fh:
        process = subprocess.Popen(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                str(folder),
                "-c",
                "fsync=off",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **run_as,
        )  # type: ignore[call-overload]
    _wait_port(port, process, log)
    pg = Postgres(port, user, password, process, bin_dir, 0.0)
    for _ in range(50):  # listening is not yet accepting: retry briefly
        try:
            pg.psql("postgres", "CREATE DATABASE prefect")
            break
        except subprocess.CalledProcessError:
            time.sleep(0.2)
    pg.seconds_to_ready = time.monotonic() - started
    return pg


@dataclass
class Redis:
    port: int
    password: str
    process: subprocess.Popen[bytes]
    seconds_to_ready: float

    @property
    def feast_connection_string(self) -> str:
        return f"127.0.0.1:{self.port},password={self.password}"

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "--no-auth-warning",
                "-a",
                self.password,
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return result.stdout.strip()


def start_redis(folder: Path) -> Redis:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("prod tier: redis-server not found (apt-get install redis-server)")
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    port, password, log = free_port(), secrets.token_hex(12), folder / "redis.log"
    config = folder / "redis.conf"  # the password in a 0600 file, not on the command line (ps shows argv)
    config.write_text(f'port {port}\nbind 127.0.0.1\nrequirepass {password}\nsave ""\nappendonly no\ndir {folder}\n')
    config.chmod(0o600)
    with open(log, "ab") as fh:
        process = subprocess.Popen(
            [server, str(config)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _wait_port(port, process, log)
    return Redis(port, password, process, time.monotonic() - started)
