"""Great Expectations 1.x behind one small interface: run a suite on a DataFrame, build Data Docs.

Imported lazily (GX costs about 3 s to import): only when a batch failed and needs its report, or when
`validation.engine: gx` makes GX decide every batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from configs.settings import TELEMETRY_OFF_ENV
from conveyor.domain.expectations import ExpectationOutcome, rule_text

SITE_NAME = "local_site"


@dataclass
class GxRun:
    describe: dict[str, Any]  # GX's own `describe_dict()` of the suite validation result
    outcomes: list[ExpectationOutcome]
    docs_url: str | None


def _context(docs_dir: Path | None) -> Any:
    for key, value in TELEMETRY_OFF_ENV.items():
        os.environ.setdefault(key, value)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        context.update_data_docs_site(
            SITE_NAME,
            {
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            },
        )
    return context


def _outcome(result: dict[str, Any], sample_size: int) -> ExpectationOutcome:
    kind, kwargs = result["expectation_type"], dict(result.get("kwargs") or {})
    column = kwargs.get("column") or (",".join(kwargs["column_list"]) if kwargs.get("column_list") else None)
    details = result.get("result") or {}
    observed = details.get("observed_value")
    if result.get("exception_info", {}).get("raised_exception"):
        observed = f"error: {result['exception_info'].get('exception_message')}"
    count = details.get("unexpected_count")
    return ExpectationOutcome(
        expectation=kind,
        column=column,
        rule=rule_text(kind, kwargs),
        success=bool(result["success"]),
        unexpected_count=None if count is None else int(count),
        unexpected_percent=details.get("unexpected_percent"),
        element_count=details.get("element_count") if count is not None else None,
        observed=None if observed is None else str(observed),
        sample=list(details.get("partial_unexpected_list") or [])[:sample_size],
    )


def gx_validate(
    frame: pd.DataFrame,
    suite: dict[str, Any],
    parameters: dict[str, str],
    sample_size: int,
    docs_dir: Path | None = None,
    batch_name: str = "batch",
) -> GxRun:
    """Validate `frame` with the suite JSON through a Checkpoint; Data Docs go to `docs_dir` when given."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    context = _context(docs_dir)
    batch = (
        context.data_sources.add_or_update_pandas("conveyor")
        .add_dataframe_asset(batch_name)
        .add_batch_definition_whole_dataframe("whole")
    )
    body = {k: v for k, v in suite.items() if k in ("name", "expectations", "meta", "notes")}
    expectation_suite = context.suites.add(gx.ExpectationSuite(**body))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{expectation_suite.name}-{batch_name}", data=batch, suite=expectation_suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{expectation_suite.name}-checkpoint",
            validation_definitions=[definition],
            actions=[UpdateDataDocsAction(name="data-docs", site_names=[SITE_NAME])] if docs_dir is not None else [],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": max(sample_size, 1)},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame}, expectation_parameters=parameters)
    identifier, validation = next(iter(result.run_results.items()))
    docs_url = None
    if docs_dir is not None:
        urls = context.get_docs_sites_urls(resource_identifier=identifier, site_name=SITE_NAME)
        docs_url = urls[0]["site_url"] if urls else None
    describe = validation.describe_dict()
    outcomes = [_outcome(r, sample_size) for r in describe["expectations"]]
    return GxRun(describe, outcomes, docs_url)
