"""Signing keys without a server: the first use of a fresh key dir creates exactly one key, even when several
workers start at once; a bad private key is named by where it came from, never echoed."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from configs.settings import Settings, SigningConfig, load_settings
from conveyor.adapters.signing import SigningKeyMissing, signer, trusted_keyring


def _settings(key_dir: Path, **signing: object) -> Settings:
    return load_settings().model_copy(update={"signing": SigningConfig(key_dir=key_dir, **signing)})


def test_concurrent_first_use_creates_one_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "signing")
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: signer(settings).key_id, range(16)))
    assert len(ids) == 1
    keyring = json.loads((tmp_path / "signing" / "keyring.json").read_text())
    assert set(keyring["keys"]) == ids == {keyring["current"]} == set(trusted_keyring(settings).keys)
    assert [p.name for p in (tmp_path / "signing" / "private").iterdir()] == [f"{ids.pop()}.pem"]


def test_a_malformed_private_key_is_named_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyMissing, match="CONVEYOR_SIGNING__PRIVATE_KEY: not an Ed25519 private key") as e:
        signer(_settings(tmp_path, private_key="c2VjcmV0LXZhbHVl"))
    assert "c2VjcmV0LXZhbHVl" not in str(e.value)
