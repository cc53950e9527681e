"""HTTP serving: a FastAPI app that batches concurrent requests through one Predictor.

``create_app(run)`` loads the model in the background (``/health`` answers at once, ``/ready``
once the model is loaded and warmed up). Requests that arrive within a short window are merged
into one model call by :class:`MicroBatcher`; inference runs on a single worker thread so the
event loop stays free. Bad input ends as a 4xx with a one-line JSON ``detail``, never a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imdb_sentiment import __version__
from imdb_sentiment.errors import ImdbSentimentError, MissingExtraError

try:
    from fastapi import Depends, FastAPI, HTTPException, Request, Response
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
    )
    from pydantic import BaseModel, ConfigDict, Field
except ImportError as exc:  # pragma: no cover - exercised only without the serve extra
    raise MissingExtraError(exc.name or "fastapi", "serve") from None

if TYPE_CHECKING:
    from imdb_sentiment.inference.predictor import Prediction, Predictor

API_KEY_ENV = "IMDB_SENTIMENT_API_KEY"
log = logging.getLogger("imdb_sentiment.server")


@dataclass
class ServeOptions:
    """Limits and batching knobs of the server (the ``serve`` flags)."""

    backend: str = "torch"
    precision: str = "auto"
    max_texts: int = 64
    max_chars: int = 50_000
    max_batch_size: int = 32
    batch_window_ms: float = 5.0
    batching: bool = True
    api_key: str | None = None
    inference_batch_size: int = 32
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_body_bytes(self) -> int:
        # Room for every text at its limit, escaped, plus JSON punctuation.
        return self.max_texts * (self.max_chars * 6 + 16) + 4096


# --------------------------------------------------------------------------------- API schema


class PredictRequest(BaseModel):
    """One review in ``text`` or several in ``texts`` (not both)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"text": "A wonderful, moving film."},
            {"texts": ["Loved it.", "Two hours I will never get back."]},
        ]},
    )
    text: str | None = Field(default=None, description="One review.")
    texts: list[str] | None = Field(default=None, description="Several reviews.")


class PredictionOut(BaseModel):
    """The verdict on one review."""

    label: str = Field(description="negative or positive")
    positive_probability: float = Field(description="Calibrated probability of positive.")
    confidence: float = Field(description="Probability of the predicted label.")
    n_tokens: int = Field(description="Tokens in the whole review.")
    truncated: bool = Field(description="Whether the review was cut to the model's length.")
    read_fraction: float = Field(description="Share of the review's tokens the model read.")


class PredictResponse(BaseModel):
    """Predictions in request order."""

    predictions: list[PredictionOut]
    model_version: str


class ErrorResponse(BaseModel):
    """Why a request was refused."""

    detail: str


# ------------------------------------------------------------------------------------ metrics


