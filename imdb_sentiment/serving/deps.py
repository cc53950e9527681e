"""What the routes depend on: the model's state, the options, the API key and request limits.

Each dependency reads what ``create_app`` put on ``app.state``, so the route functions are plain
module-level functions that can be called, and tested, without the app around them.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from imdb_sentiment.errors import MissingExtraError
from imdb_sentiment.serving.schemas import PredictRequest, ServeOptions
from imdb_sentiment.serving.telemetry import Metrics
from imdb_sentiment.text import clean_text

try:
    from fastapi import Depends, HTTPException, Request
    from fastapi.responses import JSONResponse
    from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
    from starlette.datastructures import Headers
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as exc:  # pragma: no cover - exercised only without the serve extra
    raise MissingExtraError(exc.name or "fastapi", "serve") from None

if TYPE_CHECKING:
    from imdb_sentiment.inference.predictor import Predictor
    from imdb_sentiment.monitoring.window import DriftWindow
    from imdb_sentiment.serving.batching import MicroBatcher

API_KEY_ENV = "IMDB_SENTIMENT_API_KEY"


@dataclass
class ModelState:
    """What the app knows about its model while it loads and serves.

    ``batcher`` is set once the model is loaded and warmed up: the app is ready from then on.
    """

    run_path: Path
    preloaded: Predictor | None = None
    predictor: Predictor | None = None
    batcher: MicroBatcher | None = None
    version: str = "unknown"
    error: str | None = None
    max_length: int = 0
    drift: DriftWindow | None = None
    drift_off: str | None = None


def resolve_api_key(options: ServeOptions) -> str | None:
    """``options.api_key``, else ``$IMDB_SENTIMENT_API_KEY``; ``None`` when auth is off."""
    # An explicit empty key switches auth off even when the environment sets one.
    key = options.api_key if options.api_key is not None else os.environ.get(API_KEY_ENV)
    return key or None


async def get_model(request: Request) -> ModelState:
    """The app's :class:`ModelState`."""
    state: ModelState = request.app.state.model
    return state


async def get_options(request: Request) -> ServeOptions:
    """The app's :class:`ServeOptions`."""
    options: ServeOptions = request.app.state.options
    return options


async def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus metrics."""
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_api_key(request: Request) -> str | None:
    """The key this app requires, or ``None`` when it requires none."""
    key: str | None = request.app.state.api_key
    return key


ModelDep = Annotated[ModelState, Depends(get_model)]
OptionsDep = Annotated[ServeOptions, Depends(get_options)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ApiKeyDep = Annotated[str | None, Depends(get_api_key)]

key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Needed when the server sets IMDB_SENTIMENT_API_KEY.",
)
bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token.")


async def require_api_key(
    header_key: Annotated[str | None, Depends(key_header)],
    token: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    api_key: ApiKeyDep,
) -> None:
    """Refuse with 401 unless the request carries ``api_key`` (when one is set).

    The key may come as ``X-API-Key`` or as ``Authorization: Bearer``; it is compared in
    constant time.
    """
    if api_key is None:
        return
    given = header_key or (token.credentials if token is not None else "")
    if not hmac.compare_digest(given.encode("utf-8", "replace"), api_key.encode("utf-8")):
        raise HTTPException(
            401,
            "missing or wrong API key: send it as X-API-Key or Authorization: Bearer",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def request_texts(body: PredictRequest, options: OptionsDep) -> list[str]:
    """The reviews of a ``/predict`` body, within the limits: 413 beyond them, 422 if malformed."""
    if (body.text is None) == (body.texts is None):
        raise HTTPException(422, "give exactly one of 'text' (one review) or 'texts' (a list)")
    texts = [body.text] if body.text is not None else list(body.texts or [])
    if not texts:
        raise HTTPException(422, "'texts' is empty: send at least one review")
    if len(texts) > options.max_texts:
        raise HTTPException(
            413, f"too many reviews: {len(texts)} > {options.max_texts} per request"
        )
    for i, text in enumerate(texts, start=1):
        if len(text) > options.max_chars:
            raise HTTPException(
                413, f"review {i} is too long: {len(text):,} > {options.max_chars:,} characters"
            )
        if not clean_text(text):  # what the model would read: invisible characters alone
            raise HTTPException(422, f"review {i} is empty")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise HTTPException(422, f"review {i} is not valid Unicode text") from None
    return texts


TextsDep = Annotated[list[str], Depends(request_texts)]


def ready_batcher(model: ModelState) -> MicroBatcher:
    """The model's batcher, or 503 (with why) while the model loads or if it failed to."""
    if model.batcher is None:
        raise HTTPException(503, model.error or "the model is still loading; retry shortly")
    return model.batcher


def _too_large(limit: int) -> str:
    return f"request body too large (limit {limit:,} bytes)"


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, before it is read into memory.

    A declared ``Content-Length`` over the limit (or not a number) is refused at once; a body
    without one (chunked) is counted as it arrives and refused once it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, unless its body is, or grows, too large."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await JSONResponse({"detail": _too_large(self.max_bytes)}, status_code=413)(
                    scope, receive, send
                )
                return
            await self.app(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Raised while the route reads the body, so it answers as any HTTPException.
                    raise HTTPException(413, _too_large(self.max_bytes))
            return message

        return counted
