"""The Prefect UI, in a real headless Chromium (Debian's package) driven by Playwright: a person starts a custom
run of a deployment with a parameter changed, and sees it complete with its artifacts listed.

Tier `browser`: `make test-browser` (or `pytest -m browser`); skipped with a message when Chromium or the
Playwright package is missing. A screenshot is saved on failure (path printed in the failure message).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tasks.local_stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = os.environ.get("CONVEYOR_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google on this closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


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


def test_custom_run_from_the_ui_completes_and_lists_its_artifacts(served_stack: LocalStack, page: Any) -> None:
    from playwright.sync_api import expect

    ui = served_stack.prefect_api_url.removesuffix("/api")
    page.goto(f"{ui}/deployments", wait_until="networkidle")
    page.locator("a[href^='/deployments/deployment/']", has_text="ingest").first.click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Custom run").click()

    # The form Prefect renders from the flow's typed signature: `days` (optional int, 1..3660, described).
    days = page.locator(".schema-form-property").filter(
        has=page.locator(".schema-form-property__label", has_text="days"))
    expect(days.first).to_be_visible()
    days.first.get_by_role("button", name="int", exact=True).click()
    days.first.locator("input").first.fill("2")
    page.get_by_role("button", name="Submit").click()

    # The toast links to the new run; the worker picks it up and runs it.
    page.get_by_role("button", name="View run").last.click()
    page.wait_for_url("**/runs/flow-run/**")
    run_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    badge = page.locator(".state-badge").first
    expect(badge).to_have_text("Completed", timeout=120_000)

    # What the UI showed is what the server holds: the changed parameter and the run's artifacts.
    status, run = served_stack.api("GET", f"/flow_runs/{run_id}")
    assert status == 200 and isinstance(run, dict)
    assert run["parameters"]["days"] == 2 and run["state_type"] == "COMPLETED"

    page.get_by_text("Artifacts", exact=True).first.click()
    card = page.locator(".artifact-card, .p-card").filter(has_text="ingest")
    expect(card.first).to_be_visible()
    expect(card.first).to_contain_text("2 daily partitions")  # the parameter changed in the form took effect
