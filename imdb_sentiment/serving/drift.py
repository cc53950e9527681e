"""Drift monitoring in the server: a window of recent request texts tested against the run's
reference on a background thread, read back by ``GET /drift`` and as ``/metrics`` gauges.

The request path only appends texts to the window (:meth:`DriftWindow.add`, constant time per
text). Profiling and testing happen on the window's own thread, with an fp32 PyTorch copy of the
model: the reference was profiled in fp32, and a second copy keeps the tokenizer and model of the
serving path free of another thread's calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imdb_sentiment.errors import ImdbSentimentError, MissingExtraError
from imdb_sentiment.monitoring.drift import MIN_BATCH
from imdb_sentiment.monitoring.reference import REFERENCE_DIR, REFERENCE_FILE
from imdb_sentiment.runs import run_of
from imdb_sentiment.serving.telemetry import log

try:
    from fastapi.responses import JSONResponse
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
except ImportError as exc:  # pragma: no cover - exercised only without the serve extra
    raise MissingExtraError(exc.name or "prometheus-client", "serve") from None

if TYPE_CHECKING:
    from imdb_sentiment.monitoring.window import DriftWindow
    from imdb_sentiment.serving.deps import ModelState
    from imdb_sentiment.serving.schemas import ServeOptions

PREFIX = "imdb_sentiment_drift"


def reference_run(run_path: Path) -> Path:
    """The run folder whose ``reference/`` profiles the served model (``serve`` may be given a
    run or its ``model/`` folder)."""
    for candidate in (run_path, run_path.parent):
        if (candidate / REFERENCE_DIR / REFERENCE_FILE).is_file():
            return candidate
    return run_of(run_path)


def open_window(run_path: Path, options: ServeOptions) -> tuple[DriftWindow | None, str | None]:
    """A drift window for the served run (not started), or ``None`` and why there is none.

    Blocking (it loads the reference and an fp32 copy of the model): call it off the event loop.
    """
    if options.drift_window == 0:
        return None, "drift monitoring is off (--drift-window 0)"
    run = reference_run(run_path)
    if not (run / REFERENCE_DIR / REFERENCE_FILE).is_file():
        reason = (
            f"drift monitoring is off: {run} has no drift reference; build it with "
            f"`imdb-sentiment drift {run} --build-reference` and restart the server"
        )
        log.warning(reason)
        return None, reason
    from imdb_sentiment.inference.predictor import Predictor
    from imdb_sentiment.monitoring.reference import load_reference
    from imdb_sentiment.monitoring.window import DriftWindow

    try:
        reference = load_reference(run)
        predictor = Predictor.from_path(
            run, precision="fp32", batch_size=options.inference_batch_size
        )
    except ImdbSentimentError as exc:
        reason = f"drift monitoring is off: {exc}"
        log.error(reason)
        return None, reason
    window = DriftWindow(
        predictor, reference, size=options.drift_window, refresh_s=options.drift_refresh_s
    )
    log.info(
        "drift monitoring: the last %d texts are tested against %s every %g s (GET /drift)",
        window.size,
        run / REFERENCE_DIR,
        window.refresh_s,
    )
    return window, None


def drift_response(model: ModelState) -> JSONResponse:
    """``GET /drift``: the latest report with the window's state, or why there is none.

    404 while monitoring is off, 503 while it starts, 409 until the window holds a report.
    """
    window = model.drift
    if window is None:
        if model.drift_off is not None:
            return JSONResponse({"detail": model.drift_off}, status_code=404)
        detail = model.error or "drift monitoring starts once the model is loaded; retry shortly"
        return JSONResponse({"detail": detail}, status_code=503)
    status = window.status()
    report = window.latest
    if report is None:
        if status["texts"] < MIN_BATCH:
            detail = (
                f"the drift window holds {status['texts']} texts; the drift tests need at "
                f"least {MIN_BATCH}"
            )
        else:
            detail = (
                f"no drift report yet: the window holds {status['texts']} texts and is "
                f"tested every {window.refresh_s:g} s"
            )
        return JSONResponse({"detail": detail, "window": status}, status_code=409)
    return JSONResponse({**report, "window": status})


class DriftCollector:
    """Prometheus collector reading the drift window at scrape time (nothing to keep in sync)."""

    def __init__(self, model: ModelState) -> None:
        self.model = model

    def describe(self) -> list[Metric]:
        """No fixed series: the signals appear with the first report."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The drift gauges of the latest report and the window's state."""
        window = self.model.drift
        yield _gauge("enabled", "1 while drift monitoring runs.", float(window is not None))
        if window is None:
            return
        status = window.status()
        yield _gauge("window_texts", "Texts in the drift window.", status["texts"])
        yield _gauge("window_size", "Most texts the drift window keeps.", status["size"])
        yield _gauge("refresh_interval_seconds", "Seconds between drift tests.", window.refresh_s)
        yield CounterMetricFamily(
            f"{PREFIX}_refreshes", "Drift tests run.", value=status["refreshes"]
        )
        yield CounterMetricFamily(
            f"{PREFIX}_refresh_errors", "Drift tests that failed.", value=status["errors"]
        )
        if window.latest is not None:
            yield from _report_gauges(window.latest, window)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def _report_gauges(report: dict[str, Any], window: DriftWindow) -> Iterator[Metric]:
    yield _gauge(
        "any", "1 when any signal of the latest drift report drifted.", float(report["drifted"])
    )
    yield _gauge(
        "last_refresh_timestamp_seconds",
        "Unix time of the latest drift report.",
        window.last_refresh or time.time(),
    )
    yield _gauge(
        "refresh_duration_seconds",
        "Time the latest drift test took.",
        window.refresh_seconds or 0.0,
    )
    yield _gauge("report_texts", "Texts the latest drift report tested.", report["n_reviews"])
    statistic = GaugeMetricFamily(
        f"{PREFIX}_statistic", "Test statistic per drift signal.", labels=["signal"]
    )
    p_value = GaugeMetricFamily(
        f"{PREFIX}_p_value",
        "p-value per drift signal (none for the vocabulary PSI).",
        labels=["signal"],
    )
    threshold = GaugeMetricFamily(
        f"{PREFIX}_threshold",
        "Alarm threshold per signal (p-value, or PSI for vocabulary).",
        labels=["signal"],
    )
    detected = GaugeMetricFamily(
        f"{PREFIX}_detected", "1 when the signal drifted.", labels=["signal"]
    )
    for s in report["signals"]:
        statistic.add_metric([s["name"]], float(s["statistic"]))
        threshold.add_metric([s["name"]], float(s["threshold"]))
        detected.add_metric([s["name"]], float(s["drifted"]))
        if s["p_value"] is not None:
            p_value.add_metric([s["name"]], float(s["p_value"]))
    yield from (statistic, p_value, threshold, detected)
