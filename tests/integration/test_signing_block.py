"""The prod way to hold the signing key: a Prefect Secret block. Rotation writes the new key into the block and
trusts its public key; the signer reads the block; the key never reaches a file or the bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from configs.settings import Settings, SigningConfig
from conveyor.adapters.signing import SigningKeyMissing, rotate, signer, trusted_keyring

pytestmark = pytest.mark.integration


def test_rotation_into_a_secret_block_signs_from_the_block(
    prefect_harness: None, test_settings: Settings, tmp_path: Path
) -> None:
    from prefect.blocks.system import Secret

    settings = test_settings.model_copy(
        update={
            "active_profile": "prod",
            "signing": SigningConfig(private_key_block="conveyor-signing", key_dir=tmp_path),
        }
    )
    with pytest.raises(SigningKeyMissing, match="no Secret block named 'conveyor-signing'"):
        signer(settings)
    first = rotate(settings)
    assert first.private_key_at == "Prefect Secret block 'conveyor-signing'"
    assert signer(settings).key_id == first.key_id
    assert not (tmp_path / "private").exists()  # only the public key is written locally
    second = rotate(settings)
    assert signer(settings).key_id == second.key_id != first.key_id
    assert set(trusted_keyring(settings).keys) == {first.key_id, second.key_id}
    stored = Secret.load("conveyor-signing", _sync=True).get()  # type: ignore[call-arg]
    assert stored.startswith("-----BEGIN PRIVATE KEY-----")
