"""Child process for the registry race test: imports only what a promotion needs (spawn re-imports this module)."""

from __future__ import annotations

from typing import Any


def promote_in_process(storage_json: str, model: str, version: int, base: int, barrier: Any, results: Any) -> None:
    """Runs in a separate interpreter: its own settings, S3 client and connection pool."""
    from configs.settings import StorageConfig, load_settings
    from conveyor.adapters.object_store import ObjectStore
    from conveyor.adapters.registry import ModelRegistry, PromotionConflict

    registry = ModelRegistry(ObjectStore(StorageConfig.model_validate_json(storage_json)), load_settings())
    registry.champion_version(model)  # warm up (connection) before the start line
    barrier.wait()
    try:
        registry.promote(model, version, actor=f"process-{version}", reason="race", expected_champion=base)
        results.put((version, "won"))
    except PromotionConflict:
        results.put((version, "lost"))
