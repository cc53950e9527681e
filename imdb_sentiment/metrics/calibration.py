"""Temperature scaling and the calibration measures that judge it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from imdb_sentiment.text import LABELS, predicted_labels

# The search runs over log T. Real fine-tuned classifiers land between ~0.5 and ~5; the wide
# bounds only matter for degenerate logits, and hitting one is reported rather than hidden.
MIN_TEMPERATURE = 1e-2
MAX_TEMPERATURE = 100.0
MIN_CONFIDENCE = 1 / len(LABELS)
"""The predicted label's probability is never below this (0.5 for two labels)."""


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of ``softmax(logits / T)``.

    A bounded 1-D search over log T (Guo et al., 2017 use the same single parameter); it cannot
    change which label wins, only how confident the probabilities are. With fewer than two
    labelled reviews, or a single class, there is nothing to fit and T = 1 is returned.
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(labels).astype(int)
    z = np.asarray(logits, dtype=np.float64)
    if len(y) < 2 or len(np.unique(y)) < 2:
        return 1.0
    result = minimize_scalar(
        lambda log_t: _nll(z, y, float(np.exp(log_t))),
        bounds=(np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-5},
    )
    best = float(np.exp(result.x))
    # The bounded search never evaluates the bounds themselves; when the optimum sits against
    # one (all-correct, separable logits), prefer T = 1 over an extreme value unless it is worse.
    if _nll(z, y, 1.0) <= _nll(z, y, best):
        return 1.0
    return best


def expected_calibration_error(labels: np.ndarray, positive: np.ndarray, bins: int = 15) -> float:
    """ECE of the predicted label's confidence, with equal-width bins over [MIN_CONFIDENCE, 1]."""
    table = reliability_table(labels, positive, bins)
    n = max(int(table.counts.sum()), 1)
    gaps = np.abs(table.accuracy - table.confidence)
    return float(np.nansum(table.counts * np.nan_to_num(gaps)) / n)


def brier_score(labels: np.ndarray, positive: np.ndarray) -> float:
    """Mean squared error of the positive-class probability (0 is perfect, 0.25 is a coin)."""
    y = np.asarray(labels).astype(float)
    return float(np.mean((np.asarray(positive, dtype=np.float64) - y) ** 2))


@dataclass
class ReliabilityTable:
    """Per confidence bin: how many reviews, their mean confidence, and how many were right."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray  # NaN for empty bins
    accuracy: np.ndarray  # NaN for empty bins


def reliability_table(labels: np.ndarray, positive: np.ndarray, bins: int = 15) -> ReliabilityTable:
    """Bin reviews by the confidence of the predicted label (what a reliability diagram draws)."""
    y = np.asarray(labels).astype(int)
    p1 = np.asarray(positive, dtype=np.float64)
    pred = predicted_labels(p1)
    conf = np.where(pred == 1, p1, 1 - p1)
    correct = (pred == y).astype(float)
    edges = np.linspace(MIN_CONFIDENCE, 1.0, bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; the first bin also holds its lower edge.
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=conf, minlength=bins) / counts
        mean_acc = np.bincount(index, weights=correct, minlength=bins) / counts
    return ReliabilityTable(edges, counts, mean_conf, mean_acc)


def cross_fitted_ece(
    logits: np.ndarray, labels: np.ndarray, folds: int = 2, seed: int = 0
) -> dict[str, float]:
    """ECE and Brier after temperature scaling, each review scored by a T fitted without it.

    Fitting T and measuring ECE on the same reviews flatters the result; this k-fold estimate is
    the honest number to compare with the uncalibrated one.
    """
    from imdb_sentiment.metrics.classification import softmax

    y = np.asarray(labels).astype(int)
    z = np.asarray(logits, dtype=np.float64)
    if len(y) < 2 * folds:
        p = softmax(z, fit_temperature(z, y))[:, 1]
        return {"ece": expected_calibration_error(y, p), "brier": brier_score(y, p)}
    order = np.random.default_rng(seed).permutation(len(y))
    parts = np.array_split(order, folds)
    p1 = np.zeros(len(y))
    for k, held_out in enumerate(parts):
        rest = np.concatenate([part for j, part in enumerate(parts) if j != k])
        p1[held_out] = softmax(z[held_out], fit_temperature(z[rest], y[rest]))[:, 1]
    return {"ece": expected_calibration_error(y, p1), "brier": brier_score(y, p1)}


def calibration_summary(
    labels: np.ndarray,
    uncalibrated: np.ndarray,
    calibrated: np.ndarray,
    temperature: float,
    **extra: Any,
) -> dict[str, Any]:
    """The one calibration record that training, ``eval`` and the model card all use.

    ``uncalibrated`` and ``calibrated`` are positive-class probabilities at T = 1 and at
    ``temperature``. Keys: ``temperature``, ``ece_uncalibrated``, ``brier_uncalibrated``, ``ece``,
    ``brier``, plus ``extra`` as given (training adds ``fitted_on``, ``log_loss``,
    ``ece_crossfit`` and ``brier_crossfit``).
    """
    y = np.asarray(labels).astype(int)
    return {
        "temperature": float(temperature),
        "ece_uncalibrated": expected_calibration_error(y, uncalibrated),
        "brier_uncalibrated": brier_score(y, uncalibrated),
        "ece": expected_calibration_error(y, calibrated),
        "brier": brier_score(y, calibrated),
        **extra,
    }
