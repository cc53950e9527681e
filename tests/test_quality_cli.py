"""CLI flags for long reviews and robustness: eval --long-reviews/--robustness/--no-report,
predict --uncertain-band."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from imdb_sentiment.errors import ConfigError
from imdb_sentiment.inference.predictor import (
    Prediction,
    apply_uncertain_band,
    parse_uncertain_band,
)

runner = CliRunner()


def test_parse_uncertain_band() -> None:
    assert parse_uncertain_band("0.4:0.6") == (0.4, 0.6)
    assert parse_uncertain_band("0:1") == (0.0, 1.0)
    for bad in ("0.6:0.4", "0.5:0.5", "-0.1:0.5", "0.2:1.5", "0.4", "a:b", "0.1:0.2:0.3"):
        with pytest.raises(ConfigError, match="--uncertain-band expects LO:HI"):
            parse_uncertain_band(bad)


def test_apply_uncertain_band_keeps_the_probability() -> None:
    preds = [Prediction("positive", p, max(p, 1 - p), 3, False, 1.0) for p in (0.45, 0.6, 0.9)]
    out = apply_uncertain_band(preds, (0.4, 0.6))
    assert [p.label for p in out] == ["uncertain", "uncertain", "positive"]
    assert out[0].positive_probability == 0.45
    assert apply_uncertain_band(preds, None) is preds


@pytest.mark.parametrize("band", ["0.7:0.3", "half"])
def test_predict_rejects_a_bad_band_in_one_line(trained_run: Path, band: str) -> None:
    result = runner.invoke(
        app, ["predict", "great film", "--model", str(trained_run), "--uncertain-band", band]
    )
    assert result.exit_code == ConfigError.exit_code
    assert "--uncertain-band expects LO:HI" in result.output
    assert "Traceback" not in result.output


def test_predict_uncertain_band_and_chunks(trained_run: Path) -> None:
    long_text = " ".join(["the great film was a masterpiece"] * 30)
    result = runner.invoke(
        app,
        [
            "predict",
            "great film",
            long_text,
            "--model",
            str(trained_run),
            "--json",
            "--uncertain-band",
            "0:1",
            "--long-reviews",
            "chunks",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in rows] == ["uncertain", "uncertain"]
    assert rows[1]["truncated"] is False and rows[1]["read_fraction"] == 1.0


def test_predict_rejects_unknown_long_review_mode(trained_run: Path) -> None:
    result = runner.invoke(
        app, ["predict", "great film", "--model", str(trained_run), "--long-reviews", "all"]
    )
    assert result.exit_code == ConfigError.exit_code
    assert "--long-reviews must be one of truncate, chunks" in result.output


def test_eval_chunks_without_report(trained_run: Path, tmp_path: Path) -> None:
    import pandas as pd

    data = tmp_path / "cli-chunks.csv"
    pd.DataFrame({"text": ["great film " * 40, "awful plot"], "label": [1, 0]}).to_csv(
        data, index=False
    )
    result = runner.invoke(
        app,
        ["eval", str(trained_run), "--file", str(data), "--long-reviews", "chunks", "--no-report"],
    )
    assert result.exit_code == 0, result.output
    m = json.loads((trained_run / "eval" / "file-cli-chunks" / "metrics.json").read_text())
    assert m["long_reviews"] == "chunks"
    assert "intervals" not in m
