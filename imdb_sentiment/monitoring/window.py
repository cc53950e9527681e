"""A sliding window of recent texts, compared with the run's reference off the request path.

The server appends each request's texts (constant time, under a lock; the window holds at most
``size`` texts, so memory stays bounded under any load) and a background thread profiles the
window and runs the drift tests every ``refresh_s`` seconds. The latest report is kept for
``GET /drift`` and the metrics gauges.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from imdb_sentiment.monitoring.drift import MIN_BATCH, MMD_SAMPLE, compare
from imdb_sentiment.monitoring.profile import profile_texts

if TYPE_CHECKING:
    from imdb_sentiment.inference.predictor import Predictor
    from imdb_sentiment.monitoring.reference import Reference

log = logging.getLogger(__name__)


class DriftWindow:
    """The last ``size`` texts and the latest drift report on them."""

    def __init__(
        self,
        predictor: Predictor,
        reference: Reference,
        *,
        size: int = 500,
        refresh_s: float = 60.0,
        alpha: float = 0.05,
    ) -> None:
        self.predictor = predictor
        self.reference = reference
        self.refresh_s = refresh_s
        self.alpha = alpha
        self.size = max(size, MIN_BATCH)
        self._texts: deque[str] = deque(maxlen=self.size)
        self._lock = threading.Lock()
        # One refresh at a time: a direct call (tests, GET handlers) and the thread may meet.
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest: dict[str, Any] | None = None
        self.refreshes = 0
        self.seen = 0
        """Texts added since the window was made (the window keeps the last ``size``)."""
        self._tested_seen = -1
        self.last_refresh: float | None = None
        """Unix time the latest report was computed."""
        self.refresh_seconds: float | None = None
        self.errors = 0
        self.last_error: str | None = None

    def __len__(self) -> int:
        return len(self._texts)

    def add(self, texts: Iterable[str]) -> None:
        """Remember texts just served; the oldest fall out of a full window."""
        items = list(texts)
        with self._lock:
            self._texts.extend(items)
            self.seen += len(items)

    def refresh(self) -> dict[str, Any] | None:
        """Test the window now; ``None`` (and the last report kept) while it holds too few.

        A window that has not changed since the last test keeps its report: an idle server
        spends no CPU on drift.
        """
        with self._refresh_lock:
            with self._lock:
                texts, seen = list(self._texts), self.seen
            if len(texts) < MIN_BATCH:
                return None
            if seen == self._tested_seen and self.latest is not None:
                return self.latest
            start = time.perf_counter()
            profile = profile_texts(
                self.predictor, texts, embed_limit=MMD_SAMPLE, seed=self.refreshes
            )
            report = compare(self.reference, profile, alpha=self.alpha, seed=self.refreshes)
            self.refresh_seconds = time.perf_counter() - start
            self.last_refresh = time.time()
            self.latest = report
            self._tested_seen = seen
            self.refreshes += 1
            return report

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self.refresh()
            except Exception as exc:  # the thread must outlive one bad refresh
                self.errors += 1
                self.last_error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                log.warning("drift refresh failed: %s", self.last_error)

    def start(self) -> None:
        """Refresh every ``refresh_s`` seconds on a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="drift-window", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End the background thread (waiting for a refresh in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        """The window's state, for ``GET /drift``."""
        with self._lock:
            n, seen = len(self._texts), self.seen
        last = (
            None
            if self.last_refresh is None
            else datetime.fromtimestamp(self.last_refresh, UTC).isoformat(timespec="seconds")
        )
        return {
            "texts": n,
            "size": self.size,
            "min_texts": MIN_BATCH,
            "texts_seen": seen,
            "refresh_s": self.refresh_s,
            "refreshes": self.refreshes,
            "last_refresh": last,
            "refresh_seconds": self.refresh_seconds,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    def gauges(self) -> dict[str, float]:
        """``signal.statistic``, ``signal.p_value`` and ``signal.drifted`` (0/1) of the latest
        report, plus ``drifted`` overall; empty before the first report."""
        if self.latest is None:
            return {}
        out: dict[str, float] = {"drifted": float(self.latest["drifted"])}
        for s in self.latest["signals"]:
            out[f"{s['name']}.statistic"] = float(s["statistic"])
            out[f"{s['name']}.drifted"] = float(s["drifted"])
            if s["p_value"] is not None:
                out[f"{s['name']}.p_value"] = float(s["p_value"])
        return out
