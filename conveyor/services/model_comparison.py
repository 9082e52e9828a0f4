"""Two versions side by side: their data, configs and metrics (`conveyor models compare A B`, and the champion
comparison of every model card)."""

from __future__ import annotations

from typing import Any

from conveyor.adapters.registry_records import ModelMetadata
from conveyor.domain.task_types import METRICS, ModelTask


def _metrics_of(a: ModelMetadata, b: ModelMetadata) -> list[str]:
    """The task metrics either version recorded on its test set, in task_types.METRICS order (binary: ROC AUC,
    PR AUC, Brier, log loss)."""
    recorded = set(a.metrics.get("test", {})) | set(b.metrics.get("test", {}))
    return [name for name in METRICS if name in recorded]


def _task(meta: ModelMetadata) -> str:
    task = ModelTask.from_json(meta.task)
    return task.kind + (f" ({', '.join(task.classes)})" if task.kind == "multiclass" else "")


def _test_interval(meta: ModelMetadata, metric: str) -> dict[str, Any] | None:
    for result in meta.gates.get("results", []):
        if result.get("name") == "absolute_minimums":
            found = result.get("intervals", {}).get(metric)
            return dict(found) if found else None
    return None


def _metric(meta: ModelMetadata, metric: str) -> str:
    value = meta.metrics.get("test", {}).get(metric)
    if value is None:
        return "-"
    interval = _test_interval(meta, metric)
    return f"{value:.4f}" + ("" if interval is None else f" [{interval['low']:.4f}, {interval['high']:.4f}]")


def side_by_side(a: ModelMetadata, b: ModelMetadata) -> list[tuple[str, str, str]]:
    """(what, a's value, b's value) for the data, the features, the training config and the test metrics."""

    def window(m: ModelMetadata) -> str:
        return f"{m.training_window.get('start')} .. {m.training_window.get('end')}"

    def rows(m: ModelMetadata) -> str:
        w = m.training_window
        return f"{w.get('train_rows', '?')} / {w.get('validation_rows', '?')} / {w.get('test_rows', '?')}"

    out: list[tuple[str, str, str]] = [
        ("task", _task(a), _task(b)),
        ("data window", window(a), window(b)),
        ("test rows from", str(a.training_window.get("test_start")), str(b.training_window.get("test_start"))),
        ("rows train / validation / test", rows(a), rows(b)),
        ("data fingerprint", a.data_fingerprint[:16], b.data_fingerprint[:16]),
        ("data", f"{a.data_uri} @ {a.data_version}", f"{b.data_uri} @ {b.data_version}"),
        ("feature service", str(a.feature_service), str(b.feature_service)),
        ("features", str(len(a.feature_names)), str(len(b.feature_names))),
    ]
    only_a, only_b = (
        sorted(set(a.feature_names) - set(b.feature_names)),
        sorted(set(b.feature_names) - set(a.feature_names)),
    )
    if only_a or only_b:
        out.append(("features only here", ", ".join(only_a) or "-", ", ".join(only_b) or "-"))
    out.append(("model config", a.model_config_name or "-", b.model_config_name or "-"))
    for key in sorted(set(a.params) | set(b.params)):
        out.append((f"param {key}", str(a.params.get(key, "-")), str(b.params.get(key, "-"))))
    for metric in _metrics_of(a, b):
        out.append((f"test {metric} [CI]", _metric(a, metric), _metric(b, metric)))
    out.append(("gates passed", str(a.gates.get("passed")), str(b.gates.get("passed"))))
    out.append(("verdict vs its champion", str(a.gates.get("verdict")), str(b.gates.get("verdict"))))
    out.append(("compared with champion", str(a.gates.get("champion_version")), str(b.gates.get("champion_version"))))
    out.append(("code version", str(getattr(a, "code_version", "-")), str(getattr(b, "code_version", "-"))))
    return out


def comparison_text(a: ModelMetadata, b: ModelMetadata, label_a: str, label_b: str) -> str:
    """The side-by-side table as aligned text; a `*` marks the rows where the two differ."""
    table = [("", label_a, label_b), *side_by_side(a, b)]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = []
    for what, left, right in table:
        mark = "*" if what and left != right else " "
        lines.append(f"{mark} {what:<{widths[0]}}  {left:<{widths[1]}}  {right}")
    return "\n".join(lines)
