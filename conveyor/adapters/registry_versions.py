"""A registry's model versions on the object store (`models/<name>/versions/<version>/`; the whole layout is in
conveyor/adapters/registry.py): how a version is written, and how it is read back verified.

Written object by object, metadata.json last (the commit): the version number is claimed with S3's
create-if-absent (`_claim`), then the artifact, its ONNX twin (kept only when it passed the parity check), the
reference sample and the files are stored, then metadata.json's Ed25519 signature, then metadata.json itself.
Read back, metadata.json's signature is checked with the trusted keyring (conveyor/adapters/signing.py) before its
SHA-256s are believed, and every artifact's bytes are checked against them before they are used (unpickled).
"""

from __future__ import annotations

import io
import json
import logging
import mimetypes
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import joblib
import pandas as pd
from threadpoolctl import threadpool_limits

from configs.settings import Settings
from conveyor.adapters.object_store import (
    ObjectNotFound,
    ObjectStore,
    PreconditionFailed,
    dataframe_to_parquet_bytes,
    sha256_bytes,
)
from conveyor.adapters.onnx_twin import TWIN_FILE, TwinRecord, export_twin
from conveyor.adapters.registry_log import MAX_ATTEMPTS
from conveyor.adapters.registry_records import (
    ModelMetadata,
    ModelVersion,
    RegistryError,
    TamperedArtifact,
    UnverifiedVersion,
    _now,
    code_version,
    default_actor,
    library_versions,
)
from conveyor.adapters.signing import Keyring, SignatureRefused, Signer, signer, trusted_keyring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredArtifacts:
    """What `VersionStore.store_artifacts` wrote for a version: its keys and the SHA-256s metadata.json records."""

    artifact_key: str
    sha256: str
    reference_key: str
    reference_sha256: str
    files: dict[str, str]  # file name -> key
    twin: TwinRecord


