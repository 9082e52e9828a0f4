"""Where the training flow's wall time goes, on the default dataset, vs a plain script in the same run.

    .venv/bin/python bench/training_profile.py                 # default dataset: generator.n_entities x days
    .venv/bin/python bench/training_profile.py --entities 3000 --days 60

A private stack (SeaweedFS S3 + Prefect server on free loopback ports, temp state dir) is started and stopped by
this script; the default dataset is landed first (not timed). Then, in one process:
  plain    read the raw window from S3 -> time split -> fit the same sklearn Pipeline -> test metrics. Nothing else:
           no validation, no feature store, no gates, no registry, no Prefect. Twice: with the libraries' default
           threads (every core) and with the flow's cap (training.max_threads).
  flow #1  flows.training.training with no champion (first model: promoted if the absolute gates pass)
  flow #2  the same from the window's second day (the same rows would be skipped as unchanged): now the gates
           also score the champion on the test set, and it registers v2
Per-step seconds come from the flow's own StepTimer (TrainingOutcome.timings); "prefect overhead" is the flow
run's wall time minus the sum of its steps (flow-run creation, task-run bookkeeping, artifacts, heartbeat).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from typing import Any

from harness import ROOT, private_stack


def plain(settings: Any, start: dt.date, end: dt.date, config: str, threads: int | None) -> dict[str, float]:
    """The floor: read -> split -> fit -> metrics, with the same Pipeline and split as the flow. `threads`: the
    OpenMP cap (None: the libraries' default, every core)."""
    from threadpoolctl import threadpool_limits

    from conveyor.adapters.object_store import ObjectStore
    from conveyor.adapters.raw_data import read_raw_window
    from conveyor.domain.gates import classification_metrics
    from conveyor.services.training import build_pipeline, time_split

    ds, cfg = settings.dataset, settings.training
    t0 = time.perf_counter()
    frame = read_raw_window(ObjectStore(settings.storage), settings, start, end)
    t1 = time.perf_counter()
    with threadpool_limits(limits=threads):
        split = time_split(frame, ds.timestamp_column, cfg.validation_fraction, cfg.test_fraction)
        model = build_pipeline(ds, cfg.models[config], cfg.seed)
        model.fit(split.train[ds.feature_names], split.train[ds.label_column])
        t2 = time.perf_counter()
        metrics = classification_metrics(
            split.test[ds.label_column], model.predict_proba(split.test[ds.feature_names])[:, 1]
        )
        t3 = time.perf_counter()
    return {
        "read_raw": t1 - t0,
        "fit": t2 - t1,
        "evaluation": t3 - t2,
        "total": t3 - t0,
        "rows": float(len(frame)),
        "roc_auc": metrics["roc_auc"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, help="customers (default generator.n_entities)")
    parser.add_argument("--days", type=int, help="days of data (default generator.days)")
    parser.add_argument("--model-config", default=None, help="training.models entry (default: the configured one)")
    args = parser.parse_args()

    if args.entities:
        os.environ["CONVEYOR_GENERATOR__N_ENTITIES"] = str(args.entities)
    with private_stack("conveyor-training-bench-"):
        from configs.settings import load_settings

        settings = load_settings()
        from conveyor.adapters.object_store import ObjectStore
        from conveyor.services.ingest import land_synthetic
        from flows.training import training

        days = args.days or settings.generator.days
        start = settings.generator.start_date
        end = start + dt.timedelta(days=days - 1)
        t = time.perf_counter()
        landed = land_synthetic(settings, ObjectStore(settings.storage), start, days, _scenario(), "bench")
        land_seconds = time.perf_counter() - t
        config = args.model_config or settings.training.model_config_name

        baseline = plain(settings, start, end, config, settings.training.max_threads)
        all_cores = plain(settings, start, end, config, None)
        runs = []
        # Flow #2 starts a day later: on the very same rows the flow would (rightly) skip retraining the champion.
        for label, first_day in (
            ("flow #1 (no champion)", start),
            ("flow #2 (vs champion)", start + dt.timedelta(days=1)),
        ):
            t = time.perf_counter()
            outcome = training(start_date=first_day, end_date=end, model_config_name=config)
            wall = time.perf_counter() - t
            steps = dict(outcome.timings)
            steps["prefect overhead"] = wall - sum(outcome.timings.values())
            runs.append(
                {
                    "label": label,
                    "wall": wall,
                    "steps": steps,
                    "promoted": outcome.promoted,
                    "version": outcome.version,
                    "roc_auc": outcome.test_metrics["roc_auc"],
                    "reasons": outcome.reasons,
                }
            )

    step_names = list(runs[0]["steps"])
    lines = [
        f"Training flow wall time: {landed.rows:,} raw rows ({days} days, "
        f"{settings.generator.n_entities:,} customers), model config `{config}`. {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}: compare ratios within this run, not seconds across runs.",
        "",
        f"| step | plain, all cores (s) | plain, {settings.training.max_threads} thread(s) (s) | "
        + " | ".join(f"{r['label']} (s)" for r in runs)
        + " |",
        "|---|---|---|" + "---|" * len(runs),
    ]
    plain_keys = {"read_raw": "read_raw", "fit": "fit", "evaluation_gates": "evaluation"}
    for name in step_names:
        cells = [f"{r['steps'][name]:.2f} ({100 * r['steps'][name] / r['wall']:.0f}%)" for r in runs]
        bases = [f"{b[plain_keys[name]]:.2f}" if name in plain_keys else "-" for b in (all_cores, baseline)]
        lines.append(f"| {name} | {' | '.join(bases)} | " + " | ".join(cells) + " |")
    lines.append(
        f"| **total** | **{all_cores['total']:.2f}** | **{baseline['total']:.2f}** | "
        + " | ".join(f"**{r['wall']:.2f}** ({r['wall'] / baseline['total']:.1f}x plain)" for r in runs)
        + " |"
    )
    lines += [
        "",
        "Ratios are vs the plain script with the same thread cap as the flow.",
        f"test ROC AUC: plain {baseline['roc_auc']:.4f} (all cores {all_cores['roc_auc']:.4f}); "
        + "; ".join(f"{r['label']} {r['roc_auc']:.4f} (v{r['version']}, promoted={r['promoted']})" for r in runs),
        f"(landing the data first took {land_seconds:.1f}s, not counted)",
    ]
    print("\n".join(lines))
    out = ROOT / "bench" / "results" / "training_profile.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "rows": landed.rows,
                "days": days,
                "entities": settings.generator.n_entities,
                "model_config": config,
                "plain": baseline,
                "plain_all_cores": all_cores,
                "max_threads": settings.training.max_threads,
                "runs": runs,
                "cpus": os.cpu_count(),
                "load_avg_1m": os.getloadavg()[0],
            },
            indent=2,
        )
    )
    return 0


def _scenario() -> Any:
    from conveyor.demo.synthetic import Scenario

    return Scenario()


if __name__ == "__main__":
    sys.exit(main())
