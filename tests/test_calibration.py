"""Temperature scaling, ECE, Brier, and that a trained run stores and applies its temperature."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imdb_sentiment.metrics.calibration import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    brier_score,
    cross_fitted_ece,
    expected_calibration_error,
    fit_temperature,
    reliability_table,
)
from imdb_sentiment.metrics.classification import softmax


def _calibrated_logits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is calibrated by construction, and labels drawn from it."""
    rng = np.random.default_rng(seed)
    margin = rng.normal(0, 3, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(int)
    return np.stack([np.zeros(n), margin], axis=1), labels


@pytest.mark.parametrize("scale", [0.4, 1.0, 3.0])
def test_fit_temperature_recovers_the_scale(scale: float) -> None:
    logits, labels = _calibrated_logits(20_000)
    t = fit_temperature(logits * scale, labels)
    assert t == pytest.approx(scale, rel=0.08)


def test_temperature_lowers_ece_of_overconfident_logits() -> None:
    logits, labels = _calibrated_logits(5000, seed=1)
    over = logits * 4
    t = fit_temperature(over, labels)
    before = expected_calibration_error(labels, softmax(over)[:, 1])
    after = expected_calibration_error(labels, softmax(over, t)[:, 1])
    assert after < before / 2
    assert brier_score(labels, softmax(over, t)[:, 1]) < brier_score(labels, softmax(over)[:, 1])
    honest = cross_fitted_ece(over, labels)
    assert honest["ece"] < before


def test_fit_temperature_degenerate_inputs() -> None:
    assert fit_temperature(np.zeros((0, 2)), np.zeros(0)) == 1.0
    assert fit_temperature(np.array([[0.0, 2.0], [0.0, 3.0]]), np.array([1, 1])) == 1.0
    # Separable logits: NLL keeps falling as T shrinks, the search stays inside its bounds.
    z = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    t = fit_temperature(z, np.array([1, 0, 1, 0]))
    assert MIN_TEMPERATURE <= t <= MAX_TEMPERATURE and t < 1.0


def test_ece_and_brier_known_values() -> None:
    labels = np.ones(10, dtype=int)
    assert expected_calibration_error(labels, np.full(10, 0.9)) == pytest.approx(0.1)
    assert brier_score(labels, np.full(10, 0.9)) == pytest.approx(0.01)
    # 80% confident and right 80% of the time: calibrated.
    labels = np.array([1] * 8 + [0] * 2)
    assert expected_calibration_error(labels, np.full(10, 0.8)) == pytest.approx(0.0)
    assert brier_score(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.25)


def test_reliability_table_counts_every_review() -> None:
    rng = np.random.default_rng(3)
    p = rng.random(1000)
    p[:5] = 0.5  # the lower edge belongs to the first bin
    table = reliability_table(rng.integers(0, 2, 1000), p, bins=10)
    assert table.counts.sum() == 1000
    assert len(table.edges) == 11


def test_trained_run_stores_and_applies_its_temperature(trained_run: Path) -> None:
    from imdb_sentiment.inference.predictor import Predictor

    metrics = json.loads((trained_run / "metrics.json").read_text())["metrics"]
    settings = json.loads((trained_run / "model" / "imdb_sentiment.json").read_text())
    cal = metrics["calibration"]
    assert cal["temperature"] == pytest.approx(settings["temperature"])
    assert MIN_TEMPERATURE <= settings["temperature"] <= MAX_TEMPERATURE
    for key in (
        "ece_uncalibrated",
        "ece",
        "brier_uncalibrated",
        "brier",
        "ece_crossfit",
        "brier_crossfit",
    ):
        assert 0.0 <= cal[key] <= 1.0
    assert cal["brier"] <= cal["brier_uncalibrated"] + 1e-9 or cal["temperature"] == 1.0

    predictor = Predictor.from_path(trained_run)
    texts = ["wonderful brilliant film", "awful boring movie"]
    raw = predictor.logits(predictor.encode(texts))
    expected = softmax(raw, settings["temperature"])
    assert np.allclose(predictor.predict_proba(texts), expected, atol=1e-5)


def test_calibration_summary_is_the_one_record() -> None:
    from imdb_sentiment.metrics.calibration import calibration_summary

    logits, labels = _calibrated_logits(500, seed=2)
    over = logits * 3
    t = fit_temperature(over, labels)
    raw, scaled = softmax(over)[:, 1], softmax(over, t)[:, 1]
    cal = calibration_summary(labels, raw, scaled, t, fitted_on="validation (500 reviews)")
    assert cal == {
        "temperature": t,
        "ece_uncalibrated": expected_calibration_error(labels, raw),
        "brier_uncalibrated": brier_score(labels, raw),
        "ece": expected_calibration_error(labels, scaled),
        "brier": brier_score(labels, scaled),
        "fitted_on": "validation (500 reviews)",
    }
