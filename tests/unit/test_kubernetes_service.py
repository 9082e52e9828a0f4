"""deploy/kubernetes/online-service.yaml: a Deployment + Service whose container runs `conveyor serve` in the prod
profile, probes the service's own endpoints, takes its secrets from the Secret by reference, and leaves SIGTERM
time to drain and flush the prediction log."""

from __future__ import annotations

from pathlib import Path

import yaml

from configs.settings import load_settings
from conveyor.ops.cli import build_parser

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "online-service.yaml"


def test_deployment_and_service_fit_the_service() -> None:
    deployment, service = yaml.safe_load_all(MANIFEST.read_text())
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:2] == ["conveyor", "serve"]
    args = build_parser().parse_args(command[1:])  # the CLI accepts exactly this command line
    assert (args.host, args.port) == ("0.0.0.0", container["ports"][0]["containerPort"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CONVEYOR_PROFILE"] == "prod" and load_settings("prod").serving.require_api_key
    assert not any("KEY" in name or "SECRET" in name for name in env)  # secrets only through the Secret
    assert container["envFrom"] == [{"secretRef": {"name": "conveyor-secrets"}}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["terminationGracePeriodSeconds"] > 30 + load_settings("prod").serving.log_flush_seconds
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
