"""deploy/: the Prometheus config and alert rules (promtool), a real Prometheus scraping a real
``imdb-sentiment serve``, and the Grafana dashboard's queries against what the server exports.

The promtool and Prometheus tests need the binaries of the Debian package ``prometheus``
(``apt-get install prometheus``; .ci/run installs it) and skip without them.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from _serving import free_port, run_with_reference, wait_ready

from tests.conftest import REPO_ROOT, cli_env, synthetic_frame

DEPLOY = REPO_ROOT / "deploy"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
MISSING = "{} is not installed (Debian package prometheus: apt-get install prometheus)"
METRIC = re.compile(r"\b(imdb_sentiment_[a-z0-9_]+)")


@pytest.fixture(scope="module")
def ref_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_with_reference(trained_run, tmp_path_factory.mktemp("prom") / "run")


def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text(encoding="utf-8"))
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def alert_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables filled in, as Grafana would send it."""
    return (
        expr.replace("$__rate_interval", "1m").replace("$__range", "5m").replace("$instance", ".*")
    )


@pytest.mark.skipif(PROMTOOL is None, reason=MISSING.format("promtool"))
def test_promtool_checks_config_rules_and_rule_tests() -> None:
    folder = DEPLOY / "prometheus"
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        done = subprocess.run(
            [PROMTOOL or "promtool", *args],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])


def test_dashboard_and_alerts_query_only_exported_metrics(ref_run: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from imdb_sentiment.serving.app import create_app
    from imdb_sentiment.serving.schemas import ServeOptions

    dash = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text(encoding="utf-8"))
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    for p in panels:  # every panel draws something the server exports
        assert p["targets"] and all(METRIC.search(t["expr"]) for t in p["targets"]), p["title"]
    exprs = dashboard_exprs()
    for needle in (
        "histogram_quantile(0.99",
        "imdb_sentiment_requests_total",
        "imdb_sentiment_batch_size",
        "imdb_sentiment_predictions_total",
        "imdb_sentiment_confidence",
        "imdb_sentiment_drift_p_value",
        "imdb_sentiment_drift_detected",
        "imdb_sentiment_drift_any",
    ):
        assert any(needle in e for e in exprs), needle

    options = ServeOptions(api_key="", drift_window=30, drift_refresh_s=3600)
    with TestClient(create_app(ref_run, options)) as c:
        wait_ready(c)
        deadline = time.monotonic() + 30
        while c.app.state.model.drift is None:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, c.get("/drift").text
            time.sleep(0.02)
        c.post("/predict", json={"texts": synthetic_frame(32, seed=5)["text"].tolist()})
        c.app.state.model.drift.refresh()  # type: ignore[attr-defined]
        exposition = c.get("/metrics").text
    exported = {s.name for f in text_string_to_metric_families(exposition) for s in f.samples}
    for where, queries in (("dashboard", exprs), ("alerts.yml", alert_exprs())):
        named = {m for e in queries for m in METRIC.findall(e)}
        assert named - exported == set(), f"{where} queries metrics the server does not export"


def _query(client: httpx.Client, promql: str) -> list[dict[str, Any]]:
    r = client.get("/api/v1/query", params={"query": promql})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", (promql, body)
    return list(body["data"]["result"])


def _until(what: str, check: Any, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture()
def serve_and_prometheus(ref_run: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A ``serve`` process and a Prometheus scraping it every second, both on loopback."""
    serve_port, prom_port = free_port(), free_port()
    env = cli_env()
    env.pop("IMDB_SENTIMENT_API_KEY", None)  # Prometheus scrapes /metrics without a key here
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imdb_sentiment",
            "serve",
            str(ref_run),
            "--port",
            str(serve_port),
            "--precision",
            "fp32",
            "--drift-window",
            "30",
            "--drift-refresh",
            "0.2",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=(tmp_path / "serve.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    # The shipped config, pointed at this server and scraping every second.
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text("utf-8"))
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{serve_port}"]}]
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    prometheus = subprocess.Popen(
        [
            PROMETHEUS or "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        stdout=(tmp_path / "prometheus.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{prom_port}"
    except BaseException:
        for log in ("serve.log", "prometheus.log"):
            print(f"--- {log}\n" + (tmp_path / log).read_text(errors="replace")[-3000:])
        raise
    finally:
        for proc in (server, prometheus):
            proc.terminate()
        for proc in (server, prometheus):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.mark.skipif(PROMETHEUS is None, reason=MISSING.format("prometheus"))
def test_prometheus_scrapes_drift_and_latency_from_serve(
    serve_and_prometheus: tuple[str, str],
) -> None:
    serve_url, prom_url = serve_and_prometheus
    with (
        httpx.Client(base_url=serve_url, timeout=10) as s,
        httpx.Client(base_url=prom_url, timeout=10) as p,
    ):
        _until("the server", lambda: _alive(s), 60)
        wait_ready(s)
        texts = synthetic_frame(40, seed=9)["text"].tolist()
        for i in range(0, 40, 4):
            assert s.post("/predict", json={"texts": texts[i : i + 4]}).status_code == 200
        _until("a drift report", lambda: s.get("/drift").status_code == 200)
        _until("Prometheus", lambda: _alive(p, "/-/ready"))

        drift = _until(
            "the drift gauges in Prometheus",
            lambda: _query(
                p,
                'imdb_sentiment_drift_window_texts{job="imdb-sentiment"} == 30 '
                "and on() imdb_sentiment_drift_any >= 0",
            ),
        )
        assert drift[0]["metric"]["job"] == "imdb-sentiment"
        signals = _query(p, "imdb_sentiment_drift_detected")
        assert {r["metric"]["signal"] for r in signals} >= {"token_length", "embedding"}
        assert all(r["value"][1] in ("0", "1") for r in signals)
        assert len(_query(p, "imdb_sentiment_drift_p_value")) == 6  # PSI has none
        count = _until(
            "10 /predict requests in Prometheus",
            lambda: _query(
                p, 'sum(imdb_sentiment_request_duration_seconds_count{route="/predict"}) == 10'
            ),
        )
        assert count
        p99 = _query(
            p,
            "histogram_quantile(0.99, sum by (le) "
            '(imdb_sentiment_request_duration_seconds_bucket{route="/predict"}))',
        )
        assert 0 < float(p99[0]["value"][1]) < math.inf

        rules = p.get("/api/v1/rules").json()["data"]["groups"]
        assert {g["name"] for g in rules} == {"imdb-sentiment-service", "imdb-sentiment-model"}
        assert all(r.get("lastError", "") == "" for g in rules for r in g["rules"])
        for expr in dashboard_exprs():  # Prometheus parses every dashboard query
            _query(p, grafana_to_promql(expr))


def _alive(client: httpx.Client, path: str = "/health") -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.TransportError:
        return False
