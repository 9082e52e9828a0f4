"""`conveyor keys list|rotate`: a local dev key on first use, rotation in one command, no secret printed."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from conveyor.ops import cli


@pytest.fixture(autouse=True)
def _key_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in [k for k in os.environ if k.startswith("CONVEYOR_SIGNING__")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CONVEYOR_SIGNING__KEY_DIR", str(tmp_path / "signing"))
    return tmp_path / "signing"


def test_list_creates_the_local_dev_key_and_rotate_adds_a_new_current_one(
    _key_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["keys", "list"]) == 0
    first = re.search(r"signing key: ([0-9a-f]{16}) \(from (.*)\)", capsys.readouterr().out)
    assert first is not None and first.group(2) == str(_key_dir / "private" / f"{first.group(1)}.pem")
    assert cli.main(["keys", "rotate"]) == 0
    printed = capsys.readouterr().out
    new = re.search(r"new signing key ([0-9a-f]{16})", printed)
    assert new is not None and new.group(1) != first.group(1)
    assert f"trusts {', '.join(sorted([first.group(1), new.group(1)]))}" in printed
    assert "PRIVATE KEY" not in printed  # the public key is printed for scorers, the private one never
    keyring = json.loads((_key_dir / "keyring.json").read_text())
    assert keyring["current"] == new.group(1) and set(keyring["keys"]) == {first.group(1), new.group(1)}
    assert cli.main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert f"  {new.group(1)}  <- signs new versions" in listed and f"  {first.group(1)}\n" in listed


def test_prod_without_a_key_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVEYOR_PROFILE", "prod")
    assert cli.main(["keys", "list"]) == 2
    printed = capsys.readouterr().out
    assert "no signing key for profile 'prod': set CONVEYOR_SIGNING__PRIVATE_KEY" in printed
