"""Drift monitoring in the server: the window of request texts, GET /drift, the gauges on
/metrics, the serve flags, bounded memory under load and a clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _serving import run_with_reference, wait_ready
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app as cli_app
from imdb_sentiment.errors import ConfigError
from imdb_sentiment.inference.predictor import Predictor
from tests.conftest import synthetic_frame

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from imdb_sentiment.serving.app import create_app  # noqa: E402
from imdb_sentiment.serving.schemas import ServeOptions  # noqa: E402


@pytest.fixture(scope="module")
def ref_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_with_reference(trained_run, tmp_path_factory.mktemp("served") / "run")


@pytest.fixture(scope="module")
def predictor(ref_run: Path) -> Predictor:
    return Predictor.from_path(ref_run, precision="fp32")


def _app(run: Path, predictor: Predictor, **options: Any) -> fastapi.FastAPI:
    return create_app(run, ServeOptions(api_key="", **options), predictor=predictor)


def _drift_started(client: TestClient) -> httpx.Response:
    """Poll /drift until the window is opened (it opens just after the model is ready)."""
    wait_ready(client)
    deadline = time.monotonic() + 30
    while (r := client.get("/drift")).status_code == 503:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.02)
    return r


@pytest.fixture()
def client(ref_run: Path, predictor: Predictor) -> Iterator[TestClient]:
    # An hour between refreshes: the test refreshes by hand, so every report is deterministic.
    with TestClient(_app(ref_run, predictor, drift_window=30, drift_refresh_s=3600)) as c:
        _drift_started(c)
        yield c


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_drift_report_on_recent_requests_and_its_gauges(client: TestClient) -> None:
    window = client.app.state.model.drift  # type: ignore[attr-defined]
    r = client.get("/drift")
    assert r.status_code == 409 and "holds 0 texts" in r.json()["detail"]
    assert "at least 30" in r.json()["detail"]
    metrics = _samples(client.get("/metrics").text)
    assert metrics[("imdb_sentiment_drift_enabled", ())] == 1.0
    assert ("imdb_sentiment_drift_any", ()) not in metrics  # no report yet, no verdict

    texts = synthetic_frame(40, seed=11)["text"].tolist()
    for i in range(0, 40, 4):
        assert client.post("/predict", json={"texts": texts[i : i + 4]}).status_code == 200
    assert len(window) == 30 and window.seen == 40
    r = client.get("/drift")
    assert r.status_code == 409 and "no drift report yet" in r.json()["detail"]
    assert window.refresh() is not None  # what the background thread does every refresh_s

    body = client.get("/drift").json()
    assert body["drifted"] is False and body["n_reviews"] == 30
    assert body["window"]["texts"] == 30 and body["window"]["refreshes"] == 1
    assert {s["name"] for s in body["signals"]} >= {"token_length", "embedding", "vocabulary"}
    metrics = _samples(client.get("/metrics").text)
    assert metrics[("imdb_sentiment_drift_any", ())] == 0.0
    assert metrics[("imdb_sentiment_drift_window_texts", ())] == 30
    assert metrics[("imdb_sentiment_drift_detected", (("signal", "token_length"),))] == 0.0
    assert 0 < metrics[("imdb_sentiment_drift_p_value", (("signal", "token_length"),))] <= 1
    assert ("imdb_sentiment_drift_p_value", (("signal", "vocabulary"),)) not in metrics
    assert ("imdb_sentiment_drift_statistic", (("signal", "vocabulary"),)) in metrics
    assert (
        abs(metrics[("imdb_sentiment_drift_last_refresh_timestamp_seconds", ())] - time.time()) < 60
    )

    # One-word texts: far shorter than any review, the window drifts and the gauges say so.
    for _ in range(8):
        client.post("/predict", json={"texts": ["film"] * 4})
    window.refresh()
    assert client.get("/drift").json()["drifted"] is True
    metrics = _samples(client.get("/metrics").text)
    assert metrics[("imdb_sentiment_drift_any", ())] == 1.0
    assert metrics[("imdb_sentiment_drift_detected", (("signal", "token_length"),))] == 1.0
    assert metrics[("imdb_sentiment_drift_refreshes_total", ())] == 2


def test_unchanged_window_is_not_tested_again(client: TestClient) -> None:
    window = client.app.state.model.drift  # type: ignore[attr-defined]
    client.post("/predict", json={"texts": ["superb moving film"] * 30})
    first = window.refresh()
    assert window.refresh() is first and window.refreshes == 1  # idle: no CPU spent


async def _load(app: fastapi.FastAPI, rounds: int, per_round: int) -> tuple[int, Any]:
    """Concurrent /predict rounds; the largest window length seen, and the window."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            while (await c.get("/drift")).status_code == 503:
                await asyncio.sleep(0.02)
            window = app.state.model.drift
            largest = 0
            for r in range(rounds):
                answers = await asyncio.gather(
                    *[
                        c.post(
                            "/predict",
                            json={
                                "texts": [f"superb film {r} {i}", "dull plot", "loved it", "awful"]
                            },
                        )
                        for i in range(per_round)
                    ]
                )
                assert {a.status_code for a in answers} == {200}
                largest = max(largest, len(window))
            deadline = time.monotonic() + 30
            while window.refreshes == 0 and window.errors == 0:
                assert time.monotonic() < deadline, "no background refresh within 30 s"
                await asyncio.sleep(0.02)
            thread = window._thread
            assert thread is not None and thread.is_alive()
    return largest, (window, thread)