class Metrics:
    """Prometheus metrics, in a registry of their own so several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("imdb_sentiment_requests", "HTTP requests by route and status.",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram(
            "imdb_sentiment_request_duration_seconds", "HTTP request latency by route.",
            ["route"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batch_size = Histogram(
            "imdb_sentiment_batch_size", "Reviews per model call.", registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_requests = Histogram(
            "imdb_sentiment_batch_requests", "HTTP requests merged into one model call.",
            registry=r, buckets=(1, 2, 4, 8, 16, 32, 64))
        self.inference = Histogram(
            "imdb_sentiment_inference_seconds", "Time of one model call.", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.labels = Counter("imdb_sentiment_predictions", "Predicted labels.", ["label"],
                              registry=r)
        self.confidence = Histogram(
            "imdb_sentiment_confidence", "Probability of the predicted label.", registry=r,
            buckets=(0.55, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0))
        self.truncated = Counter("imdb_sentiment_truncated_inputs",
                                 "Reviews cut to the model's maximum length.", registry=r)
        self.model_info = Gauge("imdb_sentiment_model_info", "The model being served.",
                                ["version", "run", "backend", "precision", "package_version"],
                                registry=r)
        self.ready = Gauge("imdb_sentiment_model_ready", "1 once the model is loaded.",
                           registry=r)

    def observe_predictions(self, predictions: Sequence[Prediction]) -> None:
        for p in predictions:
            self.labels.labels(p.label).inc()
            self.confidence.observe(p.confidence)
            if p.truncated:
                self.truncated.inc()


# ----------------------------------------------------------------------------- micro-batching


@dataclass
class _Pending:
    texts: list[str]
    future: asyncio.Future[list[Prediction]]


class MicroBatcher:
    """Merge requests that arrive within ``window_s`` into one model call of at most
    ``max_batch_size`` reviews.

    While a call runs, new requests queue up and form the next batch, so under load batches
    grow without anyone waiting for the window; a lone request waits at most ``window_s``.
    """

    def __init__(self, predict: Callable[[list[str]], list[Prediction]], *,
                 max_batch_size: int, window_s: float, metrics: Metrics,
                 batching: bool = True) -> None:
        self.predict = predict
        self.max_batch_size = max(1, max_batch_size)
        self.window_s = max(0.0, window_s)
        self.metrics = metrics
        self.batching = batching
        # One inference thread: torch/onnxruntime already use every core for one call.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._carry: _Pending | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.batching and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str]) -> list[Prediction]:
        """Predictions for ``texts``, computed together with whatever arrives alongside."""
        if not self.batching:
            return (await self._run([texts]))[0]
        future: asyncio.Future[list[Prediction]] = asyncio.get_running_loop().create_future()
        await self.queue.put(_Pending(texts, future))
        return await future

    async def _run(self, groups: list[list[str]]) -> list[list[Prediction]]:
        flat = [t for g in groups for t in g]
        self.metrics.batch_size.observe(len(flat))
        self.metrics.batch_requests.observe(len(groups))
        start = time.perf_counter()
        predictions = await asyncio.get_running_loop().run_in_executor(
            self.executor, self.predict, flat)
        self.metrics.inference.observe(time.perf_counter() - start)
        out, at = [], 0
        for g in groups:
            out.append(predictions[at : at + len(g)])
            at += len(g)
        return out

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if timeout is None:
            return await self.queue.get()
        if timeout <= 0:
            return self.queue.get_nowait() if not self.queue.empty() else None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _collect(self) -> list[_Pending]:
        first = await self._next(None)
        assert first is not None
        items, n = [first], len(first.texts)
        deadline = time.perf_counter() + self.window_s
        while n < self.max_batch_size:
            item = await self._next(deadline - time.perf_counter())
            if item is None:
                break
            if n + len(item.texts) > self.max_batch_size:
                self._carry = item  # starts the next batch
                break
            items.append(item)
            n += len(item.texts)
        return [i for i in items if not i.future.done()]  # drop requests whose client left

    async def _loop(self) -> None:
        while True:
            items = await self._collect()
            if items:
                await self._answer(items)

    async def _answer(self, items: list[_Pending]) -> None:
        try:
            results = await self._run([i.texts for i in items])
        except Exception as exc:
            if len(items) > 1:
                # One request's reviews must not fail the others merged with it: retry alone.
                for i in items:
                    await self._answer([i])
                return
            if not items[0].future.done():  # the request maps it to an HTTP answer
                items[0].future.set_exception(exc)
            return
        for i, result in zip(items, results, strict=True):
            if not i.future.done():
                i.future.set_result(result)


# --------------------------------------------------------------------------------------- app


class _State:
    """What the app knows about its model while it loads and serves."""

    def __init__(self) -> None:
        self.predictor: Predictor | None = None
        self.batcher: MicroBatcher | None = None
        self.version = "unknown"
        self.error: str | None = None
        self.max_length = 0


def model_version(model_dir: Path | None, run_path: Path) -> str:
    """``<run name>:<first 12 hex of the weights' SHA-256>``, or just the name."""
    from imdb_sentiment.data.prepare import file_sha256

    name = run_path.name if run_path.name != "model" else run_path.parent.name
    for candidate in ("model.safetensors", "pytorch_model.bin", "onnx/model.onnx"):
        path = (model_dir or run_path) / candidate
        if path.is_file():
            return f"{name}:{file_sha256(path)[:12]}"
    return name


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_request(body: PredictRequest, opts: ServeOptions) -> list[str]:
    if (body.text is None) == (body.texts is None):
        raise HTTPException(422, "give exactly one of 'text' (one review) or 'texts' (a list)")
    texts = [body.text] if body.text is not None else list(body.texts or [])
    if not texts:
        raise HTTPException(422, "'texts' is empty: send at least one review")
    if len(texts) > opts.max_texts:
        raise HTTPException(413, f"too many reviews: {len(texts)} > {opts.max_texts} per request")
    for i, text in enumerate(texts, start=1):
        if len(text) > opts.max_chars:
            raise HTTPException(
                413, f"review {i} is too long: {len(text):,} > {opts.max_chars:,} characters")
        if not text.strip():
            raise HTTPException(422, f"review {i} is empty")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise HTTPException(422, f"review {i} is not valid Unicode text") from None
    return texts


