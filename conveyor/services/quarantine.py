"""Quarantine on the object store: what a rejected batch leaves, and the housekeeping of what is there.

A batch goes to `quarantine/<dataset>/<batch key>/<run id>/`: its files (byte for byte, or the rejected rows),
its GX Data Docs page (`data-docs.html`) and `report.json` (written last: the decision, every failed
expectation, the files with their SHA-256, and for a batch `ingest` refused, how it was landed, so it can be
landed again). `conveyor data quarantine | reland | drop` lists, re-lands and drops what is there; a batch
re-landed is marked resolved (`resolution.json`), not deleted: its report stays where it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from configs.settings import Settings
from conveyor.adapters.object_store import BucketNotFound, ObjectStore, sha256_bytes
from conveyor.domain.expectations import ExpectationOutcome, ValidationResult

REPORT, RESOLUTION = "report.json", "resolution.json"


@dataclass(frozen=True)
class SourceFile:
    """A file as read, byte for byte: in memory (`data`) or on local disk (`path`, uploaded without loading it)."""

    name: str
    data: bytes = b""
    path: Path | None = None

    def describe(self) -> dict[str, Any]:
        if self.path is None:
            return {"name": self.name, "sha256": sha256_bytes(self.data), "size_bytes": len(self.data)}
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return {"name": self.name, "sha256": digest.hexdigest(), "size_bytes": self.path.stat().st_size}


@dataclass(frozen=True)
class GxReport:
    """Great Expectations' own account of a batch: `describe_dict()`, and the Data Docs page when built."""

    describe: dict[str, Any] | None = None
    docs_url: str | None = None


def safe_key(batch_key: str) -> str:
    return re.sub(r"[^A-Za-z0-9=._-]+", "_", batch_key)


def dataset_root(settings: Settings) -> str:
    return f"{settings.storage.prefixes.quarantine}/{settings.dataset.name}/"


def quarantine_prefix(settings: Settings, batch_key: str, run_id: str) -> str:
    return f"{dataset_root(settings)}{safe_key(batch_key)}/{run_id}"


def _publish_docs(store: ObjectStore, settings: Settings, prefix: str, docs_url: str | None) -> str | None:
    """Copy the local Data Docs page of a failed batch to `<quarantine prefix>/data-docs.html` (its styles
    and scripts come from CDNs, so the page reads the same from there)."""
    if not (settings.validation.publish_docs and docs_url and docs_url.startswith("file://")):
        return None
    key = f"{prefix}/data-docs.html"
    store.put_bytes(key, Path(unquote(docs_url.removeprefix("file://"))).read_bytes(), content_type="text/html")
    return store.uri(key)


def write_quarantine(
    store: ObjectStore,
    settings: Settings,
    result: ValidationResult,
    batch_key: str,
    run_id: str,
    files: list[SourceFile],
    gx: GxReport,
    **extra: Any,
) -> tuple[str, str | None]:
    """Keep `files` under the batch's quarantine prefix, with its Data Docs page when GX built one, then
    `report.json`. Returns (the quarantine URI, the published Data Docs URI or None)."""
    prefix = quarantine_prefix(settings, batch_key, run_id)
    for source in files:
        if source.path is not None:
            store.put_file(f"{prefix}/{source.name}", str(source.path))
        else:
            store.put_bytes(f"{prefix}/{source.name}", source.data)
    docs_uri = _publish_docs(store, settings, prefix, gx.docs_url)
    report = {
        "dataset": settings.dataset.name,
        "batch_key": batch_key,
        "run_id": run_id,
        "mode": settings.validation.mode,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "result": result.to_json(),
        **extra,
        "files": [f.describe() for f in files],
        "great_expectations": gx.describe,
        "data_docs": gx.docs_url,
        "data_docs_published": docs_uri,
    }
    store.put_json(f"{prefix}/{REPORT}", report)
    return store.uri(prefix + "/"), docs_uri


# ---- what is in quarantine ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuarantinedBatch:
    """One quarantined batch, as its report.json tells it."""

    batch_id: str  # `<batch key>/<run id>` as stored: what `conveyor data reland|drop` take
    prefix: str
    report: dict[str, Any] = field(repr=False)
    resolution: dict[str, Any] | None = None

    @property
    def batch_key(self) -> str:
        return str(self.report.get("batch_key", self.batch_id.split("/", 1)[0]))

    @property
    def landing(self) -> dict[str, Any] | None:
        """How `ingest` landed it (None: refused by another stage's gate, which re-runs it itself)."""
        found = self.report.get("landing")
        return found if isinstance(found, dict) else None

    @property
    def rows(self) -> int | None:
        found = self.report.get("rows_quarantined")
        return None if found is None else int(found)

    def reasons(self) -> list[str]:
        outcomes = (self.report.get("result") or {}).get("outcomes") or []
        known = ExpectationOutcome.__dataclass_fields__
        return [
            ExpectationOutcome(**{k: v for k, v in o.items() if k in known}).describe()
            for o in outcomes
            if not o.get("success")
        ]


def list_quarantined(store: ObjectStore, settings: Settings, include_resolved: bool = False) -> list[QuarantinedBatch]:
    """Every batch under `quarantine/<dataset>/`, oldest first; resolved ones only with `include_resolved`."""
    root = dataset_root(settings)
    try:
        keys = store.list_keys(root)
    except BucketNotFound:  # nothing was ever written: nothing is in quarantine
        return []
    resolved = {k.rsplit("/", 1)[0] for k in keys if k.endswith("/" + RESOLUTION)}
    found = []
    for key in (k for k in keys if k.endswith("/" + REPORT)):
        prefix = key.rsplit("/", 1)[0]
        if prefix in resolved and not include_resolved:
            continue
        resolution = store.get_json(f"{prefix}/{RESOLUTION}") if prefix in resolved else None
        found.append(QuarantinedBatch(prefix.removeprefix(root), prefix, store.get_json(key), resolution))
    return sorted(found, key=lambda b: str(b.report.get("created_at", "")))


def select(batches: list[QuarantinedBatch], wanted: str) -> list[QuarantinedBatch]:
    """The batches `wanted` names: a batch id (`<key>/<run id>`), or a batch key (every run that refused it)."""
    return [b for b in batches if wanted in (b.batch_id, b.batch_key, b.batch_id.split("/", 1)[0])]


def mark_resolved(store: ObjectStore, batch: QuarantinedBatch, **how: Any) -> None:
    store.put_json(f"{batch.prefix}/{RESOLUTION}", {"resolved_at": dt.datetime.now(dt.UTC).isoformat(), **how})


def drop(store: ObjectStore, batch: QuarantinedBatch) -> int:
    """Delete a batch's quarantine folder; returns the objects deleted."""
    return store.delete_prefix(batch.prefix + "/")
