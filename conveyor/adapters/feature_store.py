"""The feature-store adapter's public face: the only names the rest of Conveyor imports for Feast.

Features are declared once in `feature_repo/` and served from here to training (point-in-time joins through the
offline store, which reads the raw Delta table on S3) and to scoring (the online store), so both read the same
definitions. The work is split by concern:
    feast_repo.py         config (`${VAR}`s in feature_store.yaml), declarations, apply
    feast_offline.py      training sets (point in time), optionally pinned to a raw table version
    feast_materialize.py  materialization and online reads/writes
    feast_skew.py         training/serving skew check
    duckdb_s3.py          the duckdb connection the offline store reads S3 through
"""

from __future__ import annotations

from conveyor.adapters.feast_materialize import (
    ONE_US,
    MaterializationResult,
    compare_converters,
    materialize_incremental,
    materialize_window,
    materialized_until,
    online_features,
    write_online_rows,
)
from conveyor.adapters.feast_offline import FEAST_TS, ROW_ID, build_training_set, feast_training_set, offline_frame
from conveyor.adapters.feast_repo import (
    AppliedDefinitions,
    FeatureStoreError,
    apply_definitions,
    default_view,
    definitions,
    feast_env,
    feature_store,
    raw_table,
    repo_config,
    service_name,
    state_dir,
    utc,
    without_password,
)
from conveyor.adapters.feast_skew import SkewReport, check_skew

__all__ = [
    "FEAST_TS",
    "ONE_US",
    "ROW_ID",
    "AppliedDefinitions",
    "FeatureStoreError",
    "MaterializationResult",
    "SkewReport",
    "apply_definitions",
    "build_training_set",
    "check_skew",
    "compare_converters",
    "default_view",
    "definitions",
    "feast_env",
    "feast_training_set",
    "feature_store",
    "materialize_incremental",
    "materialize_window",
    "materialized_until",
    "offline_frame",
    "online_features",
    "raw_table",
    "repo_config",
    "service_name",
    "state_dir",
    "utc",
    "without_password",
    "write_online_rows",
]
