"""`conveyor serve`: the online inference service in the foreground (uvicorn), as `conveyor stack up --api`
starts it locally and as a Kubernetes Deployment runs it (deploy/kubernetes/online-service.yaml). SIGTERM drains
requests in flight, stops the registry poll and flushes the prediction log before the process exits."""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

from configs.settings import load_settings

# LogRecord attributes every record has: anything else came in through `extra=` and goes into the JSON line.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def add_serve_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = sub.add_parser("serve", help="run the online inference service (HTTP) in the foreground")
    serve.add_argument("--host", help="bind address; default serving.host")
    serve.add_argument("--port", type=int, help="port; default serving.port")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from threadpoolctl import threadpool_limits

    from conveyor.serving.app import create_app

    settings = load_settings()
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # One OpenMP thread per predict: a one-row predict pays more to wake a thread team than it gains. threadpoolctl
    # limits only the runtimes loaded when it is called, and the model loads later (lifespan): load OpenMP now.
    import sklearn.ensemble  # noqa: F401

    threadpool_limits(limits=1)
    config = uvicorn.Config(
        create_app(settings),
        host=args.host or settings.serving.host,
        port=args.port or settings.serving.port,
        log_config=None,  # our JSON handler, not uvicorn's text one
        access_log=False,  # the service logs each predict itself, with its request id
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(config).run()
    return 0