def test_window_stays_bounded_under_load_and_stops_with_the_app(
    ref_run: Path, predictor: Predictor
) -> None:
    app = _app(
        ref_run,
        predictor,
        drift_window=30,
        drift_refresh_s=0.05,
        max_batch_size=64,
        batch_window_ms=20,
    )
    largest, (window, thread) = asyncio.run(_load(app, rounds=3, per_round=40))
    assert largest == 30 and len(window) == 30 and window.seen == 3 * 40 * 4
    assert window.refreshes >= 1 and window.errors == 0, window.last_error
    assert not thread.is_alive() and not window.running  # lifespan shutdown joined it


def test_no_reference_turns_drift_off_and_says_how_to_build_it(
    ref_run: Path, predictor: Predictor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "bare"
    shutil.copytree(ref_run, run)
    shutil.rmtree(run / "reference")
    with (
        caplog.at_level(logging.WARNING, logger="imdb_sentiment.server"),
        TestClient(_app(run, predictor)) as c,
    ):
        r = _drift_started(c)
        assert c.post("/predict", json={"text": "great film"}).status_code == 200
        text = c.get("/metrics").text
    assert r.status_code == 404
    expected = f"imdb-sentiment drift {run} --build-reference"
    assert expected in r.json()["detail"]
    assert any(expected in rec.getMessage() for rec in caplog.records)
    assert "imdb_sentiment_drift_enabled 0.0" in text and "imdb_sentiment_drift_any" not in text


def test_drift_window_zero_and_damaged_reference(
    ref_run: Path, predictor: Predictor, tmp_path: Path
) -> None:
    with TestClient(_app(ref_run, predictor, drift_window=0)) as c:
        r = _drift_started(c)
        assert r.status_code == 404 and "--drift-window 0" in r.json()["detail"]
    run = tmp_path / "damaged"
    shutil.copytree(ref_run, run)
    (run / "reference" / "reference.json").write_text("{not json", encoding="utf-8")
    with TestClient(_app(run, predictor)) as c:
        r = _drift_started(c)
        assert r.status_code == 404 and "damaged" in r.json()["detail"]
        assert c.post("/predict", json={"text": "great film"}).status_code == 200


def test_a_failing_refresh_is_counted_and_the_thread_goes_on(ref_run: Path) -> None:
    from imdb_sentiment.monitoring.reference import load_reference
    from imdb_sentiment.monitoring.window import DriftWindow

    class Broken:
        def __getattr__(self, name: str) -> object:
            raise RuntimeError("model gone")

    window = DriftWindow(
        Broken(),
        load_reference(ref_run),
        size=30,  # type: ignore[arg-type]
        refresh_s=0.01,
    )
    window.add(["film"] * 30)
    window.start()
    try:
        deadline = time.monotonic() + 10
        while window.errors < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert window.running and "model gone" in (window.last_error or "")
    finally:
        window.stop()
    assert not window.running


def test_serve_drift_flags(ref_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from imdb_sentiment.serving import app as server

    runner = CliRunner()
    for flags in (["--drift-window", "10"], ["--drift-window", "-1"], ["--drift-refresh", "0"]):
        result = runner.invoke(cli_app, ["serve", str(ref_run), *flags])
        assert result.exit_code == ConfigError.exit_code, result.output
        assert flags[0] in result.output
    seen: dict[str, Any] = {}
    monkeypatch.setattr(server, "serve", lambda run, **kw: seen.update(kw))
    result = runner.invoke(
        cli_app, ["serve", str(ref_run), "--drift-window", "40", "--drift-refresh", "2.5"]
    )
    assert result.exit_code == 0, result.output
    assert (seen["options"].drift_window, seen["options"].drift_refresh_s) == (40, 2.5)
    assert "drift monitoring: the last 40 texts" in result.output
    result = runner.invoke(cli_app, ["serve", str(ref_run), "--drift-window", "0"])
    assert result.exit_code == 0 and seen["options"].drift_window == 0
    assert "drift monitoring:" not in result.output
