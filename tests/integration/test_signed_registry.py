"""Signed registry versions on the real S3 server: a swapped artifact whose checksum was recomputed in
metadata.json is refused, so is an unsigned version or one signed with an untrusted key; rotation keeps old
versions loadable and signs new ones with the new key; scorers need only public keys."""

from __future__ import annotations

import datetime as dt
import io
import json
import stat
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from configs.settings import Settings, SigningConfig
from conveyor.adapters.object_store import ObjectStore, sha256_bytes
from conveyor.adapters.registry import (
    ModelMetadata,
    ModelRegistry,
    RegistryError,
)
from conveyor.adapters.registry_records import TamperedArtifact, UnverifiedVersion
from conveyor.adapters.signing import Signer, SigningKeyMissing, public_key_text, rotate, signer
from conveyor.demo.synthetic import generate_window
from conveyor.domain.failures import DeterministicFailure
from conveyor.services.training import _features, build_pipeline

pytestmark = pytest.mark.integration
MODEL = "churn"


@pytest.fixture(scope="module")
def fitted(s3_server: Settings) -> tuple[Any, pd.DataFrame]:
    ds = s3_server.dataset
    generator = s3_server.generator.model_copy(update={"n_entities": 600})
    frame = pd.concat(generate_window(dt.date(2026, 1, 1), 20, ds, generator).values(), ignore_index=True)
    rows = _features(frame, ds)
    model = build_pipeline(ds, s3_server.training.models["quick"], seed=0).fit(rows, frame[ds.label_column])
    return model, rows


def _with_key_dir(settings: Settings, key_dir: Path, **signing: Any) -> Settings:
    return settings.model_copy(update={"signing": SigningConfig(key_dir=key_dir, **signing)})


def _register(registry: ModelRegistry, fitted: tuple[Any, pd.DataFrame]) -> Any:
    model, rows = fitted
    metadata = ModelMetadata(
        metrics={"test": {"roc_auc": 0.8}},
        gates={"passed": True, "reasons": []},
        training_window={"start": "2026-01-01", "end": "2026-01-20"},
        feature_service="churn_v1",
        feature_names=registry.settings.dataset.feature_names,
        data_fingerprint="abc",
        params={},
    )
    reference = rows.head(100).assign(score=model.predict_proba(rows.head(100))[:, 1])
    return registry.register(MODEL, model, metadata, reference, twin_rows=rows.tail(300))


def _metadata_key(version: Any) -> str:
    return version.artifact_key.rsplit("/", 1)[0] + "/metadata.json"


def test_swapped_artifact_with_recomputed_checksum_is_refused_before_unpickling(
    store: ObjectStore,
    s3_server: Settings,
    fitted: tuple[Any, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = ModelRegistry(store, _with_key_dir(s3_server, tmp_path))
    version = _register(registry, fitted)
    registry.promote(MODEL, version.version, actor="test", reason="first")
    assert registry.load(MODEL).version.version == 1  # signed and verified: loads
    # An attacker with write access to the bucket, but not the key: a valid pickle and a matching checksum.
    buffer = io.BytesIO()
    joblib.dump({"evil": True}, buffer)
    store.put_bytes(version.artifact_key, buffer.getvalue())
    forged = {**store.get_json(_metadata_key(version)), "sha256": sha256_bytes(buffer.getvalue())}
    store.put_json(_metadata_key(version), forged)
    unpickled: list[object] = []
    monkeypatch.setattr(joblib, "load", lambda *a, **k: unpickled.append(a))
    fresh = ModelRegistry(store, _with_key_dir(s3_server, tmp_path))
    for load in (
        lambda: fresh.load(MODEL),
        lambda: fresh.load_version(version),  # the caller's (good) metadata is not trusted either: re-read
        lambda: fresh.load_reference(MODEL, 1),
        lambda: fresh.load_twin(version),
        lambda: fresh.get_version(MODEL, 1),
    ):
        with pytest.raises(UnverifiedVersion, match=r"churn v1: signature by key [0-9a-f]{16} does not verify") as e:
            load()
        assert isinstance(e.value, DeterministicFailure) and isinstance(e.value, RegistryError)
    assert unpickled == []
    assert "metadata.json and .sig); refusing to use it" in str(e.value)


def test_unsigned_and_foreign_signed_versions_are_refused(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame], tmp_path: Path
) -> None:
    settings = _with_key_dir(s3_server, tmp_path)
    registry = ModelRegistry(store, settings)
    version = _register(registry, fitted)
    sig_key = _metadata_key(version) + ".sig"
    signature = store.get_json(sig_key)
    assert signature["key_id"] == signer(settings).key_id and signature["algorithm"] == "ed25519"
    store.delete_keys([sig_key])
    with pytest.raises(UnverifiedVersion, match=r"churn v1: no signature \(s3://.*metadata.json and .sig\)"):
        registry.load_version(version)
    # Re-signed with a key of the attacker's own: well formed, but not in the keyring.
    intruder = Signer(Ed25519PrivateKey.generate(), "attacker")
    store.put_json(sig_key, intruder.sign(store.get_bytes(_metadata_key(version))))
    with pytest.raises(UnverifiedVersion, match=rf"signed with key {intruder.key_id}, which is not trusted"):
        registry.load_version(version)


def test_rotation_keeps_old_versions_loadable_and_signs_new_ones_with_the_new_key(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame], tmp_path: Path
) -> None:
    settings = _with_key_dir(s3_server, tmp_path)
    old_key = signer(settings).key_id  # local profile: the dev pair is created on first use
    v1 = _register(ModelRegistry(store, settings), fitted)
    rotation = rotate(settings)
    assert rotation.key_id != old_key and set(rotation.trusted) == {old_key, rotation.key_id}
    assert stat.S_IMODE((tmp_path / "private" / f"{rotation.key_id}.pem").stat().st_mode) == 0o600
    assert json.loads((tmp_path / "keyring.json").read_text())["current"] == rotation.key_id
    registry = ModelRegistry(store, settings)
    v2 = _register(registry, fitted)
    signed_by = {v.version: store.get_json(_metadata_key(v) + ".sig")["key_id"] for v in (v1, v2)}
    assert signed_by == {1: old_key, 2: rotation.key_id}
    for v in (v1, v2):
        assert registry.load_version(v).version.version == v.version
        assert registry.load_twin(v).predict_proba(fitted[1].head(5)).shape == (5, 2)
    # A scorer elsewhere: no key dir, no private key, only the public keys in its configuration.
    keys = {
        kid: json.loads((tmp_path / "keyring.json").read_text())["keys"][kid]["public_key"]
        for kid in signed_by.values()
    }
    scorer_settings = _with_key_dir(s3_server, tmp_path / "empty", trusted_public_keys=keys).model_copy(
        update={"active_profile": "prod"}
    )
    scorer = ModelRegistry(store, scorer_settings)
    assert [scorer.load_version(v).version.version for v in (v1, v2)] == [1, 2]
    assert not (tmp_path / "empty").exists()  # verifying created no key
    with pytest.raises(SigningKeyMissing, match="no signing key for profile 'prod'"):
        _register(scorer, fitted)
    # Only the old key trusted: the version signed after the rotation is refused.
    only_old = _with_key_dir(s3_server, tmp_path / "empty", trusted_public_keys={old_key: keys[old_key]})
    only_old = only_old.model_copy(update={"active_profile": "prod"})
    with pytest.raises(UnverifiedVersion, match=f"churn v2: signed with key {rotation.key_id}, which is not trusted"):
        ModelRegistry(store, only_old).load_version(v2)


