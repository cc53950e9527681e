"""What the server tells its operators: Prometheus metrics and the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from imdb_sentiment.errors import MissingExtraError

try:
    from fastapi import Request, Response
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:  # pragma: no cover - exercised only without the serve extra
    raise MissingExtraError(exc.name or "prometheus-client", "serve") from None

if TYPE_CHECKING:
    from imdb_sentiment.inference.predictor import Prediction

log = logging.getLogger("imdb_sentiment.server")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Prometheus metrics, in a registry of their own so several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "imdb_sentiment_requests",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "imdb_sentiment_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "imdb_sentiment_batch_size",
            "Reviews per model call.",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.batch_requests = Histogram(
            "imdb_sentiment_batch_requests",
            "HTTP requests merged into one model call.",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.inference = Histogram(
            "imdb_sentiment_inference_seconds",
            "Time of one model call.",
            registry=r,
            buckets=_INFERENCE_BUCKETS,
        )
        self.labels = Counter(
            "imdb_sentiment_predictions", "Predicted labels.", ["label"], registry=r
        )
        self.confidence = Histogram(
            "imdb_sentiment_confidence",
            "Probability of the predicted label.",
            registry=r,
            buckets=(0.55, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
        )
        self.truncated = Counter(
            "imdb_sentiment_truncated_inputs",
            "Reviews cut to the model's maximum length.",
            registry=r,
        )
        self.model_info = Gauge(
            "imdb_sentiment_model_info",
            "The model being served.",
            ["version", "run", "backend", "precision", "package_version"],
            registry=r,
        )
        self.ready = Gauge("imdb_sentiment_model_ready", "1 once the model is loaded.", registry=r)

    def observe_predictions(self, predictions: Sequence[Prediction]) -> None:
        """Count the labels, confidences and truncated reviews of one answer."""
        for p in predictions:
            self.labels.labels(p.label).inc()
            self.confidence.observe(p.confidence)
            if p.truncated:
                self.truncated.inc()


async def measure_requests(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """HTTP middleware: count every request by route and status, and time it.

    It wraps everything else, so refusals made before routing (a body too large) are counted
    too, under the route ``unmatched``.
    """
    metrics: Metrics = request.app.state.metrics
    start = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        metrics.requests.labels(request.method, name, str(status)).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - start)
