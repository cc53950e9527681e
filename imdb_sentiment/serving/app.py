"""HTTP serving: a FastAPI app that batches concurrent requests through one Predictor.

``create_app(run)`` loads the model in the background (``/health`` answers at once, ``/ready``
once the model is loaded and warmed up). Requests that arrive within a short window are merged
into one model call by :class:`~imdb_sentiment.serving.batching.MicroBatcher`; inference runs on
a single worker thread so the event loop stays free. Bad input ends as a 4xx with a one-line JSON
``detail``, never a 5xx.

The app is wired here; the routes are in :mod:`~imdb_sentiment.serving.routes`, what they depend
on in :mod:`~imdb_sentiment.serving.deps`, the API shapes in
:mod:`~imdb_sentiment.serving.schemas` and the metrics in :mod:`~imdb_sentiment.serving.telemetry`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from imdb_sentiment import __version__
from imdb_sentiment.errors import ImdbSentimentError, MissingExtraError
from imdb_sentiment.serving.batching import MicroBatcher
from imdb_sentiment.serving.deps import BodySizeLimit, ModelState, resolve_api_key
from imdb_sentiment.serving.drift import DriftCollector, open_window
from imdb_sentiment.serving.routes import router
from imdb_sentiment.serving.schemas import ServeOptions, one_line
from imdb_sentiment.serving.telemetry import Metrics, log, measure_requests
from imdb_sentiment.text import NEGATIVE, POSITIVE

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
except ImportError as exc:  # pragma: no cover - exercised only without the serve extra
    raise MissingExtraError(exc.name or "fastapi", "serve") from None

if TYPE_CHECKING:
    from imdb_sentiment.inference.predictor import Predictor

WARM_UP = "warm-up: a short review to load kernels before the first request."


def model_version(model_dir: Path | None, run_path: Path) -> str:
    """``<run name>:<first 12 hex of the weights' SHA-256>``, or just the name."""
    from imdb_sentiment.data.files import file_sha256

    name = run_path.name if run_path.name != "model" else run_path.parent.name
    for candidate in ("model.safetensors", "pytorch_model.bin", "onnx/model.onnx"):
        path = (model_dir or run_path) / candidate
        if path.is_file():
            return f"{name}:{file_sha256(path)[:12]}"
    return name


def load_model(model: ModelState, options: ServeOptions, metrics: Metrics) -> None:
    """Load (unless preloaded) and warm up the model, and record what it is (blocking)."""
    from imdb_sentiment.inference.cpu_student import describe
    from imdb_sentiment.inference.predictor import Predictor

    p = model.preloaded or Predictor.from_path(
        model.run_path,
        backend=options.backend,
        precision=options.precision,
        batch_size=options.inference_batch_size,
        cpu_student=True,
    )
    if p.student is not None:
        log.warning(describe(p.student))
    p.predict([WARM_UP])
    model.version = model_version(p.model_dir, model.run_path)
    model.max_length = p.settings.max_length
    metrics.model_info.labels(
        model.version, model.run_path.name, p.backend, p.precision, __version__
    ).set(1)
    model.predictor = p


async def start_model(app: FastAPI) -> None:
    """Load the model off the event loop, then start batching: the app is ready from then on.

    A model that fails to load leaves the app serving ``/health``, with ``/ready`` and
    ``/predict`` saying why.
    """
    model: ModelState = app.state.model
    options: ServeOptions = app.state.options
    metrics: Metrics = app.state.metrics
    try:
        await asyncio.to_thread(load_model, model, options, metrics)
    except ImdbSentimentError as exc:
        model.error = str(exc)
        log.error("could not load the model: %s", exc)
        return
    except Exception as exc:  # keep serving /health and say why /ready is false
        model.error = f"{type(exc).__name__}: {one_line(str(exc))}"
        log.exception("could not load the model")
        return
    predictor = model.predictor
    assert predictor is not None
    batcher = MicroBatcher(
        predictor.predict,
        max_batch_size=options.max_batch_size,
        window_s=options.batch_window_ms / 1000,
        metrics=metrics,
        batching=options.batching,
    )
    batcher.start()
    model.batcher = batcher
    metrics.ready.set(1)
    await start_drift(model, options)


async def start_drift(model: ModelState, options: ServeOptions) -> None:
    """Open the drift window after the app is ready, so drift never delays readiness."""
    try:
        window, model.drift_off = await asyncio.to_thread(open_window, model.run_path, options)
    except Exception as exc:  # drift is a side job: serving goes on without it
        model.drift_off = f"drift monitoring is off: {type(exc).__name__}: {one_line(str(exc))}"
        log.exception("could not start drift monitoring")
        return
    if window is not None:
        # Started here, not in the loading thread: a shutdown that cancelled us starts nothing.
        window.start()
        model.drift = window


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the model in the background while the app serves; stop batching and the drift
    thread at shutdown."""
    task = asyncio.create_task(start_model(app))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        model: ModelState = app.state.model
        if model.batcher is not None:
            await model.batcher.stop()
        if model.drift is not None:
            await asyncio.to_thread(model.drift.stop)  # may wait for a refresh in progress


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 with the first validation error on one line, instead of FastAPI's error list."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return JSONResponse({"detail": "the request body is not valid JSON"}, status_code=422)
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and "json" not in content_type.lower():
        # FastAPI reads a body as JSON only under a JSON content type; otherwise it sees bytes.
        given = f"was {content_type!r}" if content_type else "is missing"
        return JSONResponse(
            {
                "detail": one_line(
                    f"send the body as JSON with the header Content-Type: application/json (the "
                    f"header {given})"
                )
            },
            status_code=422,
        )
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    reason = f"invalid request: {where}: {first.get('msg', 'not valid')}"
    return JSONResponse({"detail": one_line(reason)}, status_code=422)


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
    if run_path is not None:
        path = Path(run_path)
    elif predictor is not None:
        path = Path(predictor.model_dir or "model")
    else:
        raise ValueError("create_app needs a run path or a predictor")
    opts = options or ServeOptions()
    app = FastAPI(
        title="imdb-sentiment",
        version=__version__,
        description=f"Sentiment of movie reviews ({NEGATIVE}/{POSITIVE}) from a fine-tuned "
        "transformer. Send one review in `text` or several in `texts`.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load scripts from a CDN; routes.docs serves a page that does not.
        docs_url=None,
        redoc_url=None,
    )
    app.state.options = opts
    app.state.api_key = resolve_api_key(opts)
    app.state.metrics = Metrics()
    app.state.model = ModelState(run_path=path, preloaded=predictor)
    app.state.metrics.registry.register(DriftCollector(app.state.model))
    # Added last, so outermost: requests refused for their size are counted too.
    app.add_middleware(BodySizeLimit, max_bytes=opts.max_body_bytes)
    app.middleware("http")(measure_requests)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.include_router(router)
    return app


def serve(
    run_path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    options: ServeOptions | None = None,
    log_level: str = "info",
) -> None:
    """Run the app with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError:
        raise MissingExtraError("uvicorn", "serve") from None
    app = create_app(run_path, options)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
