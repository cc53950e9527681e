"""A sliding window of recent texts, compared with the run's reference off the request path.

The server appends each request's texts (constant time, under a lock; the window holds at most
``size`` texts, so memory stays bounded under any load) and a background thread profiles the
window and runs the drift tests every ``refresh_s`` seconds. The latest report is kept for
``GET /drift`` and the metrics gauges.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from imdb_sentiment.monitoring.drift import MIN_BATCH, MMD_SAMPLE, compare
from imdb_sentiment.monitoring.profile import profile_texts

if TYPE_CHECKING:
    from imdb_sentiment.inference.predictor import Predictor
    from imdb_sentiment.monitoring.reference import Reference


class DriftWindow:
    """The last ``size`` texts and the latest drift report on them."""

    def __init__(self, predictor: Predictor, reference: Reference, *, size: int = 500,
                 refresh_s: float = 60.0, alpha: float = 0.05) -> None:
        self.predictor = predictor
        self.reference = reference
        self.refresh_s = refresh_s
        self.alpha = alpha
        self._texts: deque[str] = deque(maxlen=max(size, MIN_BATCH))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest: dict[str, Any] | None = None
        self.refreshes = 0

    def __len__(self) -> int:
        return len(self._texts)

    def add(self, texts: Iterable[str]) -> None:
        """Remember texts just served; the oldest fall out of a full window."""
        with self._lock:
            self._texts.extend(texts)

    def refresh(self) -> dict[str, Any] | None:
        """Test the window now; ``None`` (and the last report kept) while it holds too few."""
        with self._lock:
            texts = list(self._texts)
        if len(texts) < MIN_BATCH:
            return None
        profile = profile_texts(self.predictor, texts, embed_limit=MMD_SAMPLE,
                                seed=self.refreshes)
        report = compare(self.reference, profile, alpha=self.alpha, seed=self.refreshes)
        self.latest = report
        self.refreshes += 1
        return report

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh()

    def start(self) -> None:
        """Refresh every ``refresh_s`` seconds on a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="drift-window", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """End the background thread (waiting for a refresh in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

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
