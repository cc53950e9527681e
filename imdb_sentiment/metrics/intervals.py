"""How sure a measured figure is: percentile-bootstrap and Wilson score intervals."""

from __future__ import annotations

import math

import numpy as np

from imdb_sentiment.text import predicted_labels

BOOTSTRAP_SAMPLES = 1000
CONFIDENCE_LEVEL = 0.95
INTERVAL_METRICS = ("accuracy", "f1", "roc_auc")

# Resampled reviews in memory at once: bounds the count matrix to ~16 MB whatever the data size.
_RESAMPLE_CELLS = 2_000_000
# A point estimate may sit outside its percentile interval by this much only through float
# rounding; the report shows 4 decimals, so a real gap this small would be invisible anyway.
_ROUNDING = 1e-9


def _percentile_interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def _contain_estimate(low: float, high: float, value: float) -> tuple[float, float]:
    """``(low, high)`` widened to hold ``value`` where float rounding alone left it outside.

    scikit-learn's trapezoidal ROC-AUC of a perfect ranking with tied scores can come out as
    0.9999999999999999 while every resample scores exactly 1.0, so the interval [1.0, 1.0]
    would exclude its own estimate. A genuine gap (possible with a percentile bootstrap) is
    left alone.
    """
    if math.isnan(value):
        return low, high
    if value < low <= value + _ROUNDING:
        low = value
    if value - _ROUNDING <= high < value:
        high = value
    return low, high


def _bootstrap_auc(counts: np.ndarray, y_sorted: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """ROC-AUC of each bootstrap resample, from resample counts over score-sorted reviews.

    AUC is the chance a random positive outscores a random negative (ties count half); with the
    reviews sorted by score once, each resample needs only weighted cumulative sums.
    """
    pos = np.add.reduceat(counts * y_sorted, starts, axis=1).astype(np.float64)
    neg = np.add.reduceat(counts * (1 - y_sorted), starts, axis=1).astype(np.float64)
    below = np.cumsum(neg, axis=1) - neg
    total = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray((pos * (below + 0.5 * neg)).sum(axis=1) / total)


def _resampled_metrics(
    y: np.ndarray, p1: np.ndarray, samples: int, seed: int
) -> dict[str, np.ndarray]:
    """Accuracy, F1 and ROC-AUC of ``samples`` resamples (with replacement) of the reviews."""
    n = len(y)
    pred = predicted_labels(p1)
    tp_v, fp_v, fn_v = pred & y, pred & (1 - y), (1 - pred) & y
    order = np.argsort(p1, kind="stable")
    y_sorted = y[order]
    p_sorted = p1[order]
    starts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]]) if n else np.array([0])

    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {name: [] for name in INTERVAL_METRICS}
    chunk = max(1, min(samples, _RESAMPLE_CELLS // max(n, 1)))
    done = 0
    while done < samples and n:
        b = min(chunk, samples - done)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=b)
        draws["accuracy"].append(counts @ (pred == y) / n)
        tp, fp, fn = counts @ tp_v, counts @ fp_v, counts @ fn_v
        with np.errstate(invalid="ignore", divide="ignore"):
            draws["f1"].append(np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0))
        draws["roc_auc"].append(_bootstrap_auc(counts[:, order], y_sorted, starts))
        done += b
    return {name: np.concatenate(v) if v else np.empty(0) for name, v in draws.items()}


def _point_estimates(y: np.ndarray, p1: np.ndarray) -> dict[str, float]:
    """The figures on all reviews, computed as :func:`compute_metrics` computes them."""
    from sklearn.metrics import roc_auc_score

    pred = predicted_labels(p1)
    tp = int((pred & y).sum())
    wrong = int((pred != y).sum())
    both = len(np.unique(y)) == 2
    return {
        "accuracy": float(np.mean(pred == y)) if len(y) else float("nan"),
        "f1": float(2 * tp / max(2 * tp + wrong, 1)),
        "roc_auc": float(roc_auc_score(y, p1)) if both else float("nan"),
    }


def bootstrap_intervals(
    labels: np.ndarray,
    positive: np.ndarray,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    level: float = CONFIDENCE_LEVEL,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap intervals for accuracy, F1 and ROC-AUC (reviews resampled).

    Returns ``{metric: {"value", "low", "high"}}`` plus ``"_meta"``; ``value`` is the estimate
    on all reviews, and ``low <= value <= high`` always holds where the interval is defined.
    """
    y = np.asarray(labels).astype(np.int64)
    p1 = np.asarray(positive, dtype=np.float64)
    point = _point_estimates(y, p1)
    draws = _resampled_metrics(y, p1, samples, seed)
    out: dict[str, dict[str, float]] = {}
    for name in INTERVAL_METRICS:
        value = point[name]
        if draws[name].size == 0 or math.isnan(value):
            out[name] = {"value": value, "low": float("nan"), "high": float("nan")}
            continue
        low, high = _contain_estimate(*_percentile_interval(draws[name], level), value)
        out[name] = {"value": value, "low": low, "high": high}
    out["_meta"] = {"samples": float(samples), "level": level, "seed": float(seed)}
    return out


def wilson_interval(successes: int, n: int, level: float = CONFIDENCE_LEVEL) -> tuple[float, float]:
    """Wilson score interval for a proportion: sound for small slices and rates near 0 or 1."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - level) / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval always holds p; at p = 1 the upper bound is exactly 1 in real arithmetic
    # but rounds to 0.9999999999999999 for many n.
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))


def paired_accuracy_difference(
    labels: np.ndarray, a: np.ndarray, b: np.ndarray, *, samples: int = 2000, seed: int = 0
) -> dict[str, float | int]:
    """Accuracy of ``b`` minus ``a`` on the same reviews, with a paired bootstrap 95% interval.

    ``a`` and ``b`` are positive-class probabilities of two models for the same reviews; pairing
    the resamples removes the variance the two share, so the interval is much tighter than the
    difference of two separate intervals.
    """
    y = np.asarray(labels).astype(np.int64)
    right_a = (predicted_labels(a) == y).astype(float)
    right_b = (predicted_labels(b) == y).astype(float)
    diff = right_b - right_a
    rng = np.random.default_rng(seed)
    n = len(diff)
    boots = np.array([diff[rng.integers(0, n, n)].mean() for _ in range(samples)])
    low, high = np.percentile(boots, [2.5, 97.5])
    return {
        "difference": float(diff.mean()),
        "low": float(low),
        "high": float(high),
        "only_b_right": int(((right_b == 1) & (right_a == 0)).sum()),
        "only_a_right": int(((right_a == 1) & (right_b == 0)).sum()),
    }
