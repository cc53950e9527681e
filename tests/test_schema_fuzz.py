"""Fuzz the server through its own OpenAPI schema (schemathesis): no 5xx, no crash.

The app runs in a real uvicorn on loopback with the tiny model, so every request goes through
HTTP parsing, validation, the micro-batcher and the model. The number of examples is bounded to
keep the suite fast; raise ``FUZZ_EXAMPLES`` for a longer search.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from _serving import live_server  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from imdb_sentiment.inference.predictor import Predictor  # noqa: E402
from imdb_sentiment.serving.app import create_app  # noqa: E402
from imdb_sentiment.serving.schemas import ServeOptions  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))


@pytest.fixture(scope="module")
def api_schema(trained_run: Path) -> Iterator[Any]:
    predictor = Predictor.from_path(trained_run, precision="fp32")
    # Small limits so the fuzzer reaches the 413 paths as well as the happy path.
    opts = ServeOptions(max_texts=8, max_chars=400, api_key="", batch_window_ms=1)
    with live_server(create_app(options=opts, predictor=predictor)) as base:
        yield schemathesis.openapi.from_url(f"{base}/openapi.json")


# Negative data (invalid bodies, wrong types, bad headers) only exists where there are inputs.
CASES = [
    ("/predict", "POST", "positive"),
    ("/predict", "POST", "negative"),
    ("/metrics", "GET", "positive"),
    ("/metrics", "GET", "negative"),
    ("/health", "GET", "positive"),
    ("/ready", "GET", "positive"),
]


# schemathesis' own pytest plugin (schema.parametrize) does not work with pytest 9 yet, so the
# operations are driven with hypothesis directly; the checks are schemathesis' own.
@pytest.mark.parametrize(("path", "method", "mode"), CASES)
def test_api_never_fails_on_any_input(api_schema: Any, path: str, method: str, mode: str) -> None:
    from schemathesis import GenerationMode

    operation = api_schema[path][method]
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    statuses: list[int] = []

    @given(case=operation.as_strategy(generation_mode=generation))
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def fuzz(case: Any) -> None:
        response = case.call_and_validate(
            checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
            timeout=30,
        )
        statuses.append(response.status_code)

    fuzz()
    assert statuses and max(statuses) < 500
