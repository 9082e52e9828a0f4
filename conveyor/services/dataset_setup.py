"""`conveyor dataset init | check`: a starting dataset.yaml (and its suites) from a sample of the user's files,
and the config checked against the data with every problem listed at once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.source_files import SourceFileError, column_names, list_sources, local_copy, read_batches
from conveyor.domain import dataset_profile as profiling
from conveyor.domain.source_types import conform

_BINARY_LABELS = ({"0", "1"}, {"0.0", "1.0"}, {"false", "true"})


@dataclass
class Sample:
    frame: pd.DataFrame
    files: list[str]
    problems: list[str] = field(default_factory=list)  # files that could not be read, each named


def sample_rows(path: str, store: ObjectStore | None, max_rows: int, columns: list[str] | None = None) -> Sample:
    """Up to `max_rows` rows spread over the source's files (the first rows of each), as text from CSV and as
    stored from parquet. A file that cannot be read is named in `problems`, not raised."""
    sources = list_sources(path, store)
    per_file = max(1, max_rows // len(sources))
    parts, problems = [], []
    for source in sources:
        try:
            with local_copy(source, store) as local:
                wanted = columns or column_names(local, source)
                taken = 0
                for _, batch in read_batches(local, source, wanted, min(per_file, 100_000)):
                    parts.append(batch.to_pandas().head(per_file - taken))
                    taken += len(parts[-1])
                    if taken >= per_file:
                        break
        except SourceFileError as exc:
            problems.append(str(exc))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return Sample(frame, [s.name for s in sources], problems)


def _label_task(roles: profiling.Roles, label: profiling.ColumnProfile) -> dict[str, Any]:
    """The dataset.yaml keys the label's values imply: nothing for a 0/1 binary label (the default task),
    `task: multiclass` (classes learned from the training rows) or `task: regression`. Two named classes are
    refused: which one is positive is the user's call (0/1, or `positive_class` in dataset.yaml)."""
    if roles.task == "binary":
        if {v.lower() for v in label.values} not in _BINARY_LABELS:
            raise profiling.ProfileError(
                f"label {label.name!r} has the values {label.values}: store it as 0/1 (1 = the positive class), or "
                "set positive_class (the class that is 1) in the drafted dataset.yaml"
            )
        return {}
    return {"task": roles.task}


@dataclass(frozen=True)
class DraftedDataset:
    dataset: dict[str, Any]
    skipped: list[str]
    roles: profiling.Roles
    rows: int
    files: int


def draft_from_files(
    path: str,
    store: ObjectStore | None,
    name: str,
    max_rows: int = 100_000,
    margin: float = 0.1,
    roles: dict[str, str | None] | None = None,
) -> DraftedDataset:
    """Profile a sample of the files at `path` and draft their dataset.yaml (see conveyor/domain/dataset_profile)."""
    sample = sample_rows(path, store, max_rows)
    if sample.problems:
        raise profiling.ProfileError("unreadable source file(s):\n" + "\n".join(f"  {p}" for p in sample.problems))
    profiles = profiling.profile(sample.frame)
    found = profiling.guess_roles(profiles, **(roles or {}))
    task = _label_task(found, next(p for p in profiles if p.name == found.label))
    dataset, skipped = profiling.draft_dataset(profiles, found, name, path, margin)
    position = list(dataset).index("label_column") + 1  # `task:` right after the label it describes
    dataset = dict([*list(dataset.items())[:position], *task.items(), *list(dataset.items())[position:]])
    return DraftedDataset(dataset, skipped, found, len(sample.frame), len(sample.files))


def write_dataset_yaml(drafted: DraftedDataset, target: Path, command: str) -> None:
    header = (
        f"# Drafted by `{command}` on {dt.date.today()} from {drafted.rows:,} rows of {drafted.files} file(s).\n"
        "# Review it: ranges are the observed ones widened by a margin, categories the ones seen. Then\n"
        "# `conveyor validation init-suites --force` (done for you by `dataset init`) and `conveyor dataset check`.\n"
    )
    target.write_text(header + yaml.safe_dump(drafted.dataset, sort_keys=False, width=110))


def check_against_data(settings: Settings, store: ObjectStore | None, max_rows: int = 100_000) -> list[str]:
    """Every problem between dataset.yaml (and its raw suite) and a sample of the source files, at once."""
    from conveyor.services.validation import validate_frame  # GX's import cost only for this command

    ds = settings.dataset
    if ds.source.kind != "files" or not ds.source.path:
        return ["dataset.source: kind is not 'files' with a path: nothing to check against (the synthetic data)"]
    declared = [*ds.entity_columns, ds.timestamp_column, ds.label_column, *ds.feature_names]
    sample = sample_rows(ds.source.path, store, max_rows, declared)
    problems = list(sample.problems)
    if sample.frame.empty:
        return problems or [f"dataset.source.path {ds.source.path!r}: no rows read"]
    frame = conform(sample.frame, ds)
    newest = frame[ds.timestamp_column].max()
    as_of = newest.to_pydatetime() if pd.notna(newest) else None  # freshness judged as of the newest row
    result = validate_frame(frame, "raw", settings, as_of=as_of, batch_key="dataset check")
    problems += [f"{o.describe()}" for o in result.failed]
    return problems
