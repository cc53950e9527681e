"""The server's options and the shapes of its HTTP API (requests, answers, errors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imdb_sentiment.errors import MissingExtraError
from imdb_sentiment.text import NEGATIVE, POSITIVE

try:
    from pydantic import BaseModel, ConfigDict, Field
except ImportError as exc:  # pragma: no cover - exercised only without the serve extra
    raise MissingExtraError(exc.name or "pydantic", "serve") from None


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
    drift_window: int = 500
    """Recent texts the drift monitor tests (0: drift monitoring off)."""
    drift_refresh_s: float = 60.0
    """Seconds between two drift tests of the window, on a background thread."""

    @property
    def max_body_bytes(self) -> int:
        """The largest request body accepted (413 beyond), before it is read."""
        # Room for every text at its limit, escaped, plus JSON punctuation.
        return self.max_texts * (self.max_chars * 6 + 16) + 4096


class PredictRequest(BaseModel):
    """One review in ``text`` or several in ``texts`` (not both)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "A wonderful, moving film."},
                {"texts": ["Loved it.", "Two hours I will never get back."]},
            ]
        },
    )
    text: str | None = Field(default=None, description="One review.")
    texts: list[str] | None = Field(default=None, description="Several reviews.")


class PredictionOut(BaseModel):
    """The verdict on one review."""

    label: str = Field(description=f"{NEGATIVE} or {POSITIVE}")
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


PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Body could not be read (not UTF-8)"},
    401: {"model": ErrorResponse, "description": "API key missing or wrong"},
    413: {"model": ErrorResponse, "description": "Too many reviews or a review too long"},
    422: {"model": ErrorResponse, "description": "Not a valid request"},
    503: {"model": ErrorResponse, "description": "Model not loaded yet"},
}
"""The refusals ``POST /predict`` documents in its OpenAPI schema."""


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut to ``limit`` characters: an error ``detail`` fit for a log."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
