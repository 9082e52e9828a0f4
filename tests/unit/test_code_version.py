"""`code_version` tells changed code apart from its commit, so `skip_if_unchanged` never skips a retraining of
code that differs from what trained the champion."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conveyor.adapters.registry_records import code_version


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("THRESHOLD = 0.5\n")
    _git(tmp_path, "add", "model.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_clean_checkout_is_its_commit(repo: Path) -> None:
    assert code_version(repo) == _git(repo, "rev-parse", "HEAD")


def test_uncommitted_change_never_matches_the_commit(repo: Path) -> None:
    clean = code_version(repo)
    (repo / "model.py").write_text("THRESHOLD = 0.7\n")
    changed = code_version(repo)
    assert changed is not None and changed != clean
    assert re.fullmatch(rf"{clean}-dirty-[0-9a-f]{{16}}", changed), changed
    (repo / "model.py").write_text("THRESHOLD = 0.9\n")
    assert code_version(repo) not in (clean, changed)  # another change, another version
    _git(repo, "add", "model.py")  # staged counts too
    assert code_version(repo) not in (clean, changed)
    _git(repo, "checkout", "HEAD", "--", "model.py")
    assert code_version(repo) == clean  # back to the commit: the same version again


def test_no_git_checkout_is_unknown(tmp_path: Path) -> None:
    assert code_version(tmp_path) is None
