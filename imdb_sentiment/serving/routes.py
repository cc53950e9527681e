"""The HTTP routes: ``POST /predict``, ``/health``, ``/ready``, ``/metrics``, ``/drift``,
``/docs`` and the web page."""

from __future__ import annotations

from functools import cache
from importlib import resources

from imdb_sentiment.errors import ImdbSentimentError, MissingExtraError
from imdb_sentiment.inference.cpu_student import summary
from imdb_sentiment.serving.deps import (
    ApiKeyDep,
    MetricsDep,
    ModelDep,
    OptionsDep,
    TextsDep,
    ready_batcher,
    require_api_key,
)
from imdb_sentiment.serving.docs_page import docs_html
from imdb_sentiment.serving.drift import drift_response
from imdb_sentiment.serving.schemas import (
    PREDICT_ERRORS,
    ErrorResponse,
    PredictionOut,
    PredictResponse,
    one_line,
)

try:
    from fastapi import APIRouter, Depends, HTTPException, Request, Response
    from fastapi.responses import HTMLResponse, JSONResponse
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
except ImportError as exc:  # pragma: no cover - exercised only without the serve extra
    raise MissingExtraError(exc.name or "fastapi", "serve") from None

router = APIRouter()


@router.post(
    "/predict",
    response_model=PredictResponse,
    responses=PREDICT_ERRORS,
    dependencies=[Depends(require_api_key)],
    summary="Classify one review or several",
)
async def predict(texts: TextsDep, model: ModelDep, metrics: MetricsDep) -> PredictResponse:
    """Label and calibrated probability for each review, with how much of it was read.

    Limits: at most `max_texts` reviews per request and `max_chars` characters per review
    (64 and 50,000 by default); beyond them the answer is 413.
    """
    batcher = ready_batcher(model)
    try:
        predictions = await batcher.submit(texts)
    except ImdbSentimentError as exc:
        raise HTTPException(422, one_line(str(exc))) from None
    metrics.observe_predictions(predictions)
    if model.drift is not None:
        model.drift.add(texts)  # tested later, on the drift thread
    return PredictResponse(
        predictions=[PredictionOut(**p.to_dict()) for p in predictions], model_version=model.version
    )


@router.get("/health", summary="Liveness", responses={503: {"model": ErrorResponse}})
async def health(model: ModelDep) -> JSONResponse:
    """200 while the process serves HTTP, also while the model loads; 503 once loading has
    failed, since no request can then be served (the container health check reads this)."""
    if model.error is not None:
        return JSONResponse({"status": "unhealthy", "detail": model.error}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/ready", summary="Readiness", responses={503: {"model": ErrorResponse}})
async def ready(model: ModelDep, options: OptionsDep, api_key: ApiKeyDep) -> JSONResponse:
    """200 once the model is loaded and warmed up, 503 before (or if loading failed)."""
    if model.batcher is None or model.predictor is None:
        detail = model.error or "the model is still loading"
        return JSONResponse({"ready": False, "detail": detail}, status_code=503)
    return JSONResponse(
        {
            "ready": True,
            "model_version": model.version,
            "backend": model.predictor.backend,
            "precision": model.predictor.precision,
            # What runs instead of the model on a CPU without native bf16, if anything.
            "cpu_student": summary(student) if (student := model.predictor.student) else None,
            "max_length": model.max_length,
            "batching": options.batching,
            "auth": api_key is not None,
        }
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    dependencies=[Depends(require_api_key)],
    response_class=Response,
    responses={401: {"model": ErrorResponse}},
)
async def prometheus(metrics: MetricsDep) -> Response:
    """Requests, latency, batch sizes, labels, confidence, truncation, model version."""
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/drift",
    summary="Latest drift report of recent requests",
    dependencies=[Depends(require_api_key)],
    responses={
        401: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
        409: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)
async def drift(model: ModelDep) -> JSONResponse:
    """The latest test of the recent request texts against the run's reference profile
    (the report of `imdb-sentiment drift`, plus the window's state in `window`).

    404 when drift monitoring is off (no reference, or `--drift-window 0`), 409 while the
    window holds too few texts or has not been tested yet, 503 while the model loads.
    """
    return drift_response(model)


@cache
def page_html() -> str:
    """The web page (``static/index.html``), read once."""
    return (resources.files("imdb_sentiment.serving") / "static" / "index.html").read_text("utf-8")


@router.get("/docs", include_in_schema=False, response_class=HTMLResponse)
async def docs(request: Request) -> HTMLResponse:
    """The API reference, self-contained so it works offline (Swagger UI needs a CDN)."""
    return HTMLResponse(docs_html(request.app.openapi()))


@router.get("/", include_in_schema=False, response_class=HTMLResponse)
async def page() -> HTMLResponse:
    """The web page: a review box that calls ``/predict``."""
    return HTMLResponse(page_html())
