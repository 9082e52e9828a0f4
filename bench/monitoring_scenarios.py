"""False alarms and detection delay per drift scenario, on the generator's ground truth: a model trained on 30 days,
then daily judgements of the trailing 7-day window for `--days` days, the drift starting on day `--onset`.

    .venv/bin/python bench/monitoring_scenarios.py [--days 28] [--onset 7]

Detectors: univariate (a feature beyond its window-sized bound), prediction drift (the score), multivariate (PCA
reconstruction), estimated decay (CBPE, no labels) and realized decay (labels arrive `drift.label_delay_days`
later: its delay is that plus the days the labelled window needs to decay). Delay = days from the onset to the
first alarm (windows then hold 1/7 drifted days per day of delay); false alarms = alarms before the onset, and on
every day of the clean scenario. Writes bench/results/monitoring_scenarios.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import pandas as pd

from configs.settings import load_settings
from conveyor.demo.synthetic import ConceptDrift, CorrelationDrift, CovariateDrift, Scenario, generate_day
from conveyor.domain import drift
from conveyor.domain import performance_estimation as pe
from conveyor.domain.multivariate_drift import ReconstructionProfile
from conveyor.services.monitoring import PerformanceEstimator

TRAIN_START = dt.date(2026, 1, 1)
DETECTORS = ("univariate", "prediction", "multivariate", "estimated decay", "realized decay")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--onset", type=int, default=7)
    args = parser.parse_args()
    settings = load_settings()
    ds, cfg = settings.dataset, settings.drift
    first = TRAIN_START + dt.timedelta(days=37)  # the first judged day; training 30 days, test 7 days before it
    onset = first + dt.timedelta(days=args.onset)
    scenarios = {
        "clean": Scenario(),
        "covariate: days_since_last_login +1 std": Scenario(
            covariate_drift=[CovariateDrift(feature="days_since_last_login", start=onset, shift=1.0)]
        ),
        "covariate: monthly_charges +0.3 std": Scenario(
            covariate_drift=[CovariateDrift(feature="monthly_charges", start=onset, shift=0.3)]
        ),
        "correlation: total_charges shuffled": Scenario(
            correlation_drift=[CorrelationDrift(feature="total_charges", start=onset)]
        ),
        "covariate hurting performance: all two-year, new": Scenario(
            covariate_drift=[
                CovariateDrift(feature="contract_type", start=onset, shift=1.0),
                CovariateDrift(feature="tenure_months", start=onset, shift=-3.0),
            ]
        ),
        "concept drift (labels only)": Scenario(concept_drift=ConceptDrift(start=onset, strength=1.0)),
    }

    def days(start: dt.date, n: int, scenario: Scenario) -> pd.DataFrame:
        return pd.concat(
            [generate_day(start + dt.timedelta(days=i), ds, settings.generator, scenario) for i in range(n)],
            ignore_index=True,
        )

    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    train, test = days(TRAIN_START, 30, Scenario()), days(TRAIN_START + dt.timedelta(days=30), 7, Scenario())
    pre = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), ds.categorical_features)], remainder="passthrough"
    )
    model = Pipeline([("pre", pre), ("clf", HistGradientBoostingClassifier(max_iter=100, random_state=0))])
    model.fit(train[ds.feature_names], train[ds.label_column])
    reference = train.sample(min(len(train), settings.training.reference_sample_rows), random_state=0)
    reference = reference[ds.feature_names].assign(score=model.predict_proba(reference[ds.feature_names])[:, 1])
    labelled = test.assign(score=model.predict_proba(test[ds.feature_names])[:, 1])
    expected = pe.realized_metrics(labelled[ds.label_column], labelled["score"], 0.5)["roc_auc"]
    estimator = PerformanceEstimator.fit(labelled, settings, expected)
    pca = ReconstructionProfile.fit(reference, ds, cfg)

    rows = []
    for name, scenario in scenarios.items():
        stream = {first - dt.timedelta(days=6) + dt.timedelta(days=i): None for i in range(args.days + 6)}
        frames = {day: generate_day(day, ds, settings.generator, scenario) for day in stream}
        alarms: dict[str, list[int]] = {d: [] for d in DETECTORS}
        for k in range(args.days):
            day = first + dt.timedelta(days=k)
            window = pd.concat([frames[day - dt.timedelta(days=i)] for i in range(7)], ignore_index=True)
            scores = model.predict_proba(window[ds.feature_names])[:, 1]
            estimated = estimator.estimate(scores, settings)
            report = drift.compare(
                reference,
                window,
                ds,
                cfg,
                model_name="m",
                model_version="1",
                window_start=day,
                window_end=day,
                current_scores=pd.Series(scores),
                estimated=estimated,
                multivariate=pca.judge(window, cfg),
            )
            realized = pe.realized_metrics(window[ds.label_column], scores, 0.5)["roc_auc"]
            fired = {
                "univariate": bool(report.drifted_features),
                "prediction": bool(report.prediction and report.prediction.drifted),
                "multivariate": bool(report.multivariate and report.multivariate.drifted),
                "estimated decay": estimated.decayed,
                "realized decay": realized < expected - cfg.max_metric_drop,
            }
            for detector, yes in fired.items():
                if yes:
                    alarms[detector].append(k - args.onset)
        row = {"scenario": name}
        for detector in DETECTORS:
            before = [d for d in alarms[detector] if d < 0]
            after = [d for d in alarms[detector] if d >= 0]
            if name == "clean":
                row[detector] = f"{len(alarms[detector])}/{args.days} false"
                continue
            delay = "never" if not after else f"{min(after)} d"
            if detector == "realized decay" and after:
                delay = f"{min(after) + cfg.label_delay_days} d (labels +{cfg.label_delay_days})"
            row[detector] = delay + (f", {len(before)}/{args.onset} false" if before else "")
        rows.append(row)

    head = ["scenario", *DETECTORS]
    lines = [
        f"`.venv/bin/python bench/monitoring_scenarios.py --days {args.days} --onset {args.onset}`: daily judgements "
        f"of the trailing 7-day window (~2,300 rows), drift from day {args.onset}; delay in days from the onset "
        f"(test ROC AUC {expected:.3f}, drift.max_metric_drop {cfg.max_metric_drop}, false_alarm_rate "
        f"{cfg.false_alarm_rate})",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r[h] for h in head) + " |" for r in rows),
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results" / "monitoring_scenarios.md"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
