"""conveyor/adapters/prefect_api.RetryBusyServer against a loopback HTTP server that answers 503 (what a busy
SQLite-backed Prefect server says for "database is locked") a given number of times."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer

import httpx
import pytest

from conveyor.adapters.prefect_api import RetryBusyServer
from tests.loopback_http import QuietHandler, loopback_http_server


@pytest.fixture
def busy_server() -> Iterator[tuple[str, dict[str, int]]]:
    """(URL, state): answers 503 to the first `state['busy']` requests, then 201 with the body it received."""
    state = {"busy": 0, "requests": 0}

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state["requests"] += 1
            busy = state["requests"] <= state["busy"]
            self.send_response(503 if busy else 201)
            self.end_headers()
            self.wfile.write(b'{"exception_message":"Service Unavailable"}' if busy else body)

    with loopback_http_server(Handler) as port:
        yield f"http://127.0.0.1:{port}", state


def test_a_busy_answer_is_retried_with_the_same_body(busy_server: tuple[str, dict[str, int]]) -> None:
    url, state = busy_server
    state["busy"] = 2
    with httpx.Client(base_url=url, transport=RetryBusyServer(attempts=5, backoff_seconds=0.01)) as client:
        response = client.post("/flow_runs/", json={"name": "x"})
    assert response.status_code == 201 and response.json() == {"name": "x"}
    assert state["requests"] == 3


def test_a_server_busy_for_every_attempt_returns_its_503(busy_server: tuple[str, dict[str, int]]) -> None:
    url, state = busy_server
    state["busy"] = 100
    with httpx.Client(base_url=url, transport=RetryBusyServer(attempts=4, backoff_seconds=0.01)) as client:
        response = client.post("/flow_runs/", json={})
    assert response.status_code == 503 and state["requests"] == 4


@pytest.fixture
def slow_first_server() -> Iterator[tuple[str, list[str]]]:
    """(URL, paths received): the first request is answered after 0.5 s (a server stuck behind SQLite's lock),
    every later one at once (threaded, so the retry is not queued behind the first)."""
    requests: list[str] = []

    class SlowFirst(QuietHandler):
        def answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            requests.append(self.path)
            if len(requests) == 1:
                time.sleep(0.5)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_PUT = answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowFirst)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("method", "path", "resent"),
    [
        ("GET", "/flow_runs/x", True),
        ("POST", "/automations/filter", True),  # a query sent as POST: resending it changes nothing
        ("POST", "/work_pools/pool/workers/filter/", True),
        ("POST", "/flow_runs/count", True),
        ("PUT", "/automations/a1", True),
        ("POST", "/automations/", False),  # a create that timed out may have been applied
    ],
)
def test_a_request_that_times_out_is_sent_again_only_when_that_is_safe(
    slow_first_server: tuple[str, list[str]], method: str, path: str, resent: bool
) -> None:
    """Without the retry every case raises ReadTimeout; a create must still raise it, sent once."""
    url, requests = slow_first_server
    transport = RetryBusyServer(attempts=3, backoff_seconds=0.01)
    with httpx.Client(base_url=url, transport=transport, timeout=0.2) as client:
        if resent:
            assert client.request(method, path, json={}).status_code == 200
        else:
            with pytest.raises(httpx.ReadTimeout):
                client.request(method, path, json={})
    assert len(requests) == (2 if resent else 1)
