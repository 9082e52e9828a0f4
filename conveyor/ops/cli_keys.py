"""`conveyor keys list|rotate|verify`: the registry's signing keys (conveyor/adapters/signing.py) for people."""

from __future__ import annotations

import argparse
import json

from configs.settings import Settings, load_settings
from conveyor.adapters.object_store import ObjectStore, ObjectStoreError
from conveyor.adapters.registry import ModelRegistry, RegistryError
from conveyor.adapters.signing import SignatureRefused, SigningKeyMissing, rotate, signer, trusted_keyring
from conveyor.ops.output import out as _out


def add_keys_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = sub.add_parser("keys", help="registry signing keys: list the trusted keys, rotate, verify versions")
    keys.add_argument(
        "action",
        choices=list(_ACTIONS),
        help="list: trusted public keys and the signing key; rotate: a new key pair (old keys stay trusted); "
        "verify: check the signature of every version of a model; adopt: sign the versions registered before "
        "signing existed (after checking their artifacts' checksums: you vouch for the bucket as it is)",
    )
    keys.add_argument("--model", help="verify: registry model name; default training.model_name")
    keys.set_defaults(func=cmd_keys)


def _list(settings: Settings, args: argparse.Namespace) -> None:
    keyring = trusted_keyring(settings)
    current = signer(settings)
    _out(f"signing key: {current.key_id} (from {current.source})")
    _out(f"trusted public keys ({', '.join(keyring.sources) or 'none'}):")
    for kid in sorted(keyring.keys):
        _out(f"  {kid}{'  <- signs new versions' if kid == current.key_id else ''}")


def _rotate(settings: Settings, args: argparse.Namespace) -> None:
    rotation = rotate(settings)
    _out(f"new signing key {rotation.key_id}: private key at {rotation.private_key_at}")
    _out(
        f"keyring {rotation.keyring_path}: trusts {', '.join(rotation.trusted)} (versions signed before stay loadable)"
    )
    _out(
        "scorers without this key dir trust it with "
        f"CONVEYOR_SIGNING__TRUSTED_PUBLIC_KEYS='{json.dumps({rotation.key_id: rotation.public_key})}' "
        "(plus the older keys they already trust)"
    )


def _verify(settings: Settings, args: argparse.Namespace) -> None:
    registry = ModelRegistry(ObjectStore(settings.storage), settings)
    name = args.model or settings.training.model_name
    refused = 0
    for listed in registry.list_versions(name):
        try:
            registry.get_version(name, listed.version)
            _out(f"v{listed.version:<4d} signature ok")
        except RegistryError as exc:
            refused += 1
            _out(f"v{listed.version:<4d} REFUSED: {exc}")
    if refused:
        raise RegistryError(f"{name}: {refused} version(s) would be refused by every load")


def _adopt(settings: Settings, args: argparse.Namespace) -> None:
    registry = ModelRegistry(ObjectStore(settings.storage), settings)
    name = args.model or settings.training.model_name
    adopted = registry.sign_unsigned(name)
    _out(
        f"{name}: signed {', '.join(f'v{v}' for v in adopted)} (registered before signing; artifacts matched "
        "their recorded checksums)"
        if adopted
        else f"{name}: no unsigned versions"
    )


_ACTIONS = {"list": _list, "rotate": _rotate, "verify": _verify, "adopt": _adopt}


def cmd_keys(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        _ACTIONS[args.action](settings, args)
    except (RegistryError, SignatureRefused, SigningKeyMissing, ObjectStoreError) as exc:
        _out(f"error: {exc}")
        return 2
    return 0
