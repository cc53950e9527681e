"""Accuracy on parts of the data: by review length, by star rating, by any key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from imdb_sentiment.metrics.intervals import wilson_interval
from imdb_sentiment.text import predicted_labels

LENGTH_EDGES = (128, 256, 512, 1024)
"""Upper token counts of the length buckets (those below the model's window are used)."""


def length_bucket_labels(budget: int, long_reviews: str = "truncate") -> list[str]:
    """Names of the length buckets, shortest first; the last holds reviews over the window."""
    edges = [e for e in LENGTH_EDGES if e < budget]
    names, lo = [], 1
    for e in edges:
        names.append(f"{lo}-{e}")
        lo = e + 1
    names.append(f"{lo}-{budget}")
    over = "chunked" if long_reviews == "chunks" else "truncated"
    names.append(f">{budget} ({over})")
    return names


def length_buckets(
    n_tokens: Sequence[int], budget: int, long_reviews: str = "truncate"
) -> list[str]:
    """The bucket of each review: by token count, and every review over the window in one."""
    names = length_bucket_labels(budget, long_reviews)
    edges = [e for e in LENGTH_EDGES if e < budget] + [budget]
    index = np.searchsorted(np.asarray(edges), np.asarray(n_tokens, dtype=np.int64), side="left")
    return [names[i] for i in index]


def _slice_row(name: str, y: np.ndarray, p1: np.ndarray) -> dict[str, Any]:
    pred = predicted_labels(p1)
    correct = int((pred == y).sum())
    lo, hi = wilson_interval(correct, len(y))
    conf = np.where(pred == 1, p1, 1 - p1)
    return {
        "slice": name,
        "n": len(y),
        "accuracy": correct / len(y) if len(y) else float("nan"),
        "accuracy_low": lo,
        "accuracy_high": hi,
        "errors": len(y) - correct,
        "mean_confidence": float(conf.mean()) if len(y) else float("nan"),
        "mean_positive_probability": float(p1.mean()) if len(y) else float("nan"),
    }


def slice_metrics(
    labels: np.ndarray,
    positive: np.ndarray,
    keys: Sequence[Any],
    order: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """Accuracy (with a Wilson interval), errors and confidence for each value of ``keys``.

    Rows follow ``order`` when given (values absent from ``keys`` are skipped), else sorted keys.
    """
    y = np.asarray(labels).astype(int)
    p1 = np.asarray(positive, dtype=np.float64)
    k = np.asarray(list(keys), dtype=object)
    values = list(order) if order is not None else sorted(set(k.tolist()))
    return [_slice_row(str(v), y[k == v], p1[k == v]) for v in values if (k == v).any()]
