"""Serve the monitoring loop (drift-monitor + retraining deployments, with their prefect.yaml triggers) from
this process, without a work pool: `python -m conveyor.ops.serve_loop`. Stop it with SIGTERM (it pauses its
deployments). The same deployments run on a worker after `prefect deploy --all`; this is the light way to run
the loop on one machine and in tests. The triggers are read from prefect.yaml, so both ways behave alike.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import yaml

PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"
LOOP_DEPLOYMENTS = ("drift-monitor", "retraining")

log = logging.getLogger(__name__)


def deployment_specs(names: tuple[str, ...] = LOOP_DEPLOYMENTS, path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    specs = {d["name"]: d for d in yaml.safe_load(path.read_text())["deployments"]}
    missing = [n for n in names if n not in specs]
    if missing:
        raise KeyError(f"{path}: no deployment(s) named {missing}")
    return [specs[n] for n in names]


def runner_deployments(names: tuple[str, ...] = LOOP_DEPLOYMENTS) -> list[Any]:
    """RunnerDeployments built from prefect.yaml entries: entrypoint, parameters, tags, triggers."""
    from prefect.events import DeploymentEventTrigger
    from prefect.flows import load_flow_from_entrypoint

    deployments: list[Any] = []
    for spec in deployment_specs(names):
        flow: Any = load_flow_from_entrypoint(str(PREFECT_YAML.parent / spec["entrypoint"]))
        triggers: list[Any] = [
            DeploymentEventTrigger(**{k: v for k, v in t.items() if k != "type"})
            for t in spec.get("triggers", [])
            if t.get("type") == "event"
        ]
        deployments.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                parameters=spec.get("parameters") or {},
                triggers=triggers,
                enforce_parameter_schema=spec.get("enforce_parameter_schema", True),
            )
        )
    return deployments


def main(argv: list[str] | None = None) -> int:
    import argparse

    from prefect import serve

    parser = argparse.ArgumentParser(prog="python -m conveyor.ops.serve_loop", description=__doc__)
    parser.add_argument("deployments", nargs="*", default=list(LOOP_DEPLOYMENTS), help="prefect.yaml names")
    parser.add_argument("--limit", type=int, default=4, help="flow runs executed at once by this process")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(*runner_deployments(tuple(args.deployments)), print_starting_message=False, limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
