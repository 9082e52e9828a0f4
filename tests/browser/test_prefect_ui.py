"""The Prefect UI, in a real headless Chromium (Debian's package) driven by Playwright: a person starts a custom
run of the training deployment (and of ingest) with a parameter changed, and sees it complete with its artifacts
listed.

Tier `browser`: `make test-browser` (or `pytest -m browser`); skipped with a message when Chromium or the
Playwright package is missing. A screenshot is saved on failure (path printed in the failure message).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from configs.settings import load_settings
from conveyor.adapters.object_store import ObjectStore
from conveyor.demo.synthetic import Scenario
from conveyor.ops.local_stack import LocalStack
from conveyor.services.ingest import land_synthetic

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = os.environ.get("CONVEYOR_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google on this closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"browser tier: no Chromium at {CHROMIUM} (apt-get install chromium, or set CONVEYOR_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tier: pip install playwright")
    with sync_api.sync_playwright() as pw:
        # The system Chromium: Playwright's own browser download does not work on a closed network.
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        folder = Path(os.environ.get("CONVEYOR_TEST_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
        folder.mkdir(parents=True, exist_ok=True)
        shot = folder / f"{request.node.name}-{int(time.time())}.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"\nscreenshot of the failing page: {shot}  (url {page.url})")
    context.close()


def _open_custom_run_form(page: Any, ui: str, deployment: str) -> None:
    page.goto(f"{ui}/deployments", wait_until="networkidle")
    page.locator("a[href^='/deployments/deployment/']").filter(has_text=re.compile(f"^{deployment}$")).first.click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()


def _form_field(page: Any, name: str) -> Any:
    return (
        page.locator(".schema-form-property")
        .filter(has=page.locator(".schema-form-property__label", has_text=re.compile(f"^{name}( \\(Optional\\))?$")))
        .first
    )


def _submit_and_open_run(page: Any, stack: LocalStack, ui: str, attempts: int = 3) -> str:
    """Submit the form; the UI then goes back to the deployment's runs. A busy SQLite-backed server answers the
    form's request 503 ("database is locked", rolled back: nothing was created) and the UI only shows "Something
    went wrong", without retrying as Prefect's Python client does: the test submits again, as a person would.
    Any other failed API response is named in the failure."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    failed: list[tuple[int, str]] = []
    page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 and "/api/" in r.url else None)
    for attempt in range(1, attempts + 1):
        failed.clear()
        page.get_by_role("button", name="Submit").click()
        try:
            page.wait_for_url("**/deployments/deployment/**?tab=Runs")
            break
        except PlaywrightTimeout:
            busy = [url for status, url in failed if status == 503]
            if attempt == attempts or not busy or len(busy) < len(failed):
                raise AssertionError(
                    f"the form did not create a run (attempt {attempt}); failed API responses: {failed or 'none'}"
                ) from None
            print(f"server busy (503 on {busy}): submitting the form again")
    deployment_id = page.url.split("/deployments/deployment/")[1].split("?")[0]
    # The run the form created: the newest manual run of this deployment (the toast's "View run" link goes
    # there too, but a toast may be gone before a loaded machine gets to click it).
    query = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "sort": "START_TIME_DESC"}
    status, runs = stack.api("POST", "/flow_runs/filter", query)
    assert status == 200 and isinstance(runs, list)
    manual = sorted((r for r in runs if not r["auto_scheduled"]), key=lambda r: r["created"])
    assert manual, "the form created no run"
    run_id = str(manual[-1]["id"])
    page.goto(f"{ui}/runs/flow-run/{run_id}", wait_until="networkidle")
    return run_id


def test_custom_training_run_from_the_ui_completes_and_lists_its_artifacts(served_stack: LocalStack, page: Any) -> None:
    from playwright.sync_api import expect

    settings = load_settings()
    # Raw data for the training window (the plain landing function: the UI part is what is under test here).
    land_synthetic(settings, ObjectStore(settings.storage), settings.generator.start_date, 30, Scenario(), "ui-test")
    ui = served_stack.prefect_api_url.removesuffix("/api")
    _open_custom_run_form(page, ui, "training")

    # The form Prefect renders from the flow's typed signature, with the docstring's descriptions.
    promote = _form_field(page, "promote")
    expect(promote).to_contain_text("Make the model the champion if every gate passes")
    switch = promote.get_by_role("switch")
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.click()  # the changed parameter: register only, do not promote
    expect(switch).to_have_attribute("aria-checked", "false")
    run_id = _submit_and_open_run(page, served_stack, ui)

    # The worker picks the run up; the page follows it to Completed.
    expect(page.locator(".state-badge").first).to_have_text("Completed", timeout=300_000)
    status, run = served_stack.api("GET", f"/flow_runs/{run_id}")
    assert status == 200 and isinstance(run, dict)
    assert run["parameters"]["promote"] is False and run["state_type"] == "COMPLETED"

    page.get_by_text("Artifacts", exact=True).first.click()
    model = settings.training.model_name
    for key in (f"{model}-training-outcome", f"{model}-gate-decision", f"{model}-metrics"):
        expect(page.get_by_text(key, exact=True).first).to_be_visible()
    query = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
    status, artifacts = served_stack.api("POST", "/artifacts/filter", query)
    assert status == 200 and f"{model}-training-outcome" in {a["key"] for a in artifacts}  # type: ignore[union-attr]


def test_custom_ingest_run_with_a_changed_number_completes(served_stack: LocalStack, page: Any) -> None:
    from playwright.sync_api import expect

    ui = served_stack.prefect_api_url.removesuffix("/api")
    _open_custom_run_form(page, ui, "ingest")
    days = _form_field(page, "days")  # optional int, 1..3660: pick the int branch, type a value
    days.get_by_role("button", name="int", exact=True).click()
    days.locator("input").first.fill("2")
    run_id = _submit_and_open_run(page, served_stack, ui)
    expect(page.locator(".state-badge").first).to_have_text("Completed", timeout=120_000)
    status, run = served_stack.api("GET", f"/flow_runs/{run_id}")
    assert status == 200 and isinstance(run, dict) and run["parameters"]["days"] == 2

    page.get_by_text("Artifacts", exact=True).first.click()
    card = page.locator(".artifact-card, .p-card").filter(has_text="ingest")
    expect(card.first).to_contain_text("2 daily partitions")  # the parameter changed in the form took effect
