"""The FastAPI server: predictions, limits, API key, health/ready/metrics, micro-batching."""

from __future__ import annotations

import asyncio
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

from imdb_sentiment.serving.app import API_KEY_ENV, ServeOptions, create_app  # noqa: E402


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


@pytest.mark.parametrize(("body", "status", "reason"), [
    ({"texts": ["a"] * 5}, 413, "too many reviews: 5 > 4"),
    ({"text": "x" * 2_001}, 413, "review 1 is too long"),
    ({}, 422, "exactly one of"),
    ({"text": "a", "texts": ["b"]}, 422, "exactly one of"),
    ({"texts": []}, 422, "empty"),
    ({"texts": ["fine", "  "]}, 422, "review 2 is empty"),
    ({"text": 3}, 422, "valid string"),
    ({"text": "a", "extra": 1}, 422, "extra"),
    ([1, 2], 422, "invalid request"),
])
def test_limits_and_bad_input_are_4xx_with_a_reason(client: TestClient, body: object,
                                                    status: int, reason: str) -> None:
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


def test_health_ready_docs_and_page(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] and ready["backend"] == "torch" and ready["max_length"] == 64
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
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
            return await asyncio.gather(*[
                c.post("/predict", json={"texts": [f"superb film number {i}", "awful"]})
                for i in range(n)])


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_are_merged(predictor: Predictor, batching: bool) -> None:
    opts = ServeOptions(batch_window_ms=100, max_batch_size=64, batching=batching)
    app = create_app(options=opts, predictor=predictor)
    responses = asyncio.run(_concurrent(app, 8))
    assert [r.status_code for r in responses] == [200] * 8
    assert all(r.json()["predictions"][1]["label"] == responses[0].json()["predictions"][1]["label"]
               for r in responses)
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
                return await asyncio.gather(*[c.post("/predict", json={"text": t})
                                              for t in texts])

    codes = [r.status_code for r in asyncio.run(go())]
    assert codes == [200, 200, 422, 200, 200]


def test_max_batch_size_splits_batches(predictor: Predictor) -> None:
    opts = ServeOptions(batch_window_ms=100, max_batch_size=4)
    app = create_app(options=opts, predictor=predictor)
    asyncio.run(_concurrent(app, 6))  # 12 reviews, at most 4 per call
    assert metric(app, "imdb_sentiment_batch_size_count") >= 3
    assert metric(app, "imdb_sentiment_batch_size_bucket", le="4.0") == metric(
        app, "imdb_sentiment_batch_size_count")


def test_model_that_fails_to_load_is_not_ready(tmp_path: Path) -> None:
    with TestClient(create_app(tmp_path / "missing")) as c:
        for _ in range(200):
            r = c.get("/ready")
            if "no such run" in r.text:
                break
            asyncio.run(asyncio.sleep(0.02))
        assert r.status_code == 503 and "no such run" in r.json()["detail"]
        assert c.get("/health").status_code == 200
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
