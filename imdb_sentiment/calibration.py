"""Temperature scaling and the calibration measures that judge it."""

from __future__ import annotations

import numpy as np


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of ``softmax(logits / T)``.

    A bounded 1-D search over log T (Guo et al., 2017 use the same single parameter); it cannot
    change which label wins, only how confident the probabilities are.
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(labels).astype(int)
    if len(y) == 0:
        return 1.0
    result = minimize_scalar(
        lambda log_t: _nll(logits, y, float(np.exp(log_t))),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def expected_calibration_error(labels: np.ndarray, positive: np.ndarray, bins: int = 15) -> float:
    """ECE of the predicted label's confidence, with equal-width confidence bins."""
    y = np.asarray(labels).astype(int)
    p1 = np.asarray(positive, dtype=np.float64)
    pred = (p1 >= 0.5).astype(int)
    conf = np.where(pred == 1, p1, 1 - p1)
    correct = (pred == y).astype(float)
    edges = np.linspace(0.5, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (conf > lo) & (conf <= hi) if lo > 0.5 else (conf >= lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def brier_score(labels: np.ndarray, positive: np.ndarray) -> float:
    y = np.asarray(labels).astype(float)
    return float(np.mean((np.asarray(positive, dtype=np.float64) - y) ** 2))
