"""The FastAPI server: predictions, limits, API key, health/ready/metrics, micro-batching."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _serving import wait_ready
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app as cli_app
from imdb_sentiment.errors import ConfigError, ModelError
from imdb_sentiment.inference.predictor import Predictor

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from imdb_sentiment.serving.app import create_app  # noqa: E402
from imdb_sentiment.serving.deps import API_KEY_ENV  # noqa: E402
from imdb_sentiment.serving.schemas import ServeOptions  # noqa: E402


@pytest.fixture(scope="module")
def predictor(trained_run: Path) -> Predictor:
    return Predictor.from_path(trained_run, precision="fp32")


@pytest.fixture()
def client(predictor: Predictor) -> Iterator[TestClient]:
    opts = ServeOptions(max_texts=4, max_chars=2_000, api_key="")
    with TestClient(create_app(options=opts, predictor=predictor)) as c:
        wait_ready(c)
        yield c


def metric(app: fastapi.FastAPI, name: str, **labels: str) -> float:
    value = app.state.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


def test_predict_one_and_many(client: TestClient, predictor: Predictor) -> None:
    one = client.post("/predict", json={"text": "A wonderful, brilliant film."})
    assert one.status_code == 200
    body = one.json()
    assert len(body["predictions"]) == 1 and body["model_version"].startswith("tiny:")
    p = body["predictions"][0]
    assert p["label"] in ("positive", "negative")
    assert 0 <= p["positive_probability"] <= 1 and p["read_fraction"] == 1.0

    texts = ["awful boring waste", "superb moving masterpiece", "dull " * 100, "loved it"]
    many = client.post("/predict", json={"texts": texts}).json()["predictions"]
    direct = predictor.predict(texts)
    assert [m["label"] for m in many] == [d.label for d in direct]  # order kept
    assert many[2]["truncated"] and many[2]["read_fraction"] < 1


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"texts": ["a"] * 5}, 413, "too many reviews: 5 > 4"),
        ({"text": "x" * 2_001}, 413, "review 1 is too long"),
        ({}, 422, "exactly one of"),
        ({"text": "a", "texts": ["b"]}, 422, "exactly one of"),
        ({"texts": []}, 422, "empty"),
        ({"texts": ["fine", "  "]}, 422, "review 2 is empty"),
        ({"text": "\u200b\u200c\u2060\ufeff "}, 422, "review 1 is empty"),  # invisible only
        ({"texts": ["ok", "<br />\u200b"]}, 422, "review 2 is empty"),
        ({"text": 3}, 422, "valid string"),
        ({"text": "a", "extra": 1}, 422, "extra"),
        ([1, 2], 422, "invalid request"),
    ],
)
def test_limits_and_bad_input_are_4xx_with_a_reason(
    client: TestClient, body: object, status: int, reason: str
) -> None:
    r = client.post("/predict", json=body)
    assert r.status_code == status
    assert reason in r.json()["detail"]


def test_malformed_bodies(client: TestClient) -> None:
    headers = {"content-type": "application/json"}
    r = client.post("/predict", content=b'{"text": "unfinished', headers=headers)
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    r = client.post("/predict", content=b'{"text": "\\ud800 lone surrogate"}', headers=headers)
    assert r.status_code == 422 and "Unicode" in r.json()["detail"]
    r = client.post("/predict", content=b"x" * 600_000, headers=headers)
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    # Valid JSON without a JSON content type: the answer must name the header.
    for extra in ({}, {"content-type": "text/plain"}):
        r = client.post("/predict", content=b'{"text": "great film"}', headers=extra)
        assert r.status_code == 422 and "Content-Type: application/json" in r.json()["detail"]


def test_health_ready_docs_and_page(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] and ready["backend"] == "torch" and ready["max_length"] == 64
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/predict" in docs.text and "/openapi.json" in docs.text
    # Offline means nothing fetched from elsewhere: no script, style or link off this server.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", docs.text), docs.text[:500]
    assert "<script" not in docs.text
    page = client.get("/")
    assert page.status_code == 200 and "<textarea" in page.text and "predict" in page.text


def test_metrics_cover_requests_batches_labels_and_model(client: TestClient) -> None:
    client.post("/predict", json={"texts": ["superb", "awful " * 100]})
    client.post("/predict", json={"texts": ["a"] * 9})
    text = client.get("/metrics").text
    for needle in (
        'imdb_sentiment_requests_total{method="POST",route="/predict",status="200"}',
        'imdb_sentiment_requests_total{method="POST",route="/predict",status="413"}',
        "imdb_sentiment_request_duration_seconds_bucket",
        "imdb_sentiment_batch_size_bucket",
        "imdb_sentiment_batch_requests_bucket",
        "imdb_sentiment_predictions_total{label=",
        "imdb_sentiment_confidence_bucket",
        'imdb_sentiment_model_info{backend="torch"',
        "imdb_sentiment_model_ready 1.0",
    ):
        assert needle in text, needle
    assert metric(client.app, "imdb_sentiment_truncated_inputs_total") >= 1  # type: ignore[arg-type]


def test_api_key(predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, "s3cret")
    with TestClient(create_app(predictor=predictor)) as c:
        wait_ready(c)
        body = {"text": "great"}
        assert c.post("/predict", json=body).status_code == 401
        assert "API key" in c.post("/predict", json=body).json()["detail"]
        assert c.post("/predict", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/predict", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        bearer = {"Authorization": "Bearer s3cret"}
        assert c.post("/predict", json=body, headers=bearer).status_code == 200
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers=bearer).status_code == 200
        assert c.get("/health").status_code == 200  # probes need no key
        assert c.get("/ready").json()["auth"] is True


async def _concurrent(app: fastapi.FastAPI, n: int) -> list[httpx.Response]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            while (await c.get("/ready")).status_code != 200:
                await asyncio.sleep(0.02)
            return await asyncio.gather(
                *[
                    c.post("/predict", json={"texts": [f"superb film number {i}", "awful"]})
                    for i in range(n)
                ]
            )


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_are_merged(predictor: Predictor, batching: bool) -> None:
    opts = ServeOptions(batch_window_ms=100, max_batch_size=64, batching=batching)
    app = create_app(options=opts, predictor=predictor)
    responses = asyncio.run(_concurrent(app, 8))
    assert [r.status_code for r in responses] == [200] * 8
    assert all(
        r.json()["predictions"][1]["label"] == responses[0].json()["predictions"][1]["label"]
        for r in responses
    )
    calls = metric(app, "imdb_sentiment_batch_requests_count")
    assert metric(app, "imdb_sentiment_batch_requests_sum") == 8
    assert metric(app, "imdb_sentiment_batch_size_sum") == 16
    if batching:
        assert calls < 8  # requests shared model calls
        assert metric(app, "imdb_sentiment_batch_size_bucket", le="2.0") < calls
    else:
        assert calls == 8


class _Poisoned:
    """A predictor that refuses any batch holding the word 'poison'."""

    def __init__(self, inner: Predictor) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def predict(self, texts: list[str]) -> list[object]:
        from imdb_sentiment.errors import DataError

        if any("poison" in t for t in texts):
            raise DataError("this review is poisoned")
        return self.inner.predict(texts)  # type: ignore[return-value]


def test_one_bad_request_does_not_fail_the_batch(predictor: Predictor) -> None:
    opts = ServeOptions(batch_window_ms=100, max_batch_size=64)
    app = create_app(options=opts, predictor=_Poisoned(predictor))  # type: ignore[arg-type]

    async def go() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                while (await c.get("/ready")).status_code != 200:
                    await asyncio.sleep(0.02)
                texts = ["superb", "awful", "poison pill", "great", "dull"]
                return await asyncio.gather(*[c.post("/predict", json={"text": t}) for t in texts])

    codes = [r.status_code for r in asyncio.run(go())]
    assert codes == [200, 200, 422, 200, 200]


def test_max_batch_size_splits_batches(predictor: Predictor) -> None:
    opts = ServeOptions(batch_window_ms=100, max_batch_size=4)
    app = create_app(options=opts, predictor=predictor)
    asyncio.run(_concurrent(app, 6))  # 12 reviews, at most 4 per call
    assert metric(app, "imdb_sentiment_batch_size_count") >= 3
    assert metric(app, "imdb_sentiment_batch_size_bucket", le="4.0") == metric(
        app, "imdb_sentiment_batch_size_count"
    )


def test_model_that_fails_to_load_is_not_ready(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path / "missing")) as c:
        for _ in range(200):
            r = c.get("/ready")
            if "no such run" in r.text:
                break
            asyncio.run(asyncio.sleep(0.02))
        assert r.status_code == 503 and "no such run" in r.json()["detail"]
        # No model can serve: the container health check (Dockerfile HEALTHCHECK on /health)
        # must see it, not report healthy while every /predict is 503.
        health = c.get("/health")
        assert health.status_code == 503 and "no such run" in health.json()["detail"]
        p = c.post("/predict", json={"text": "great"})
        assert p.status_code == 503 and "no such run" in p.json()["detail"]


def test_serve_cli_checks_before_starting(trained_run: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli_app, ["serve", str(tmp_path / "nope")])
    assert missing.exit_code == ModelError.exit_code and "no such run" in missing.output
    no_onnx = runner.invoke(cli_app, ["serve", str(trained_run), "--backend", "onnx"])
    assert no_onnx.exit_code == ModelError.exit_code and "imdb-sentiment export" in no_onnx.output
    bad = runner.invoke(cli_app, ["serve", str(trained_run), "--max-texts", "0"])
    assert bad.exit_code == ConfigError.exit_code


# ------------------------------------------------ route functions and dependencies, called directly


def test_api_key_dependency_alone() -> None:
    from fastapi import HTTPException
    from fastapi.security import HTTPAuthorizationCredentials

    from imdb_sentiment.serving.deps import require_api_key

    def check(header: str | None, bearer: str | None, key: str | None) -> None:
        token = HTTPAuthorizationCredentials(scheme="Bearer", credentials=bearer or "")
        token = token if bearer else None
        asyncio.run(require_api_key(header_key=header, token=token, api_key=key))

    check(None, None, None)  # no key set: anyone may call
    check("s3cret", None, "s3cret")
    check(None, "s3cret", "s3cret")
    for header, bearer in (
        (None, None),
        ("wrong", None),
        (None, "wrong"),
        ("s3cre", None),
        ("s3cret\u00e9", None),
    ):
        with pytest.raises(HTTPException) as refused:
            check(header, bearer, "s3cret")
        assert refused.value.status_code == 401
        assert refused.value.headers == {"WWW-Authenticate": "Bearer"}


def test_api_key_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    from imdb_sentiment.serving.deps import resolve_api_key

    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert resolve_api_key(ServeOptions()) == "from-env"
    assert resolve_api_key(ServeOptions(api_key="given")) == "given"
    assert resolve_api_key(ServeOptions(api_key="")) is None  # explicit empty: auth off
    monkeypatch.delenv(API_KEY_ENV)
    assert resolve_api_key(ServeOptions()) is None


def test_request_texts_dependency_alone() -> None:
    from fastapi import HTTPException

    from imdb_sentiment.serving.deps import request_texts
    from imdb_sentiment.serving.schemas import PredictRequest

    opts = ServeOptions(max_texts=2, max_chars=10)

    def texts(**body: object) -> list[str]:
        return asyncio.run(request_texts(PredictRequest.model_validate(body), opts))

    assert texts(text="good") == ["good"]
    assert texts(texts=["a", "b"]) == ["a", "b"]
    for body, status, reason in (
        ({"texts": ["a"] * 3}, 413, "too many reviews: 3 > 2"),
        ({"text": "x" * 11}, 413, "11 > 10 characters"),
        ({"texts": ["ok", " "]}, 422, "review 2 is empty"),
        ({}, 422, "exactly one of"),
    ):
        with pytest.raises(HTTPException) as refused:
            texts(**body)
        assert (refused.value.status_code, reason in refused.value.detail) == (status, True)


def test_routes_before_the_model_is_loaded(tmp_path: Path) -> None:
    from fastapi import HTTPException

    from imdb_sentiment.serving import routes
    from imdb_sentiment.serving.deps import ModelState
    from imdb_sentiment.serving.telemetry import Metrics

    model = ModelState(run_path=tmp_path)
    loading = asyncio.run(routes.ready(model=model, options=ServeOptions(), api_key=None))
    assert loading.status_code == 503 and b"still loading" in loading.body
    model.error = "no such run: nope"
    with pytest.raises(HTTPException) as refused:
        asyncio.run(routes.predict(texts=["great"], model=model, metrics=Metrics()))
    assert refused.value.status_code == 503 and refused.value.detail == "no such run: nope"


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    # Without Content-Length the body used to be read whole, however large, before any check.
    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(60):
            yield b"x" * 10_000
        yield b'"}'

    r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    small = client.post(
        "/predict",
        content=iter([b'{"text": ', b'"fine film"}']),
        headers={"content-type": "application/json"},
    )
    assert small.status_code == 200
    r = client.post("/predict", content=b"{}", headers={"content-length": "12a"})
    assert r.status_code == 413
