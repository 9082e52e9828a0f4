"""The layers at run time, in a fresh interpreter: what a module pulls in when it is imported. `lint-imports`
checks the import graph statically; this checks what actually loads (plugins, lazy imports included)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def loaded_after_import(module: str, watched: tuple[str, ...]) -> set[str]:
    code = f"import sys, {module}\nprint(' '.join(m for m in {watched!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize(
    "module",
    [
        "conveyor.domain.expectations",
        "conveyor.domain.gates",
        "conveyor.domain.drift",
        "conveyor.domain.failures",
        "conveyor.demo.synthetic",
    ],
)
def test_domain_modules_load_no_external_system(module: str) -> None:
    assert loaded_after_import(module, ("prefect", "boto3", "feast", "great_expectations")) == set()


def test_the_online_store_class_feast_loads_does_not_import_prefect() -> None:
    """feature_store.yaml names this class, so Feast imports it in every process that opens the store (the feast
    CLI included): it must stay free of the orchestrator."""
    assert loaded_after_import("conveyor.adapters.feast_online_store", ("prefect", "feast")) == {"feast"}


def test_the_cli_imports_neither_prefect_nor_feast_before_a_command_runs() -> None:
    """Prefect reads PREFECT_API_URL once, when first imported: `conveyor run` sets it to the stack's server and
    then imports the flows. A CLI module importing Prefect at start made every run use a temporary server."""
    assert loaded_after_import("conveyor.ops.cli", ("prefect", "feast", "great_expectations")) == set()
