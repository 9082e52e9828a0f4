"""`conveyor`: the command line for people. `conveyor --help` lists the commands."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import re
import sys
import time

from configs.settings import TELEMETRY_OFF_ENV, ConfigError, load_settings
from conveyor.adapters.raw_data import raw_table
from conveyor.ops.cli_data import add_data_parser
from conveyor.ops.cli_dataset import add_dataset_parser
from conveyor.ops.cli_flow import add_flow_parser
from conveyor.ops.cli_keys import add_keys_parser
from conveyor.ops.cli_models import add_models_parser
from conveyor.ops.cli_rollout import add_rollout_parser
from conveyor.ops.cli_serve import add_serve_parser
from conveyor.ops.local_stack import API, SERVICES, WITH_WORKER, LocalStack, StackError
from conveyor.ops.output import out as _out
from conveyor.ops.prefect_server import deploy_all, install_zombie_automation, prefect_client_env, use_prefect_server


def cmd_stack(args: argparse.Namespace) -> int:
    settings = load_settings()
    stack = LocalStack(settings)
    if args.action == "up":
        timings = stack.up((*(WITH_WORKER if args.worker else SERVICES), *((API,) if args.api else ())))
        for name, seconds in timings.items():
            _out(f"{name:8s} ready in {seconds:5.1f}s")
        # Without it a run whose process died stays "Running" forever, deployed or not.
        _out(install_zombie_automation(settings, stack.client_env()))
    elif args.action == "down":
        stopped = stack.down()
        _out("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    for state in stack.status():
        pid = str(state.pid) if state.pid else "-"
        _out(f"{state.name:8s} pid {pid:>7s}  {'healthy' if state.healthy else 'DOWN':8s} {state.url}")
    ui = stack.prefect_api_url.removesuffix("/api")
    _out(f"Prefect UI: {ui}    S3 endpoint: {stack.s3_url}    state: {stack.state_dir}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Create the work pool if missing and apply every deployment in prefect.yaml to the Prefect server."""
    settings = load_settings()
    # Local: the stack's server; prod: prefect.api_url and its auth (pools there are the platform team's).
    env = prefect_client_env(settings)
    if settings.active_profile == "local" and LocalStack(settings).ensure_work_pool():
        _out(f"work pool {settings.prefect.work_pool!r} created (type process)")
    started = time.monotonic()
    output = deploy_all(settings.project_root, env)
    names = re.findall(r"Deployment '([^']+)' successfully", " ".join(output.split()))
    _out(f"deployed {len(names)} deployment(s) in {time.monotonic() - started:.1f}s: {', '.join(names)}")
    _out(install_zombie_automation(settings, env))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    env = use_prefect_server(settings)  # fails here, naming the key, when no server is configured
    from flows.pipeline import conveyor_pipeline  # imports prefect: after the environment is set

    started = time.monotonic()
    start = dt.date.fromisoformat(args.start) if args.start else None
    result = conveyor_pipeline(start_date=start, days=args.days)
    landed, trained, scored = result.landed, result.trained, result.scored
    _out(f"\npipeline finished in {time.monotonic() - started:.1f}s")
    _out(
        f"raw data:    {landed.rows} rows in {len(landed.days)} daily partitions ({landed.days[0]} .. "
        f"{landed.days[-1]}) in the Delta table {raw_table(settings.storage, settings).uri} "
        f"(version {landed.table_version})"
    )
    for refused in landed.rejected:
        _out(f"quarantined: {refused.batch_key} ({refused.rows} rows), not published: {refused.reason}")
    decision = (
        "promoted to champion"
        if trained.promoted
        else f"not promoted (champion stays v{trained.champion_after}): {'; '.join(trained.reasons)}"
    )
    # The task's primary metric: ROC AUC (binary), macro F1 (multiclass) or RMSE (regression).
    primary = next((m for m in ("roc_auc", "macro_f1", "rmse") if m in trained.test_metrics), None)
    _out(
        f"model:       {trained.model_name} v{trained.version} {decision}; test "
        f"{'ROC AUC' if primary == 'roc_auc' else primary} {trained.test_metrics[primary]:.3f}; {trained.version_uri}"
        if primary is not None
        else f"model: {decision}"
    )
    skew = result.features
    _out(
        f"features:    online store refreshed; skew check on {skew.entities_checked} entities "
        f"{'passed' if skew.passed else 'FAILED'}" + ("" if skew.passed else f": {'; '.join(skew.reasons)}")
    )
    _out(f"predictions: {scored.rows_scored} rows, model {scored.model} v{scored.model_version}, at {scored.where()}")
    if args.no_loop:
        return 0
    from conveyor.ops.loop_demo import demonstrate_retraining_loop

    _out("\nclosed loop: inject drift -> score -> drift detected -> retraining triggered -> gate decision ...")
    loop = demonstrate_retraining_loop(
        settings, env["PREFECT_API_URL"], drift_start=landed.days[-1] + dt.timedelta(days=1)
    )
    _out("timeline:")
    for line in loop.timeline:
        _out(line)
    if loop.event_to_retraining_start_s is not None:
        _out(f"event -> retraining start: {loop.event_to_retraining_start_s:.1f}s")
    _out(f"decision: {loop.decision}")
    _out(f"Prefect UI: {env['PREFECT_API_URL'].removesuffix('/api')}  (make stop to stop the stack)")
    return 0


def cmd_validation(args: argparse.Namespace) -> int:
    from conveyor.domain.expectations import write_default_suites

    settings = load_settings()
    written = write_default_suites(settings, overwrite=args.force)
    for path in written:
        _out(f"wrote {path}")
    if not written:
        _out(f"suites already in {settings.validation.suites_dir} (--force regenerates them from dataset.yaml)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conveyor", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local S3 + Prefect servers on 127.0.0.1")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument(
        "--worker", action="store_true", help="with `up`: also start a Prefect process worker polling the work pool"
    )
    stack.add_argument(
        "--api", action="store_true", help="with `up`: also start the online inference service (`conveyor serve`)"
    )
    stack.set_defaults(func=cmd_stack)

    deploy = sub.add_parser("deploy", help="create the work pool and apply every deployment in prefect.yaml")
    deploy.set_defaults(func=cmd_deploy)

    run = sub.add_parser("run", help="run the main pipeline end to end")
    run.add_argument("--start", help="first day of data (YYYY-MM-DD); default generator.start_date")
    run.add_argument("--days", type=int, help="days of data; default generator.days")
    run.add_argument(
        "--no-loop",
        action="store_true",
        help="skip the drift -> retraining demonstration (needs the Prefect server's triggers)",
    )
    run.set_defaults(func=cmd_run)

    validation = sub.add_parser("validation", help="data validation suites (configs/expectations/)")
    validation.add_argument(
        "action", choices=["init-suites"], help="init-suites: write raw.json and scoring.json from configs/dataset.yaml"
    )
    validation.add_argument("--force", action="store_true", help="overwrite existing suite files")
    validation.set_defaults(func=cmd_validation)

    add_flow_parser(sub)
    add_models_parser(sub)
    add_rollout_parser(sub)
    add_serve_parser(sub)
    add_data_parser(sub)
    add_dataset_parser(sub)
    add_keys_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    for key, value in TELEMETRY_OFF_ENV.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call drowns the run's own log
    try:
        return int(args.func(args))
    except (ConfigError, StackError) as exc:
        _out(f"error: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
