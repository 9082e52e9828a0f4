"""The reference profile a version's monitoring needs, computed once at registration and stored with the version
(`monitoring_profile.npz`): the fitted PCA with its hold-out errors, and the performance metrics' standard errors
at the labelled reference's size. npz without pickles: loading it runs no code.

The profile records the settings it was built with; a monitor whose `drift` settings differ refits instead.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from configs.settings import DriftConfig
from conveyor.domain.multivariate_drift import ReconstructionProfile

PROFILE_FILE = "monitoring_profile.npz"
_ARRAYS = ("means", "stds", "center", "components", "holdout_errors")


def built_with(config: DriftConfig) -> dict[str, Any]:
    """The settings a stored profile depends on."""
    return {"pca_variance": config.pca_variance, "seed": config.seed, "replicates": config.bootstrap_replicates}


def profile_to_bytes(pca: ReconstructionProfile, errors: dict[str, float], config: DriftConfig) -> bytes:
    meta = {"numeric": pca.numeric, "categories": pca.categories, "errors": errors, "built_with": built_with(config)}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.array(json.dumps(meta)), **{name: getattr(pca, name) for name in _ARRAYS})
    return buffer.getvalue()


def profile_from_bytes(data: bytes, config: DriftConfig) -> tuple[ReconstructionProfile, dict[str, float]] | None:
    """The stored profile, or None when it was built with other settings than `config`."""
    with np.load(io.BytesIO(data), allow_pickle=False) as stored:
        meta = json.loads(str(stored["meta"]))
        if meta["built_with"] != built_with(config):
            return None
        arrays = {name: stored[name] for name in _ARRAYS}
    pca = ReconstructionProfile(numeric=meta["numeric"], categories=meta["categories"], **arrays)
    return pca, {k: float(v) for k, v in meta["errors"].items()}
