"""Scoring a fitted model on validation: its positive probabilities, the temperature that
calibrates them, and bootstrap intervals around its metrics."""

from __future__ import annotations

from typing import Any

import numpy as np

from imdb_sentiment.config import Config


def score(
    cfg: Config, logits: np.ndarray, labels: np.ndarray, metrics: dict[str, Any]
) -> tuple[dict[str, Any], float]:
    """``metrics`` with calibration (when on) and bootstrap intervals, and the fitted
    temperature (1.0 when not calibrated)."""
    from imdb_sentiment.metrics.intervals import bootstrap_intervals

    temperature, calibration = calibrate(cfg, logits, labels, metrics)
    if calibration is not None:
        metrics["calibration"] = calibration
    metrics["intervals"] = bootstrap_intervals(
        labels, positive(logits, temperature), seed=cfg.training.seed
    )
    return metrics, temperature


def positive(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The positive-class probability of each row of ``logits``."""
    from imdb_sentiment.metrics.classification import softmax

    return softmax(logits, temperature)[:, 1]


def calibrate(
    cfg: Config, logits: np.ndarray, labels: np.ndarray, metrics: dict[str, Any]
) -> tuple[float, dict[str, Any] | None]:
    """The temperature fitted on validation and its calibration record; ``(1.0, None)`` when
    calibration is off or the model learned nothing."""
    from imdb_sentiment.metrics.calibration import (
        calibration_summary,
        cross_fitted_ece,
        fit_temperature,
    )
    from imdb_sentiment.metrics.classification import at_chance, compute_metrics

    if not cfg.training.calibrate or at_chance(metrics):
        return 1.0, None
    temperature = fit_temperature(logits, labels)
    after = positive(logits, temperature)
    # T was fitted on these same reviews; the cross-fitted figures are the honest "after".
    honest = cross_fitted_ece(logits, labels, seed=cfg.training.seed)
    return temperature, calibration_summary(
        labels,
        positive(logits),
        after,
        temperature,
        fitted_on=f"validation ({len(labels)} reviews)",
        log_loss=compute_metrics(labels, after)["log_loss"],
        ece_crossfit=honest["ece"],
        brier_crossfit=honest["brier"],
    )