def _page() -> str:
    return (resources.files("imdb_sentiment.serving") / "static" / "index.html").read_text("utf-8")


def create_app(
    run_path: str | Path | None = None,
    options: ServeOptions | None = None,
    *,
    predictor: Predictor | None = None,
) -> FastAPI:
    """The FastAPI app serving ``run_path`` (or an already loaded ``predictor``).

    The API key comes from ``options.api_key`` or, when that is unset, the environment variable
    ``IMDB_SENTIMENT_API_KEY``; with a key, ``/predict`` and ``/metrics`` need it.
    """
    opts = options or ServeOptions()
    # An explicit empty key switches auth off even when the environment sets one.
    api_key = (opts.api_key if opts.api_key is not None else os.environ.get(API_KEY_ENV)) or None
    if run_path is None and predictor is None:
        raise ValueError("create_app needs a run path or a predictor")
    path = Path(run_path) if run_path is not None else Path(predictor.model_dir or "model")  # type: ignore[union-attr]
    metrics = Metrics()
    state = _State()

    def load() -> None:
        from imdb_sentiment.inference.predictor import Predictor

        p = predictor or Predictor.from_path(path, backend=opts.backend, precision=opts.precision,
                                             batch_size=opts.inference_batch_size, **opts.extra)
        p.predict(["warm-up: a short review to load kernels before the first request."])
        state.version = model_version(p.model_dir, path)
        state.max_length = p.settings.max_length
        metrics.model_info.labels(state.version, path.name, p.backend, p.precision,
                                  __version__).set(1)
        state.predictor = p

    def run_model(texts: list[str]) -> list[Prediction]:
        assert state.predictor is not None
        return state.predictor.predict(texts)

    async def load_in_background() -> None:
        try:
            await asyncio.to_thread(load)
        except ImdbSentimentError as exc:
            state.error = str(exc)
            log.error("could not load the model: %s", exc)
            return
        except Exception as exc:  # keep serving /health and say why /ready is false
            state.error = f"{type(exc).__name__}: {_one_line(str(exc))}"
            log.exception("could not load the model")
            return
        batcher = MicroBatcher(run_model, max_batch_size=opts.max_batch_size,
                               window_s=opts.batch_window_ms / 1000, metrics=metrics,
                               batching=opts.batching)
        batcher.start()
        state.batcher = batcher
        metrics.ready.set(1)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(load_in_background())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if state.batcher is not None:
                await state.batcher.stop()

    app = FastAPI(
        title="imdb-sentiment",
        version=__version__,
        description="Sentiment of movie reviews (negative/positive) from a fine-tuned "
                    "transformer. Send one review in `text` or several in `texts`.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.model = state
    app.state.options = opts

    key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="Needed when the server sets IMDB_SENTIMENT_API_KEY.")
    bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token.")

    def require_key(
        header_key: str | None = Depends(key_header),
        token: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> None:
        if api_key is None:
            return
        given = header_key or (token.credentials if token is not None else "")
        if not hmac.compare_digest(given.encode("utf-8", "replace"), api_key.encode("utf-8")):
            raise HTTPException(
                401, "missing or wrong API key: send it as X-API-Key or Authorization: Bearer",
                headers={"WWW-Authenticate": "Bearer"})

    @app.middleware("http")
    async def measure(request: Request,
                      call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        status = 500
        length = request.headers.get("content-length")
        try:
            if length is not None and (not length.isdigit()
                                       or int(length) > opts.max_body_bytes):
                status = 413
                return JSONResponse(
                    {"detail": f"request body too large (limit {opts.max_body_bytes:,} bytes)"},
                    status_code=413)
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            name = getattr(route, "path", "unmatched")
            metrics.requests.labels(request.method, name, str(status)).inc()
            metrics.latency.labels(name).observe(time.perf_counter() - start)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return JSONResponse({"detail": "the request body is not valid JSON"}, status_code=422)
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        reason = f"invalid request: {where}: {first.get('msg', 'not valid')}"
        return JSONResponse({"detail": _one_line(reason)}, status_code=422)

    error_responses: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "Body could not be read (not UTF-8)"},
        401: {"model": ErrorResponse, "description": "API key missing or wrong"},
        413: {"model": ErrorResponse, "description": "Too many reviews or a review too long"},
        422: {"model": ErrorResponse, "description": "Not a valid request"},
        503: {"model": ErrorResponse, "description": "Model not loaded yet"},
    }

    @app.post("/predict", response_model=PredictResponse, responses=error_responses,
              dependencies=[Depends(require_key)], summary="Classify one review or several")
    async def predict(body: PredictRequest) -> PredictResponse:
        """Label and calibrated probability for each review, with how much of it was read.

        Limits: at most `max_texts` reviews per request and `max_chars` characters per review
        (64 and 50,000 by default); beyond them the answer is 413.
        """
        texts = _check_request(body, opts)
        if state.batcher is None:
            raise HTTPException(503, state.error or "the model is still loading; retry shortly")
        try:
            predictions = await state.batcher.submit(texts)
        except ImdbSentimentError as exc:
            raise HTTPException(422, _one_line(str(exc))) from None
        metrics.observe_predictions(predictions)
        return PredictResponse(
            predictions=[PredictionOut(**p.to_dict()) for p in predictions],
            model_version=state.version)

    @app.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        """Always 200 while the process serves HTTP, even before the model is loaded."""
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness", responses={503: {"model": ErrorResponse}})
    async def ready() -> JSONResponse:
        """200 once the model is loaded and warmed up, 503 before (or if loading failed)."""
        if state.batcher is None:
            detail = state.error or "the model is still loading"
            return JSONResponse({"ready": False, "detail": detail}, status_code=503)
        assert state.predictor is not None
        return JSONResponse({"ready": True, "model_version": state.version,
                             "backend": state.predictor.backend,
                             "precision": state.predictor.precision,
                             "max_length": state.max_length,
                             "batching": opts.batching,
                             "auth": api_key is not None})

    @app.get("/metrics", summary="Prometheus metrics", dependencies=[Depends(require_key)],
             response_class=Response, responses={401: {"model": ErrorResponse}})
    async def prometheus() -> Response:
        """Requests, latency, batch sizes, labels, confidence, truncation, model version."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(_page())

    return app


def serve(run_path: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
          options: ServeOptions | None = None, log_level: str = "info") -> None:
    """Run the app with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise MissingExtraError("uvicorn", "serve") from None
    app = create_app(run_path, options)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
