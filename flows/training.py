"""Train a model behind evaluation gates: raw window -> validate -> point-in-time features -> split -> fit ->
evaluate -> gates -> register -> promote (only if every gate passed and `promote` is true)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from prefect import flow
from pydantic import Field

from configs.settings import load_settings
from conveyor.adapters import prefect_fixes  # noqa: F401  (installs the engine fix before any run)
from conveyor.adapters.notify import notify_on_failure
from conveyor.adapters.prefect_runtime import current_run_id
from conveyor.services.training import StepTimer, TrainingOutcome, entity_rows, resolve_window
from tasks.features import apply_feature_definitions, build_training_set_task
from tasks.training import (
    build_model_card,
    finish,
    promote_candidate,
    read_training_window,
    register_candidate,
    run_gates,
    skip_if_unchanged,
    train_candidate,
)
from tasks.validation import validate_or_quarantine


@flow(
    name="training",
    description="Validate, build features, train, gate, register and promote a model.",
    on_failure=[notify_on_failure],
    on_crashed=[notify_on_failure],
)
def training(
    start_date: Annotated[
        dt.date | None,
        Field(description="first day of the training window; default: end_date - training.window_days + 1"),
    ] = None,
    end_date: Annotated[dt.date | None, Field(description="last day (inclusive); default: latest raw day")] = None,
    model_config_name: Annotated[
        str | None,
        Field(description="entry of training.models in configs/base.yaml; default training.model_config_name"),
    ] = None,
    promote: Annotated[bool, Field(description="make it the champion if every gate passes")] = True,
    model_name: Annotated[str | None, Field(description="registry name; default training.model_name")] = None,
) -> TrainingOutcome:
    """Train a challenger on a window of raw data and promote it only if it passes every evaluation gate.

    Args:
        start_date: First day of the training window (default: end_date - training.window_days + 1).
        end_date: Last day of the training window, inclusive (default: the latest published raw day).
        model_config_name: Entry of `training.models` in configs/base.yaml (default: training.model_config_name).
        promote: Make the model the champion if every gate passes (false: register only).
        model_name: Registry model name (default: training.model_name).
    """
    settings, run_id, timer = load_settings(), current_run_id(), StepTimer()
    name, config = model_name or settings.training.model_name, model_config_name or settings.training.model_config_name
    start, end = resolve_window(settings, start_date, end_date)
    with timer.step("read_raw"):
        raw = read_training_window(settings, start, end)
    with timer.step("validation"):
        batch = f"{name}/training/{start}..{end}"
        validated = validate_or_quarantine(raw.frame, "raw", settings, batch, run_id, as_of=end)
    with timer.step("feature_retrieval"):  # the features come from the same table version as the rows
        apply_feature_definitions(settings)
        training_set = build_training_set_task(settings, entity_rows(validated.frame, settings), None, raw.version)
    if (unchanged := skip_if_unchanged(training_set, settings, name, config)) is not None:
        return unchanged
    with timer.step("fit"):
        candidate = train_candidate(training_set, settings, config)
    with timer.step("evaluation_gates"):
        decision = run_gates(candidate, settings, name)
    with timer.step("model_card"):
        service = settings.features.feature_service
        card = build_model_card(candidate, decision, settings, name, start, end, service, raw, run_id)
    with timer.step("registry"):
        version = register_candidate(candidate, decision, settings, name, start, end, service, raw, card)
        promotion = (
            promote_candidate(version, decision, settings, f"training run {run_id}")
            if (decision.passed and promote)
            else None
        )
    return finish(settings, version, decision, promotion, timer.seconds)
