"""Ed25519 signatures for the model registry: the registering process signs, every scorer only verifies.

The private key never sits in the bucket. It comes, first match wins, from
  1. `CONVEYOR_SIGNING__PRIVATE_KEY` (PEM PKCS#8, or base64 of the 32-byte seed),
  2. a Prefect Secret block named by `signing.private_key_block` (the PEM; the prod profile's way),
  3. the current key of `signing.key_dir` (`<local_stack.state_dir>/signing` by default, git-ignored), which the
     local profile creates on first use, so a fresh clone signs with no setup.
Trusted public keys (the keyring) are `<key_dir>/keyring.json` plus `signing.trusted_public_keys` from the
configuration (key id -> base64 public key: scorers elsewhere need only these, never a private key). A key id is
the first 16 hex digits of the SHA-256 of the raw public key.

    <key_dir>/keyring.json         {"current": "<key id>", "keys": {"<key id>": {"public_key": ..., "created_at": ...}}}
    <key_dir>/private/<key id>.pem  mode 0600; only keys created into the key dir (local profile, rotation)

`rotate` makes a new pair, trusts its public key next to the old ones (old versions keep verifying) and makes it
the key new versions are signed with. A signature document is small JSON stored next to what it signs.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import SecretStr

from configs.settings import Settings
from conveyor.domain.failures import DeterministicFailure

log = logging.getLogger(__name__)

ALGORITHM = "ed25519"
KEYRING_FILE = "keyring.json"


class SignatureRefused(DeterministicFailure, RuntimeError):
    """A signature is missing, made with an untrusted key, or does not verify; the message says which."""


class SigningKeyMissing(DeterministicFailure, RuntimeError):
    """No private key is configured where one is needed (registering, rotating)."""


def key_id(public: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw_public(public)).hexdigest()[:16]


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(public: Ed25519PublicKey) -> str:
    """The form `signing.trusted_public_keys` and keyring.json hold: base64 of the 32 raw bytes."""
    return base64.b64encode(_raw_public(public)).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip(), validate=True))


def parse_private_key(text: str, source: str) -> Ed25519PrivateKey:
    """A PEM PKCS#8 Ed25519 key or base64 of its 32-byte seed; `source` names where it came from in errors (the
    key itself never appears in a message)."""
    try:
        if text.lstrip().startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.strip().encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text.strip(), validate=True))
    except ValueError as exc:
        raise SigningKeyMissing(f"{source}: not an Ed25519 private key (PEM PKCS#8 or base64 seed): {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyMissing(f"{source}: a {type(key).__name__}, not an Ed25519 private key")
    return key


def private_key_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass(frozen=True)
class Signer:
    key: Ed25519PrivateKey
    source: str  # where the key came from (for messages; never the key)

    @property
    def key_id(self) -> str:
        return key_id(self.key.public_key())

    def sign(self, payload: bytes) -> dict[str, Any]:
        """The signature document of `payload` (stored next to it)."""
        return {
            "algorithm": ALGORITHM,
            "key_id": self.key_id,
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
            "signature": base64.b64encode(self.key.sign(payload)).decode(),
            "signed_at": dt.datetime.now(dt.UTC).isoformat(),
        }


@dataclass(frozen=True)
class Keyring:
    """Trusted public keys by key id, and where they were read from (for messages)."""

    keys: dict[str, Ed25519PublicKey]
    sources: tuple[str, ...]

    def verify(self, payload: bytes, signature: dict[str, Any] | None) -> str:
        """The key id that signed `payload`; raises SignatureRefused saying why not."""
        if not signature:
            raise SignatureRefused("no signature")
        if signature.get("algorithm") != ALGORITHM:
            raise SignatureRefused(f"signature algorithm {signature.get('algorithm')!r}, expected {ALGORITHM!r}")
        signed_by = str(signature.get("key_id"))
        public = self.keys.get(signed_by)
        if public is None:
            raise SignatureRefused(
                f"signed with key {signed_by}, which is not trusted (keyring: {sorted(self.keys) or 'empty'}, from "
                f"{', '.join(self.sources) or 'nowhere'})"
            )
        try:
            public.verify(base64.b64decode(str(signature.get("signature", "")), validate=True), payload)
        except (InvalidSignature, ValueError):
            raise SignatureRefused(
                f"signature by key {signed_by} does not verify: the signed bytes changed after signing "
                f"(SHA-256 now {hashlib.sha256(payload).hexdigest()[:16]}..., signed "
                f"{str(signature.get('payload_sha256', '?'))[:16]}...)"
            ) from None
        return signed_by


# ---- where keys live ------------------------------------------------------------------------------------------
def key_dir(settings: Settings) -> Path:
    directory = settings.signing.key_dir
    assert directory is not None  # derived by load_settings: <local_stack.state_dir>/signing
    return directory


def _read_keyring_file(directory: Path) -> dict[str, Any]:
    path = directory / KEYRING_FILE
    if not path.exists():
        return {"current": None, "keys": {}}
    return dict(json.loads(path.read_text()))


def _write_keyring_file(directory: Path, data: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / KEYRING_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)  # atomic: a reader sees the old or the new keyring, never half of one
    return path


def trusted_keyring(settings: Settings) -> Keyring:
    """The public keys scorers trust: keyring.json of the key dir plus `signing.trusted_public_keys`. In the local
    profile a first use creates the dev key pair, so a fresh clone verifies what it signs."""
    directory = key_dir(settings)
    if settings.active_profile == "local" and not _configured_private_key(settings):
        _local_signer(directory)  # creates the dev pair on first use
    keys: dict[str, Ed25519PublicKey] = {}
    sources = []
    stored = _read_keyring_file(directory)
    for kid, entry in stored["keys"].items():
        keys[kid] = parse_public_key(entry["public_key"])
    if stored["keys"]:
        sources.append(str(directory / KEYRING_FILE))
    for kid, text in settings.signing.trusted_public_keys.items():
        public = parse_public_key(text)
        if key_id(public) != kid:
            raise SignatureRefused(f"signing.trusted_public_keys[{kid!r}]: that public key's id is {key_id(public)}")
        keys[kid] = public
    if settings.signing.trusted_public_keys:
        sources.append("signing.trusted_public_keys")
    return Keyring(keys, tuple(sources))


def _configured_private_key(settings: Settings) -> bool:
    return settings.signing.private_key is not None or settings.signing.private_key_block is not None


def signer(settings: Settings) -> Signer:
    """The key new versions are signed with (see the module docstring for the order)."""
    cfg = settings.signing
    if cfg.private_key is not None:
        return Signer(parse_private_key(cfg.private_key.get_secret_value(), "CONVEYOR_SIGNING__PRIVATE_KEY"), "env")
    if cfg.private_key_block is not None:
        source = f"Prefect Secret block {cfg.private_key_block!r}"
        return Signer(parse_private_key(_secret_block_value(cfg.private_key_block), source), source)
    directory = key_dir(settings)
    stored = _read_keyring_file(directory)
    if stored.get("current") or settings.active_profile == "local":
        return _local_signer(directory)
    raise SigningKeyMissing(
        f"no signing key for profile {settings.active_profile!r}: set CONVEYOR_SIGNING__PRIVATE_KEY, or "
        f"signing.private_key_block (a Prefect Secret block), or create one with `conveyor keys rotate`"
    )


@contextmanager
def _key_dir_lock(directory: Path) -> Iterator[None]:
    """One writer of the key dir at a time, across processes: two flows starting on a fresh stack must not each
    create a first key (the keyring would keep only one, and the other's versions would never verify)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _local_signer(directory: Path) -> Signer:
    """The key dir's current key; creates the first pair when the key dir has none."""
    current = _read_keyring_file(directory).get("current")
    if current is None:
        with _key_dir_lock(directory):
            current = _read_keyring_file(directory).get("current")  # another process may have created it
            if current is None:
                key = Ed25519PrivateKey.generate()
                path = _store_private_key(directory, key)
                _trust(directory, key.public_key(), make_current=True)
                log.warning(
                    "created a local signing key %s at %s (dev use only; never commit it)",
                    key_id(key.public_key()),
                    path,
                )
                return Signer(key, str(path))
    path = directory / "private" / f"{current}.pem"
    if not path.exists():
        raise SigningKeyMissing(
            f"{directory / KEYRING_FILE} names current key {current}, but {path} is missing "
            "(the key pair is elsewhere, or set CONVEYOR_SIGNING__PRIVATE_KEY / signing.private_key_block)"
        )
    return Signer(parse_private_key(path.read_text(), str(path)), str(path))


def _store_private_key(directory: Path, key: Ed25519PrivateKey) -> Path:
    private = directory / "private"
    private.mkdir(parents=True, exist_ok=True)
    os.chmod(private, 0o700)
    path = private / f"{key_id(key.public_key())}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, even briefly
    with os.fdopen(fd, "w") as handle:
        handle.write(private_key_pem(key))
    return path


def _trust(directory: Path, public: Ed25519PublicKey, make_current: bool) -> Path:
    """Add `public` to keyring.json (the caller holds the key dir lock)."""
    stored = _read_keyring_file(directory)
    kid = key_id(public)
    stored["keys"][kid] = {"public_key": public_key_text(public), "created_at": dt.datetime.now(dt.UTC).isoformat()}
    if make_current:
        stored["current"] = kid
    return _write_keyring_file(directory, stored)


def _secret_block_value(block_name: str) -> str:
    from prefect.blocks.system import Secret
    from prefect.exceptions import ObjectNotFound as BlockNotFound

    try:
        # `_sync=True`: async_dispatch's blocking path even when called under a running event loop.
        block = cast("Secret[str]", Secret.load(block_name, _sync=True))  # type: ignore[call-arg]
    except (BlockNotFound, ValueError) as exc:
        raise SigningKeyMissing(
            f"signing.private_key_block: no Secret block named {block_name!r} on the Prefect server "
            f"({type(exc).__name__}); create it with `conveyor keys rotate` or in the UI (Blocks -> Secret)"
        ) from None
    return str(block.get())


@dataclass(frozen=True)
class Rotation:
    key_id: str
    private_key_at: str
    keyring_path: Path
    trusted: tuple[str, ...]
    public_key: str


def rotate(settings: Settings) -> Rotation:
    """A new key pair: its private key replaces the current one where the signer reads it (the key dir, or the
    Prefect Secret block), its public key joins the keyring; old public keys stay trusted."""
    cfg = settings.signing
    if cfg.private_key is not None:
        raise SigningKeyMissing(
            "CONVEYOR_SIGNING__PRIVATE_KEY is set: the signing key comes from the environment, which rotation "
            "cannot replace; unset it to rotate into the key dir, or use signing.private_key_block"
        )
    directory = key_dir(settings)
    key = Ed25519PrivateKey.generate()
    with _key_dir_lock(directory):
        where, path = _rotate_into(cfg.private_key_block, directory, key)
        trusted = tuple(sorted(_read_keyring_file(directory)["keys"]))
    return Rotation(key_id(key.public_key()), where, path, trusted, public_key_text(key.public_key()))


def _rotate_into(block_name: str | None, directory: Path, key: Ed25519PrivateKey) -> tuple[str, Path]:
    if block_name is not None:
        from prefect.blocks.system import Secret

        secret: Secret[str] = Secret(value=SecretStr(private_key_pem(key)))
        secret.save(block_name, overwrite=True, _sync=True)  # type: ignore[call-arg]
        return f"Prefect Secret block {block_name!r}", _trust(directory, key.public_key(), make_current=False)
    where = str(_store_private_key(directory, key))
    return where, _trust(directory, key.public_key(), make_current=True)
