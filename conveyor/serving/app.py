"""The HTTP API (FastAPI): `POST /v1/models/{name}/predict`, `/health`, `/ready`, `/metrics`.

`create_app(settings)` wires one model's pool (hot swap), predictor, prediction log and metrics; the lifespan
starts the registry poll and the log flusher and, on shutdown (SIGTERM through uvicorn), stops the poll and
flushes the log. Endpoints are plain `def`s: FastAPI runs them in its thread pool, and scoring holds the GIL
only in part (numpy, scikit-learn), so the event loop keeps accepting requests meanwhile."""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import pandas as pd
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator

from configs.settings import ConfigError, Settings
from conveyor.adapters.feast_online_read import OnlineFeatureReader
from conveyor.adapters.object_store import ObjectStore
from conveyor.adapters.registry import ModelRegistry
from conveyor.domain.entity_keys import key_text
from conveyor.domain.prediction_log_schema import INPUT_PREFIX
from conveyor.domain.signature import EntityKey, column_lists
from conveyor.serving.metrics import ServiceMetrics
from conveyor.serving.model_pool import ModelPool, Snapshot
from conveyor.serving.prediction_log import LogFull, PredictionLog
from conveyor.serving.predictor import BadRows, Outcome, Predictor
from conveyor.serving.runtime import warmup_tolerance

log = logging.getLogger("conveyor.serving")