class VersionStore:
    """The versions of the models under one registry root: their keys, the version number claimed, the objects
    written (signed metadata last), and reads that verify the signature and the checksums."""

    def __init__(self, store: ObjectStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.root = settings.storage.prefixes.models
        self._keyring: Keyring | None = None
        self._signer: Signer | None = None

    # ---- layout ---------------------------------------------------------------------------------------
    def model_root(self, model_name: str) -> str:
        if not model_name or "/" in model_name:
            raise RegistryError(f"invalid model name {model_name!r}")
        return f"{self.root}/{model_name}"

    def version_root(self, model_name: str, version: int) -> str:
        return f"{self.model_root(model_name)}/versions/{version:06d}"

    def version_uri(self, model_name: str, version: int) -> str:
        return self.store.uri(f"{self.version_root(model_name, version)}/metadata.json")

    # ---- keys -----------------------------------------------------------------------------------------
    def keyring(self) -> Keyring:
        if self._keyring is None:
            self._keyring = trusted_keyring(self.settings)
        return self._keyring

    def signing_key(self) -> Signer:
        """The signer, checked to be trusted by this registry's keyring: a version nobody could load is refused
        before anything is written."""
        if self._signer is None:
            candidate = signer(self.settings)
            if candidate.key_id not in self.keyring().keys:
                raise RegistryError(
                    f"signing key {candidate.key_id} (from {candidate.source}) is not in the trusted keyring "
                    f"({sorted(self.keyring().keys)}): versions it signs could not be loaded; add its public key "
                    "to signing.trusted_public_keys or <signing.key_dir>/keyring.json (`conveyor keys list`)"
                )
            self._signer = candidate
        return self._signer

    # ---- writing a version ----------------------------------------------------------------------------
    def claim(self, model_name: str) -> int:
        """The next free version number, taken by creating its `_claim` object if absent (racing writers each get
        their own number)."""
        existing = [
            int(p.rstrip("/").rsplit("/", 1)[1])
            for p in self.store.list_prefixes(f"{self.model_root(model_name)}/versions/")
        ]
        candidate = max(existing, default=0) + 1
        for _ in range(MAX_ATTEMPTS):
            try:
                self.store.put_bytes_conditional(
                    f"{self.version_root(model_name, candidate)}/_claim",
                    json.dumps({"at": _now()}).encode(),
                    if_absent=True,
                )
                return candidate
            except PreconditionFailed:
                candidate += 1
        # Lost every race: not a RegistryError (those are deterministic), so a task retry may still win.
        raise PreconditionFailed(
            f"{model_name}: could not claim a version number after {MAX_ATTEMPTS} tries (too many concurrent writers?)"
        )

    def store_artifacts(
        self,
        model_name: str,
        version: int,
        model: Any,
        reference: pd.DataFrame,
        files: dict[str, bytes],
        twin_rows: pd.DataFrame | None,
    ) -> StoredArtifacts:
        """Store everything of a claimed version but its metadata: the pickled model, its ONNX twin, the reference
        sample and the files. Nothing here is a version yet (metadata.json is the commit)."""
        root = self.version_root(model_name, version)
        buffer = io.BytesIO()
        joblib.dump(model, buffer, compress=3)
        sha = self.store.put_bytes(f"{root}/model.joblib", buffer.getvalue())
        twin = self._store_twin(root, model, twin_rows)
        reference_bytes = dataframe_to_parquet_bytes(reference.reset_index(drop=True))
        reference_sha = self.store.put_bytes(f"{root}/reference.parquet", reference_bytes)
        stored_files = {}
        for name, data in files.items():
            key = f"{root}/{name}"
            self.store.put_bytes(key, data, content_type=mimetypes.guess_type(name)[0] or "application/octet-stream")
            stored_files[name] = key
        return StoredArtifacts(
            f"{root}/model.joblib", sha, f"{root}/reference.parquet", reference_sha, stored_files, twin
        )

    def _store_twin(self, root: str, model: Any, rows: pd.DataFrame | None) -> TwinRecord:
        """Export and parity-check the ONNX twin; store model.onnx only when it passed (a failed twin is never
        used, so it is not kept: its record says why)."""
        cfg = self.settings.twin
        if not cfg.export or rows is None:
            why = "twin.export is false" if not cfg.export else "no parity rows given at registration"
            return TwinRecord("not_exported", why, cfg.parity_tolerance)
        limit = self.settings.training.max_threads
        # The parity check runs the Pipeline too: capped like training's predict (OpenMP on busy cores crawls).
        with nullcontext() if limit is None else threadpool_limits(limits=limit):
            export = export_twin(model, rows.head(cfg.max_parity_rows), cfg.parity_tolerance, cfg.threads)
        record = export.record
        if record.status != "passed" or export.onnx_bytes is None:
            log.warning("ONNX twin of %s not stored: %s", root, record.reason)
            return record
        key = f"{root}/{TWIN_FILE}"
        sha = self.store.put_bytes(key, export.onnx_bytes)
        return TwinRecord(**{**record.to_json(), "key": key, "sha256": sha})

    def commit(
        self,
        model_name: str,
        version: int,
        metadata: ModelMetadata,
        stored: StoredArtifacts,
        actor: str | None,
        signing_key: Signer,
    ) -> ModelVersion:
        """Write the version's metadata.json (its artifacts' checksums and its lineage), signed: from here on the
        version exists."""
        registered = ModelVersion(
            **asdict(metadata),
            model_name=model_name,
            version=version,
            created_at=_now(),
            artifact_key=stored.artifact_key,
            sha256=stored.sha256,
            reference_key=stored.reference_key,
            reference_sha256=stored.reference_sha256,
            files=stored.files,
            code_version=code_version(self.settings.project_root),
            library_versions=library_versions(),
            registered_by=actor or default_actor(),
            twin=stored.twin.to_json(),
        )
        root = self.version_root(model_name, version)
        body = json.dumps(registered.to_json(), indent=2, sort_keys=True, default=str).encode()
        # The signature goes first: metadata.json is the commit, and a committed version is always signed.
        self.store.put_json(f"{root}/metadata.json.sig", signing_key.sign(body))
        self.store.put_bytes(f"{root}/metadata.json", body, content_type="application/json")
        return registered

    # ---- reading a version ----------------------------------------------------------------------------
    def get_version(self, model_name: str, version: int) -> ModelVersion:
        """The version's metadata, its signature verified (UnverifiedVersion when unsigned or wrongly signed)."""
        root = self.version_root(model_name, version)
        try:
            body = self.store.get_bytes(f"{root}/metadata.json")
        except ObjectNotFound:
            raise RegistryError(
                f"{model_name} v{version} is not registered (no {self.version_uri(model_name, version)})"
            ) from None
        try:
            signature = self.store.get_json(f"{root}/metadata.json.sig")
        except ObjectNotFound:
            signature = None
        try:
            self.keyring().verify(body, signature)
        except SignatureRefused as exc:
            raise UnverifiedVersion(
                f"{model_name} v{version}: {exc} ({self.store.uri(root)}/metadata.json and .sig); refusing to use "
                "it: its checksums cannot be trusted. Train and register it again, or restore the original objects "
                "(a version registered before signing existed: `conveyor keys adopt` checks and signs it)"
            ) from None
        return ModelVersion.from_json(json.loads(body))

    def list_versions(self, model_name: str) -> list[ModelVersion]:
        """Complete versions (those with metadata.json), oldest first. For listing: signatures are not checked
        here (every load and `get_version` checks them)."""
        keys = self.store.list_keys(f"{self.model_root(model_name)}/versions/")
        return [ModelVersion.from_json(self.store.get_json(k)) for k in keys if k.endswith("/metadata.json")]

    def verified_bytes(self, key: str, expected: str, what: str) -> bytes:
        """The object's bytes, refused (TamperedArtifact) unless their SHA-256 is `expected`."""
        try:
            data = self.store.get_bytes(key)
        except ObjectNotFound:
            raise RegistryError(
                f"{what}: {self.store.uri(key)} is gone (a pruned version? see the audit log: `conveyor models log`)"
            ) from None
        actual = sha256_bytes(data)
        if actual != expected:
            raise TamperedArtifact(
                f"{what}: SHA-256 of {self.store.uri(key)} is {actual[:16]}..., but {expected[:16]}... was recorded "
                "at registration. The artifact changed after it was registered; refusing to load it. "
                "Re-register the model (train again) or restore the original object."
            )
        return data

    def sign_unsigned(self, model_name: str) -> list[int]:
        """Sign the versions registered before signing existed (no metadata.json.sig), each after checking its
        stored artifacts against the checksums its metadata records. The operator vouches for the bucket as it
        is now (`conveyor keys adopt`); a version that has a signature, valid or not, is left alone."""
        signing_key = self.signing_key()
        adopted = []
        for key in self.store.list_keys(f"{self.model_root(model_name)}/versions/"):
            if not key.endswith("/metadata.json") or self.store.exists(f"{key}.sig"):
                continue
            body = self.store.get_bytes(key)
            meta = ModelVersion.from_json(json.loads(body))
            for artifact, sha, what in (
                (meta.artifact_key, meta.sha256, "model"),
                (meta.reference_key, meta.reference_sha256, "reference sample"),
            ):
                if self.store.exists(artifact):  # a pruned version keeps only its metadata
                    self.verified_bytes(artifact, sha, f"{meta.label} {what}")
            self.store.put_json(f"{key}.sig", signing_key.sign(body))
            log.warning("signed %s, registered unsigned, with key %s", meta.label, signing_key.key_id)
            adopted.append(meta.version)
        return adopted
