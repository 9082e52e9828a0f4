"""Notifications: a failed flow run or a model refused by the gates is reported to the Apprise URLs in config
(`notifications.apprise_urls`: Slack, e-mail, Teams, a JSON webhook...). The only module that imports apprise.

URLs hold tokens, so they come from the environment and are never logged: logs name only the URL's scheme.
On a Prefect server, an Automation ("flow run enters Failed -> send notification") does the same from the UI;
this module is for teams that want it in config, next to the thresholds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from configs.settings import NotificationsConfig, Settings, load_settings

log = logging.getLogger(__name__)


def notify(config: NotificationsConfig, title: str, body: str) -> int:
    """Send one message to every configured URL; returns how many accepted it. Never raises: a notification
    failure must not fail the run it reports on (it is logged, without the URL)."""
    if not config.apprise_urls:
        return 0
    import apprise

    sent = 0
    with _quiet(("apprise", "urllib3.connectionpool")):  # both log the full URL, token included, at DEBUG
        for secret in config.apprise_urls:
            sent += _send_one(apprise, secret.get_secret_value(), title, body)
    log.info("notification %r sent to %d of %d target(s)", title, sent, len(config.apprise_urls))
    return sent


@contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.setLevel(level)


def _send_one(apprise: Any, url: str, title: str, body: str) -> int:
    scheme = url.split("://", 1)[0]
    target = apprise.Apprise()
    if not target.add(url):
        log.warning("notification: an apprise URL with scheme %r is not valid; skipped", scheme)
        return 0
    if target.notify(title=title, body=body):
        return 1
    log.warning("notification: the %r target did not accept the message", scheme)
    return 0


def gate_refusal_message(model_name: str, version: Any, reasons: list[str]) -> tuple[str, str]:
    title = f"Conveyor: model {model_name} v{version} refused by the evaluation gates"
    return title, "\n".join(f"- {reason}" for reason in reasons) or "- (no reason given)"


def notify_gate_refusal(settings: Settings, model_name: str, version: Any, reasons: list[str]) -> int:
    """Call where a gate decision refuses a model (the champion stays)."""
    if not settings.notifications.on_gate_refusal:
        return 0
    return notify(settings.notifications, *gate_refusal_message(model_name, version, reasons))


def notify_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect flow hook: `@flow(on_failure=[notify_on_failure], on_crashed=[notify_on_failure])`."""
    config = load_settings().notifications
    if not config.on_failure:
        return
    title = f"Conveyor: flow run {flow_run.name} of {flow.name} is {state.name}"
    body = f"{state.message or ''}\nflow run id: {flow_run.id}"
    notify(config, title, body)
