"""The service's Prometheus metrics, on a registry of its own (one per app, so tests and benches that build
several apps in one process do not collide). Served at `/metrics`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._request_metrics(self.registry)
        self._answer_metrics(self.registry)
        self._model_and_log_metrics(self.registry)

    def _request_metrics(self, r: CollectorRegistry) -> None:
        self.requests = Counter(
            "conveyor_serving_requests",
            "predict requests by input kind and HTTP status",
            ["model", "kind", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "conveyor_serving_request_seconds",
            "predict request latency in the service",
            ["model", "kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "conveyor_serving_errors", "refused or failed requests by kind", ["model", "kind"], registry=r
        )

    def _answer_metrics(self, r: CollectorRegistry) -> None:
        self.rows = Counter(
            "conveyor_serving_rows",
            "answered rows by arm, version and outcome (scored, defaulted, unknown_entity, missing_features, invalid)",
            ["model", "arm", "version", "outcome"],
            registry=r,
        )
        self.scores = Histogram(
            "conveyor_serving_scores",
            "returned and shadow scores by arm and version (A/B comparisons)",
            ["model", "arm", "version"],
            buckets=tuple(i / 10 for i in range(1, 11)),
            registry=r,
        )
        self.positives = Counter(
            "conveyor_serving_positive_decisions",
            "decisions score >= scoring.threshold by arm and version",
            ["model", "arm", "version"],
            registry=r,
        )
        self.predicted_classes = Counter(
            "conveyor_serving_predicted_classes",
            "multiclass answers by arm, version and predicted class",
            ["model", "arm", "version", "predicted_class"],
            registry=r,
        )
        # A Summary (count and sum: the mean by arm and version), not a Histogram: a regression target has no
        # scale known when the metric is created, and fixed buckets would fit one target and not the next.
        self.predictions = Summary(
            "conveyor_serving_predictions",
            "regression predictions by arm and version (count and sum: the mean prediction)",
            ["model", "arm", "version"],
            registry=r,
        )

    def _model_and_log_metrics(self, r: CollectorRegistry) -> None:
        self.model_version = Gauge(
            "conveyor_serving_model_version",
            "version in service by arm (challenger 0: none)",
            ["model", "arm"],
            registry=r,
        )
        self.model_events = Counter(
            "conveyor_serving_model_events", "model swaps and refused loads", ["model", "event"], registry=r
        )
        self.log_buffered = Gauge(
            "conveyor_serving_log_buffered_rows", "prediction-log rows not yet flushed", registry=r
        )
        self.log_written = Gauge("conveyor_serving_log_written_rows", "prediction-log rows flushed", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