class PredictRequest(BaseModel):
    """Either `entity_ids` (features from the online store) or `rows` of feature values, not both."""

    # Of dataset.entity_dtype; a composite key's ids are objects of every key column, {"store_id": 3, "sku": "a"}.
    entity_ids: list[int | str | dict[str, int | str]] | None = Field(default=None, min_length=1)
    rows: list[dict[str, Any]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_input(self) -> PredictRequest:
        if (self.entity_ids is None) == (self.rows is None):
            raise ValueError("give exactly one of entity_ids (features from the online store) or rows")
        return self


class Prediction(BaseModel):
    """One row's answer; the output fields of the answering version's task are set, the others null."""

    status: str
    entity_id: int | str | dict[str, int | str] | None = None
    input_hash: str | None = None
    score: float | None = None  # binary: P(positive)
    decision: bool | None = None  # binary: score >= scoring.threshold
    model_version: int | None = None
    arm: str | None = None
    reason: str | None = None
    task: str | None = None  # binary | multiclass | regression
    probabilities: dict[str, float] | None = None  # multiclass: class -> probability
    predicted_class: str | None = None  # multiclass
    prediction: float | None = None  # regression


class PredictResponse(BaseModel):
    request_id: str
    model: str
    model_version: int  # the champion in service when the request started
    task: str  # the champion's task (binary | multiclass | regression)
    predictions: list[Prediction]
    counts: dict[str, int]


class ServiceState:
    """Everything the endpoints share, built once per app."""

    def __init__(self, settings: Settings, store: ObjectStore | None = None) -> None:
        cfg = settings.serving
        if cfg.require_api_key and cfg.api_key is None:
            raise ConfigError(
                f"serving.require_api_key is on (profile {settings.active_profile!r}) but no key is set: "
                "set CONVEYOR_SERVING__API_KEY (from a secret)"
            )
        self.settings = settings
        # An id of the key's shape that no entity has: /ready asks the online store for it.
        probe = {c: -1 if t == "int64" else "-1" for c, t in settings.dataset.key_dtypes.items()}
        self.probe_key: EntityKey = probe if settings.dataset.composite_key else -1
        self.model_name = cfg.model_name or settings.scoring.model_name
        self.store = store or ObjectStore(settings.storage)
        self.metrics = ServiceMetrics()
        self.pool = ModelPool(
            ModelRegistry(self.store, settings),
            self.model_name,
            settings.scoring.runtime,
            cfg.warmup_rows,
            settings.features.feature_service,
            on_event=lambda event, version: self.metrics.model_events.labels(self.model_name, event).inc(),
            tolerance=warmup_tolerance(settings.scoring.runtime, settings.twin.parity_tolerance),
        )
        self.readers: dict[str, OnlineFeatureReader] = {}
        self.predictor = Predictor(settings, self.model_name, self.online_features)
        self.log = PredictionLog(
            self.store,
            cfg.log_prefix,
            self.model_name,
            cfg.log_buffer_rows,
            cfg.log_wait_seconds,
            cfg.log_flush_seconds,
            cfg.log_flush_rows,
            settings.dataset.feature_names,
        )

    def online_features(self, entity_ids: Sequence[EntityKey], feature_service: str) -> pd.DataFrame:
        """The Feast online store's values for `entity_ids` (one cached reader per feature service)."""
        reader = self.readers.get(feature_service)
        if reader is None:
            reader = self.readers[feature_service] = OnlineFeatureReader(self.settings, feature_service)
        return reader.read(entity_ids)

    def start(self) -> None:
        try:
            self.pool.refresh()
        except Exception as exc:  # not ready until the poll loads a champion; /ready says why
            self.pool.last_error = f"{type(exc).__name__}: {exc}"
            log.error("initial model load failed: %s", self.pool.last_error)
        self.pool.start(self.settings.serving.poll_seconds)
        self.log.start()

    def stop(self) -> None:
        self.pool.stop()
        written = self.log.close()
        log.info("prediction log flushed: %d rows written in all", written)


def _logged_key(state: ServiceState, key: EntityKey | None) -> int | str | None:
    # A composite key is logged as one text column (its JSON in key order), so the log keeps one schema.
    return key_text(state.settings.dataset, key) if isinstance(key, dict) else key


def _log_rows(state: ServiceState, request_id: str, outcome: Outcome, latency_ms: float) -> list[dict[str, Any]]:
    now = time.time()
    rows = []
    inputs: list[dict[str, Any]] = [{}] * len(outcome.answers)
    if outcome.inputs is not None:  # the dataset's features the champion was given (its service may hold fewer)
        features = [c for c in state.settings.dataset.feature_names if c in outcome.inputs.columns]
        values = column_lists(outcome.inputs, features)
        inputs = [{INPUT_PREFIX + k: v[i] for k, v in values.items()} for i in range(len(outcome.answers))]
    for returned, answers in ((True, outcome.answers), (False, outcome.shadow)):
        for i, a in enumerate(answers):
            rows.append(
                {
                    "request_id": request_id,
                    "logged_at": now,
                    "model": state.model_name,
                    "model_version": a.model_version,
                    "arm": a.arm,
                    "returned": returned,
                    "entity_id": _logged_key(state, a.entity_id),
                    "input_hash": a.input_hash,
                    "status": a.status,
                    "score": a.score,
                    "decision": a.decision,
                    "latency_ms": latency_ms,
                    "task": a.task,
                    "predicted_class": a.predicted_class,
                    "probabilities": None if a.probabilities is None else json.dumps(a.probabilities),
                    "prediction": a.prediction,
                    **(inputs[i] if returned else {}),
                }
            )
    return rows


def _count(state: ServiceState, outcome: Outcome) -> dict[str, int]:
    counts: dict[str, int] = {}
    m, name = state.metrics, state.model_name
    for a in [*outcome.answers, *outcome.shadow]:
        arm, version = a.arm or "none", str(a.model_version or "")
        m.rows.labels(name, arm, version, a.status).inc()
        if a.score is not None:
            m.scores.labels(name, arm, version).observe(a.score)
            if a.decision:
                m.positives.labels(name, arm, version).inc()
        if a.predicted_class is not None:
            m.predicted_classes.labels(name, arm, version, a.predicted_class).inc()
        if a.prediction is not None:
            m.predictions.labels(name, arm, version).observe(a.prediction)
    for a in outcome.answers:
        counts[a.status] = counts.get(a.status, 0) + 1
    return counts


class BodySizeLimit:
    """Refuse request bodies above `limit` bytes with 413, by Content-Length or while streaming (ASGI)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and int(declared) > self.limit:
            await _too_large(self.limit)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"request body above serving.max_request_bytes={self.limit}")
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body above serving.max_request_bytes={limit}"}, status_code=413)


def create_app(settings: Settings, store: ObjectStore | None = None) -> FastAPI:
    state = ServiceState(settings, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            state.stop()

    app = FastAPI(title="Conveyor online inference", lifespan=lifespan)
    app.state.service = state
    app.add_middleware(BodySizeLimit, limit=settings.serving.max_request_bytes)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI's 422 names each offending field by its location, e.g. ["body", "entity_ids", 3].
        state.metrics.errors.labels(state.model_name, "bad_request").inc()
        return await request_validation_exception_handler(request, exc)

    _add_operations_routes(app, state)
    _add_predict_route(app, state)
    return app


def _api_key_check(state: ServiceState) -> Callable[..., Awaitable[None]]:
    """The X-API-Key dependency (a no-op without `serving.api_key`)."""
    expected = state.settings.serving.api_key

    # async: a plain `def` dependency costs every request a hop through the thread pool, for a string compare.
    async def api_key(x_api_key: str | None = Header(default=None)) -> None:
        if expected is None:
            return
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected.get_secret_value().encode()):
            state.metrics.errors.labels(state.model_name, "unauthorized").inc()
            raise HTTPException(401, "missing or wrong X-API-Key", headers={"WWW-Authenticate": "X-API-Key"})

    return api_key


def _add_operations_routes(app: FastAPI, state: ServiceState) -> None:
    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        snapshot = state.pool.current
        problems = [] if snapshot is not None else [state.pool.last_error or "no model loaded yet"]
        try:
            service_name = snapshot.champion.feature_service if snapshot else state.settings.features.feature_service
            state.online_features([state.probe_key], service_name)  # the store opens and answers
        except Exception as exc:
            problems.append(f"online store unreachable: {type(exc).__name__}: {exc}")
        body = {
            "ready": not problems,
            "model": state.model_name,
            "champion": snapshot.champion.version if snapshot else None,
            "runtime": state.pool.runtime_name,
            "rollout": snapshot.effective_plan.to_json() if snapshot else None,
            "refused_versions": {str(k): v for k, v in state.pool.refused.items()},
            "problems": problems,
        }
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        state.metrics.log_buffered.set(state.log.buffered)
        state.metrics.log_written.set(state.log.rows_written)
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


_ERROR_KINDS = {404: "unknown_model", 413: "too_large", 422: "bad_rows", 503: "unavailable"}


def _add_predict_route(app: FastAPI, state: ServiceState) -> None:
    @app.post(
        "/v1/models/{name}/predict", response_model=PredictResponse, dependencies=[Depends(_api_key_check(state))]
    )
    def predict(name: str, body: PredictRequest, request: Request) -> Response:
        started = time.perf_counter()
        kind = "entities" if body.entity_ids is not None else "rows"
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        status = 500
        try:
            snapshot, outcome = _answer(state, name, body)
            latency_ms = (time.perf_counter() - started) * 1000
            counts = _record(state, request_id, snapshot, outcome, latency_ms)
            status = 200
            log.info(
                "predict",
                extra={
                    "request_id": request_id,
                    "model": name,
                    "version": snapshot.champion.version,
                    "kind": kind,
                    "rows": len(outcome.answers),
                    "counts": counts,
                    "latency_ms": round(latency_ms, 3),
                },
            )
            return _response(request_id, name, snapshot, outcome, counts)
        except HTTPException as exc:
            status = exc.status_code
            state.metrics.errors.labels(state.model_name, _ERROR_KINDS.get(status, "http")).inc()
            raise
        except Exception:
            state.metrics.errors.labels(state.model_name, "internal").inc()
            log.exception("predict failed", extra={"request_id": request_id})
            raise
        finally:
            state.metrics.requests.labels(state.model_name, kind, str(status)).inc()
            state.metrics.latency.labels(state.model_name, kind).observe(time.perf_counter() - started)


def _answer(state: ServiceState, name: str, body: PredictRequest) -> tuple[Snapshot, Outcome]:
    """The request's outcome from the snapshot in service when it starts; HTTPException for a refusal."""
    if name != state.model_name:
        raise HTTPException(404, f"model {name!r} is not served here (this service serves {state.model_name!r})")
    count = len(body.entity_ids or body.rows or [])
    limit = state.settings.serving.max_rows
    if count > limit:
        kind = "entities" if body.entity_ids is not None else "rows"
        raise HTTPException(413, f"{count} {kind} in one request, above serving.max_rows={limit}")
    snapshot = state.pool.current
    if snapshot is None:
        raise HTTPException(503, f"no model loaded: {state.pool.last_error}")
    try:
        if body.entity_ids is not None:
            return snapshot, state.predictor.for_entities(snapshot, body.entity_ids)
        return snapshot, state.predictor.for_rows(snapshot, body.rows or [])
    except BadRows as exc:
        detail = {
            "message": f"rows refused by the {name} signature: {exc}",
            "errors": [v.to_json() for v in exc.violations],
        }
        raise HTTPException(422, detail) from None


def _record(
    state: ServiceState, request_id: str, snapshot: Snapshot, outcome: Outcome, latency_ms: float
) -> dict[str, int]:
    """Log the answered rows (503 when the log stays full) and count them; returns the counts by status."""
    try:
        state.log.append(_log_rows(state, request_id, outcome, latency_ms))
    except LogFull as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
    counts = _count(state, outcome)
    m, name = state.metrics, state.model_name
    m.model_version.labels(name, "champion").set(snapshot.champion.version)
    m.model_version.labels(name, "challenger").set(snapshot.challenger.version if snapshot.challenger else 0)
    return counts


def _response(request_id: str, name: str, snapshot: Snapshot, outcome: Outcome, counts: dict[str, int]) -> Response:
    answer = PredictResponse(
        request_id=request_id,
        model=name,
        model_version=snapshot.champion.version,
        task=snapshot.champion.task.kind,
        predictions=[Prediction(**asdict(a)) for a in outcome.answers],
        counts=counts,
    )
    # Serialized here: returned as a model, FastAPI would validate it again against response_model (which stays
    # for the OpenAPI schema), a second pass over every prediction.
    return Response(answer.model_dump_json(), media_type="application/json")
