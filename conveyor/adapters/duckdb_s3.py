"""The duckdb connection Feast's duckdb offline store reads the raw Delta table through, straight from S3.

Feast never opens a duckdb connection itself: its offline store calls the module-level `ibis.read_delta(path)`
and `ibis.memtable(...)`, which use ibis's process-wide default backend. So this module builds that backend once
per process and installs it with `ibis.set_backend` before any offline call:
- the `httpfs` and `delta` extensions come from the `duckdb-extension-*` wheels (INSTALLed from the wheel's file
  into the venv, then LOADed: a path-only LOAD makes ibis run `INSTALL delta`, which downloads), and
  `autoinstall_known_extensions=false` makes a missing extension an error, never a download;
- S3 credentials live in a TEMPORARY secret scoped to the bucket (`allow_persistent_secrets=false`: nothing is
  written to or read from ~/.duckdb/stored_secrets);
- `read_delta` can be pinned to a table version (`pinned_versions`): Feast's FileSource cannot name one.
The connection is not thread-safe, so every offline call holds `offline_session`'s lock.
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import ibis
from ibis.backends.duckdb import Backend as DuckDBBackend

from conveyor.adapters.raw_data import RawTable

EXTENSIONS = ("httpfs", "delta")
_PINNED: contextvars.ContextVar[dict[str, int]] = contextvars.ContextVar("conveyor_delta_pins", default={})  # noqa: B039
_LOCK = threading.RLock()
_state: dict[str, Any] = {"backend": None, "secrets": {}}


class PinnableDuckDB(DuckDBBackend):  # type: ignore[misc]
    """ibis's duckdb backend whose `read_delta` reads the version pinned for that table, if any."""

    def read_delta(self, path: str | Path, /, *, table_name: str | None = None, **kwargs: Any) -> Any:
        version = _PINNED.get().get(str(path).rstrip("/"))
        if version is not None:
            kwargs.setdefault("version", version)
        return super().read_delta(path, table_name=table_name, **kwargs)


def extension_file(name: str) -> Path:
    """The `.duckdb_extension` shipped in the duckdb-extension-<name> wheel (built for one duckdb release)."""
    module = importlib.import_module(f"duckdb_extension_{name}")
    path = Path(str(module.__file__)).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise RuntimeError(
            f"{path} is missing: duckdb-extension-{name} must be the release built for duckdb=={duckdb.__version__} "
            "(pin all three to the same version in pyproject.toml)"
        )
    return path


def _connect() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_persistent_secrets": False,
            "extension_directory": os.path.join(sys.prefix, "share", "duckdb", "extensions"),
        },
    )
    for name in EXTENSIONS:
        connection.execute(f"INSTALL '{extension_file(name)}'")  # a file copy the first time, then a no-op
        connection.execute(f"LOAD {name}")
    return connection


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ensure_secret(connection: duckdb.DuckDBPyConnection, table: RawTable) -> None:
    """One temporary secret per bucket, replaced when the endpoint or keys change."""
    options = table.storage_options
    key_id, secret = options.get("AWS_ACCESS_KEY_ID"), options.get("AWS_SECRET_ACCESS_KEY")
    endpoint = table.endpoint_url or f"https://s3.{table.region}.amazonaws.com"
    fingerprint = hashlib.sha256(f"{endpoint}|{key_id}|{secret}".encode()).hexdigest()
    if _state["secrets"].get(table.bucket) == fingerprint:
        return
    name = "conveyor_s3_" + hashlib.sha256(table.bucket.encode()).hexdigest()[:12]
    keys = f"KEY_ID {_quote(key_id)}, SECRET {_quote(secret)}, " if key_id and secret else ""
    style = "'vhost'" if options.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST") == "true" else "'path'"
    connection.execute(
        f"CREATE OR REPLACE TEMPORARY SECRET {name} (TYPE s3, {keys}"
        f"ENDPOINT {_quote(endpoint.split('://', 1)[-1].rstrip('/'))}, URL_STYLE {style}, "
        f"USE_SSL {'true' if endpoint.startswith('https://') else 'false'}, REGION {_quote(table.region)}, "
        f"SCOPE {_quote('s3://' + table.bucket)})"
    )
    _state["secrets"][table.bucket] = fingerprint


def _backend() -> PinnableDuckDB:
    backend = _state["backend"]
    if backend is None:
        backend = PinnableDuckDB.from_connection(_connect())
        _state["backend"] = backend
    if ibis.options.default_backend is not backend:  # get_backend() would build a stock one first
        ibis.set_backend(backend)
    return backend


@contextmanager
def offline_session(table: RawTable, version: int | None = None) -> Iterator[PinnableDuckDB]:
    """Hold the connection (one offline call at a time per process) with S3 access to `table`'s bucket and,
    given `version`, every read of the table pinned to that Delta version."""
    with _LOCK:
        backend = _backend()
        if table.on_s3:
            _ensure_secret(backend.con, table)
        token = _PINNED.set({**_PINNED.get(), table.uri.rstrip("/"): version}) if version is not None else None
        try:
            yield backend
        finally:
            if token is not None:
                _PINNED.reset(token)
