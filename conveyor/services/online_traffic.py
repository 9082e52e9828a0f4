"""The online service's traffic of one day, as the drift monitor judges it (`drift-monitor` with `source:
online`): the prediction log's published partitions (`<serving.log_prefix>/<model>/dt=<day>/hour=*/batch=*/`,
each trusted through its manifest), the rows the champion answered and returned, their inputs (the feature
values the answer was computed from) and their outputs in the task's prediction columns, the same shape as a
batch-scored day's."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pyarrow as pa

from configs.settings import Settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.publication import published_prefixes, read_published_parquet
from conveyor.adapters.registry import ModelVersion
from conveyor.domain.failures import MissingInput
from conveyor.domain.prediction_log_schema import INPUT_PREFIX
from conveyor.domain.task_outputs import prediction_columns
from conveyor.domain.task_types import PROBA_PREFIX, ModelTask

ANSWERED = ("scored", "defaulted")


def log_root(settings: Settings, model_name: str) -> str:
    return f"{settings.serving.log_prefix.rstrip('/')}/{model_name}/"


def latest_logged_day(store: ObjectStore, settings: Settings, model_name: str) -> dt.date:
    root = log_root(settings, model_name)
    days = {p.split("dt=", 1)[1].split("/", 1)[0] for p in published_prefixes(store, root) if "dt=" in p}
    if not days:
        raise MissingInput(
            f"drift monitor (online): no prediction log for model {model_name!r} under {store.uri(root)}"
        )
    return dt.date.fromisoformat(max(days))


def read_prediction_log(store: ObjectStore, prefix: str) -> pd.DataFrame:
    """Every published log partition under `prefix`, in one frame. Joined as arrow tables: a column that is all
    null in one batch (a shadow row's inputs, a regression model's classes) takes its type from the others, and
    ints meet floats as floats (a batch with a refused row has a null version): pandas' concat would guess."""
    tables = [_typed_by_values(read_published_parquet(store, p)) for p in published_prefixes(store, prefix)]
    if not tables:
        return pd.DataFrame()
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def _typed_by_values(frame: pd.DataFrame) -> pa.Table:
    """A column with no value at all gets arrow's null type, which takes the other batches' type when joined
    (pandas would have made it float, or text, from nothing)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, column in enumerate(table.columns):
        if len(column) and column.null_count == len(column):
            table = table.set_column(i, table.field(i).name, pa.nulls(len(column)))
    return table


def online_traffic(
    store: ObjectStore, settings: Settings, champion: ModelVersion, day: dt.date
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(inputs, outputs) of the rows `champion` answered and returned on `day` (UTC), in the log's order: inputs
    with the dataset's feature columns, outputs with the task's prediction columns. Shadow answers, other
    versions' answers (a canary's challenger, a champion before a swap) and refused rows are left out."""
    prefix = f"{log_root(settings, champion.model_name)}dt={day.isoformat()}/"
    log = read_prediction_log(store, prefix)
    if log.empty:
        raise MissingInput(
            f"drift monitor (online): no prediction log for {champion.label} on {day} under {store.uri(prefix)}"
        )
    answered = log[
        log["returned"].astype(bool)
        & (pd.to_numeric(log["model_version"]) == champion.version)
        & log["status"].isin(ANSWERED)
    ].reset_index(drop=True)
    if answered.empty:
        raise MissingInput(
            f"drift monitor (online): the prediction log of {day} holds no answer returned by {champion.label} "
            f"({len(log)} logged rows)"
        )
    features = settings.dataset.feature_names
    missing = [f for f in features if INPUT_PREFIX + f not in answered.columns]
    if missing:
        raise MissingInput(
            f"drift monitor (online): the prediction log of {day} has no inputs for {missing} (logged by a service "
            "from before inputs were logged?)"
        )
    inputs = answered[[INPUT_PREFIX + f for f in features]].set_axis(features, axis=1)
    return inputs, _outputs(answered, champion.model_task)


def _outputs(answered: pd.DataFrame, task: ModelTask) -> pd.DataFrame:
    if task.kind != "multiclass":
        return answered[prediction_columns(task)].astype("float64")
    # The log keeps one text column of {class: probability} whatever the classes; the monitor wants one each.
    probabilities = pd.DataFrame([json.loads(p) for p in answered["probabilities"]])
    columns = {PROBA_PREFIX + c: probabilities[c].astype("float64") for c in task.classes}
    return pd.DataFrame({**columns, "predicted_class": answered["predicted_class"].astype(str)})
