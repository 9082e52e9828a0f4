"""Monitoring at scale - univariate drift with window-sized bounds, CBPE estimation, PCA multivariate drift - vs
batch scoring (`predict_proba`) on the same rows, measured side by side in one run.

    .venv/bin/python bench/monitoring.py [--rows 1000000] [--repeat 3] [--note "..."]

Current window: `--rows` rows x 10 features (8 numeric, 2 categorical) of the synthetic churn data with one
feature shifted. Reference: what a registered version holds - `training.reference_sample_rows` training rows
(+ score) and as many labelled held-out rows (the monitoring reference). The reference profile (PCA fit and
hold-out errors, isotonic calibration, standard errors at the reference's size) is built once per version,
timed on its own row, not per window. Prints a markdown table and writes bench/results/monitoring.{md,json},
with the load average: the machine is shared, compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import pandas as pd
from harness import best_of, drift_bench_model

from configs.settings import load_settings
from conveyor.demo.synthetic import CovariateDrift, Scenario, generate_day
from conveyor.domain import drift
from conveyor.domain.multivariate_drift import ReconstructionProfile
from conveyor.services.monitoring import PerformanceEstimator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    settings = load_settings()
    features = settings.dataset.feature_names[:10]
    dataset = settings.dataset.model_copy(update={"features": settings.dataset.features[:10]})
    label = settings.dataset.label_column
    reference_rows = settings.training.reference_sample_rows
    made = time.perf_counter()
    training = generate_day(
        dt.date(2026, 1, 15), settings.dataset, settings.generator, snapshot=True, n_entities=100_000
    )
    held_out = generate_day(
        dt.date(2026, 1, 20), settings.dataset, settings.generator, snapshot=True, n_entities=reference_rows
    )
    shifted = Scenario(covariate_drift=[CovariateDrift(feature="monthly_charges", start=dt.date(2026, 3, 1))])
    current = generate_day(
        dt.date(2026, 3, 15), settings.dataset, settings.generator, shifted, snapshot=True, n_entities=args.rows
    )
    made = time.perf_counter() - made

    categorical = [f for f in features if f in settings.dataset.categorical_features]
    model = drift_bench_model(training, features, categorical, label)
    reference = training.sample(reference_rows, random_state=0)[features].copy()
    reference["score"] = model.predict_proba(reference)[:, 1]
    labelled = held_out[[*features, label]].assign(score=model.predict_proba(held_out[features])[:, 1])

    config = settings.drift
    window = dict(
        model_name="churn", model_version="bench", window_start=dt.date(2026, 3, 15), window_end=dt.date(2026, 3, 15)
    )
    results: dict[str, float] = {}
    kept: dict[str, Any] = {}

    def score() -> None:
        kept["scores"] = model.predict_proba(current[features])[:, 1]

    results["predict_proba (batch scoring work)"] = best_of(args.repeat, score)
    scores = kept["scores"]
    current_scores = pd.Series(scores)

    def profile() -> None:
        kept["pca"] = ReconstructionProfile.fit(reference, dataset, config)
        kept["estimator"] = PerformanceEstimator.fit(labelled, settings, 0.8)

    results["reference profile (once per version: PCA, calibration, SEs)"] = best_of(1, profile)

    def univariate() -> None:
        kept["report"] = drift.compare(reference, current, dataset, config, current_scores=current_scores, **window)

    def estimation() -> None:
        kept["estimated"] = kept["estimator"].estimate(scores, settings)

    def multivariate() -> None:
        kept["multivariate"] = kept["pca"].judge(current, config)

    per_window = {
        "univariate: 10 features + score, window-sized bounds, JS, Wasserstein": univariate,
        "estimated performance (CBPE)": estimation,
        "multivariate (PCA reconstruction)": multivariate,
    }
    for name, fn in per_window.items():
        results[name] = best_of(args.repeat, fn)
    monitoring = sum(results[name] for name in per_window)
    results["all monitoring per window"] = monitoring

    base = results["predict_proba (batch scoring work)"]
    report, estimated, multi = kept["report"], kept["estimated"], kept["multivariate"]
    load_at_end = os.getloadavg()[0]
    lines = [
        f"`.venv/bin/python bench/monitoring.py --rows {args.rows}`; {args.rows:,} rows x {len(features)} features "
        f"(+ score), reference {reference_rows:,} rows, best of {args.repeat}; load average {load_at_start:.1f} at "
        f"start, {load_at_end:.1f} at end on {os.cpu_count()} CPUs (shared machine: read the ratios)"
        + (f"; {args.note}" if args.note else ""),
        "",
        "| step | seconds | ratio vs predict_proba |",
        "|---|---:|---:|",
        *(f"| {name} | {seconds:.3f} | {seconds / base:.2f} |" for name, seconds in results.items()),
        "",
        f"target: all monitoring per window <= 0.5x predict_proba: {'met' if monitoring <= 0.5 * base else 'NOT met'} "
        f"({monitoring / base:.2f}x). Data generation {made:.1f}s, not timed.",
        f"verdict: {report.verdict}; drifted: {report.drifted_features}; estimated ROC AUC {estimated.roc_auc:.3f} "
        f"+/- {estimated.roc_auc_se:.4f}; multivariate {multi.reconstruction_error:.3f} "
        f"(band {multi.lower:.3f}..{multi.upper:.3f}, drifted {multi.drifted})",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "monitoring.md").write_text(text + "\n")
    (out / "monitoring.json").write_text(
        json.dumps(
            {
                "rows": args.rows,
                "features": len(features),
                "reference_rows": reference_rows,
                "repeat": args.repeat,
                "seconds": results,
                "ratio_vs_predict": {k: v / base for k, v in results.items()},
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "measured_at": dt.datetime.now(dt.UTC).isoformat(),
                "load_avg_1m": [load_at_start, load_at_end],
                "note": args.note,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
