"""The prediction log's rows (written by conveyor/serving/prediction_log.py, read by the drift monitor's
online source, conveyor/services/online_traffic.py)."""

from __future__ import annotations

# One row per answered (or shadow-scored) row of a request.
LOG_COLUMNS = (
    "request_id",
    "logged_at",
    "model",
    "model_version",
    "arm",
    "returned",  # False: a shadow answer, never sent to the caller
    "entity_id",
    "input_hash",
    "status",
    "score",  # binary
    "decision",  # binary
    "latency_ms",
    "task",  # the answering version's task kind
    "predicted_class",  # multiclass
    "probabilities",  # multiclass: JSON {class: probability} (one text column whatever the classes)
    "prediction",  # regression
)
# Then one column per model feature, `input_<feature>`: the values the answer was computed from (read from the
# online store, or given in the request), so the drift monitor can judge online traffic (`drift-monitor
# --source online`). Empty for shadow rows (the same inputs as the returned row of their request).
INPUT_PREFIX = "input_"
