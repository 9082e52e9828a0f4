"""The Kubernetes work-pool job template (deploy/kubernetes/base-job-template.json), checked with Prefect's own
tooling: a real Prefect server accepts it for a `kubernetes` pool, and prefect-kubernetes renders a Job manifest
from it that carries the image, the profile, the code location and the secrets reference (no secret values)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.ops.local_stack import LocalStack

pytestmark = pytest.mark.integration
TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "base-job-template.json"


def test_a_prefect_server_accepts_the_template_for_a_kubernetes_pool(served_stack: LocalStack, tmp_path: Path) -> None:
    pytest.importorskip("prefect_kubernetes", reason="pip install prefect-kubernetes (in the dev extra)")
    prefect = str(Path(sys.executable).parent / "prefect")
    env = {**os.environ, **served_stack.client_env()}
    created = subprocess.run(
        [
            prefect,
            "--no-prompt",
            "work-pool",
            "create",
            "conveyor-k8s-test",
            "--type",
            "kubernetes",
            "--base-job-template",
            str(TEMPLATE),
            "--overwrite",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    status, pool = served_stack.api("GET", "/work_pools/conveyor-k8s-test")
    assert status == 200 and isinstance(pool, dict)
    assert pool["type"] == "kubernetes" and pool["base_job_template"] == json.loads(TEMPLATE.read_text())

    # A template whose job refers to an undeclared variable is refused by the same tooling.
    broken = json.loads(TEMPLATE.read_text())
    broken["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["image"] = "{{ imgae }}"
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps(broken))
    refused = subprocess.run(
        [
            prefect,
            "--no-prompt",
            "work-pool",
            "create",
            "conveyor-k8s-broken",
            "--type",
            "kubernetes",
            "--base-job-template",
            str(bad),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "imgae" in refused.stdout + refused.stderr


def test_prefect_kubernetes_renders_a_job_with_image_profile_and_secret_reference(served_stack: LocalStack) -> None:
    k8s = pytest.importorskip("prefect_kubernetes.worker", reason="pip install prefect-kubernetes")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    template = json.loads(TEMPLATE.read_text())
    # Rendering resolves block/variable references through an API: the served stack's, not a temporary server.
    with temporary_settings({PREFECT_API_URL: served_stack.prefect_api_url}):
        config = asyncio.run(
            k8s.KubernetesWorkerJobConfiguration.from_template_and_values(
                template, {"image": "registry.example.com/conveyor:1.2.3"}
            )
        )
    container = config.job_manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/conveyor:1.2.3"
    assert config.env["CONVEYOR_PROFILE"] == "prod" and config.env["CONVEYOR_PROJECT_ROOT"] == "/opt/conveyor"
    assert container["envFrom"] == [{"secretRef": {"name": "conveyor-secrets"}}]
    assert container["resources"]["limits"]["memory"] == "8Gi"
    assert config.namespace == "conveyor"
    text = TEMPLATE.read_text().lower()
    assert "secret_access_key" not in text and "password" not in text  # only a reference to the Secret
