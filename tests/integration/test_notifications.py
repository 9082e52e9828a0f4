"""Notifications through Apprise to a real HTTP endpoint on loopback: a failed flow run and a gate refusal
reach it; the URL (which holds a token) never appears in logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from configs.settings import NotificationsConfig, load_settings
from conveyor.adapters.notify import notify, notify_gate_refusal
from tests.loopback_http import QuietHandler, loopback_http_server

pytestmark = pytest.mark.integration
TOKEN = "s3cr3t-token-4711"


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, object]]]]:
    received: list[dict[str, object]] = []

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received.append({"path": self.path, **json.loads(self.rfile.read(length))})
            self.send_response(200)
            self.end_headers()

    with loopback_http_server(Handler) as port:
        yield f"json://127.0.0.1:{port}/hooks/{TOKEN}", received


def test_gate_refusal_reaches_the_webhook_and_the_url_is_not_logged(webhook, caplog, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url, received = webhook
    caplog.set_level(logging.DEBUG)  # apprise's own debug logs included
    monkeypatch.setenv("CONVEYOR_NOTIFICATIONS__APPRISE_URLS", json.dumps([url]))
    settings = load_settings()
    assert notify_gate_refusal(settings, "churn", 7, ["roc_auc 0.61 < 0.70"]) == 1
    monkeypatch.undo()
    assert len(received) == 1 and received[0]["path"] == f"/hooks/{TOKEN}"
    assert "refused" in str(received[0]["title"]) and "roc_auc 0.61 < 0.70" in str(received[0]["message"])
    assert TOKEN not in caplog.text and "sent to 1 of 1" in caplog.text
    assert TOKEN not in repr(settings.notifications)  # SecretStr: not even in a repr or a traceback


def test_an_unreachable_target_is_reported_without_failing_the_caller(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    config = NotificationsConfig.model_validate({"apprise_urls": [f"json://127.0.0.1:9/{TOKEN}"]})
    assert notify(config, "t", "b") == 0
    assert "did not accept" in caplog.text and TOKEN not in caplog.text


def test_a_failed_flow_run_notifies(webhook, prefect_harness: None, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from flows.ingest import ingest

    url, received = webhook
    monkeypatch.setenv("CONVEYOR_NOTIFICATIONS__APPRISE_URLS", json.dumps([url]))
    monkeypatch.setenv("CONVEYOR_DATASET__SOURCE__KIND", "files")
    monkeypatch.setenv("CONVEYOR_DATASET__SOURCE__PATH", "/nonexistent/conveyor-input")
    state = ingest(return_state=True)
    monkeypatch.undo()
    assert state.is_failed()
    assert len(received) == 1, received
    assert "ingest" in str(received[0]["title"]) and "Failed" in str(received[0]["title"])