def test_a_key_from_the_environment_signs_and_must_be_trusted(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame], tmp_path: Path
) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization

    key = Ed25519PrivateKey.generate()
    seed = base64.b64encode(
        key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    ).decode()
    untrusted = _with_key_dir(s3_server, tmp_path, private_key=seed)
    with pytest.raises(RegistryError, match=r"signing key [0-9a-f]{16} \(from env\) is not in the trusted keyring"):
        _register(ModelRegistry(store, untrusted), fitted)
    kid = Signer(key, "test").key_id
    trusted = _with_key_dir(
        s3_server, tmp_path, private_key=seed, trusted_public_keys={kid: public_key_text(key.public_key())}
    )
    version = _register(ModelRegistry(store, trusted), fitted)
    assert store.get_json(_metadata_key(version) + ".sig")["key_id"] == kid
    assert seed not in json.dumps(store.get_json(_metadata_key(version)))  # the key is nowhere in the bucket
    with pytest.raises(SigningKeyMissing, match="CONVEYOR_SIGNING__PRIVATE_KEY is set"):
        rotate(trusted)


def test_batch_scoring_and_drift_monitoring_refuse_a_forged_champion(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame]
) -> None:
    from conveyor.services.batch_inference import ModelRef, load_scoring_model, resolve_model
    from conveyor.services.monitoring import drift_report_for_day

    registry = ModelRegistry(store, s3_server)  # the session's local dev key
    version = _register(registry, fitted)
    registry.promote(MODEL, version.version, actor="test", reason="first")
    ref = resolve_model(store, s3_server, MODEL, None)
    forged = {**store.get_json(_metadata_key(version)), "feature_service": "churn_evil"}
    store.put_json(_metadata_key(version), forged)
    refused = r"churn v1: signature by key [0-9a-f]{16} does not verify"
    with pytest.raises(UnverifiedVersion, match=refused):
        resolve_model(store, s3_server, MODEL, None)
    for runtime in ("sklearn", "onnx"):
        settings = s3_server.model_copy(update={"scoring": s3_server.scoring.model_copy(update={"runtime": runtime})})
        with pytest.raises(UnverifiedVersion, match=refused):
            load_scoring_model(store, settings, ModelRef(ref.name, ref.version, ref.feature_service))
    with pytest.raises(UnverifiedVersion, match=refused):
        drift_report_for_day(store, s3_server, MODEL, dt.date(2026, 1, 20))


def test_adopt_signs_versions_registered_before_signing_but_not_swapped_ones(
    store: ObjectStore, s3_server: Settings, fitted: tuple[Any, pd.DataFrame], tmp_path: Path
) -> None:
    registry = ModelRegistry(store, _with_key_dir(s3_server, tmp_path))
    old, swapped, signed = (_register(registry, fitted) for _ in range(3))
    for v in (old, swapped):  # as registered by the code before signing
        store.delete_keys([_metadata_key(v) + ".sig"])
    with pytest.raises(UnverifiedVersion, match="churn v1: no signature"):
        registry.load_version(old)
    store.put_bytes(swapped.artifact_key, b"swapped")
    with pytest.raises(TamperedArtifact, match="churn v2 model: SHA-256"):
        registry.sign_unsigned(MODEL)
    assert registry.load_version(old).version.version == 1  # adopted before v2 was found swapped
    with pytest.raises(UnverifiedVersion, match="churn v2: no signature"):
        registry.load_version(swapped)
    before = store.get_bytes(_metadata_key(signed) + ".sig")
    store.put_bytes(swapped.artifact_key, b"still swapped")
    with pytest.raises(TamperedArtifact):
        registry.sign_unsigned(MODEL)
    assert store.get_bytes(_metadata_key(signed) + ".sig") == before  # a signed version is left alone
