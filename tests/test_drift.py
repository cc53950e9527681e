"""``imdb-sentiment drift``: the reference profile and the drift tests, on the tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from tests.conftest import synthetic_frame

runner = CliRunner()


@pytest.fixture(scope="module")
def drift_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared run with a reference built (the shared run stays untouched)."""
    run = tmp_path_factory.mktemp("drift") / "run"
    shutil.copytree(trained_run, run)
    result = runner.invoke(app, ["drift", str(run), "--build-reference"])
    assert result.exit_code == 0, result.output
    return run


def _write_texts(path: Path, texts: list[str]) -> Path:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def test_reference_is_small_and_versioned(drift_run: Path) -> None:
    folder = drift_run / "reference"
    payload = json.loads((folder / "reference.json").read_text())
    assert payload["schema_version"] == 1
    n = payload["n_reviews"]
    assert n > 0 and len(payload["reviews"]["n_tokens"]) == n
    embeddings = np.load(folder / "embeddings.npy")
    assert embeddings.dtype == np.float16 and embeddings.shape == (n, 32)
    assert sum(p.stat().st_size for p in folder.iterdir()) < 5_000_000


def test_same_distribution_batch_does_not_drift(drift_run: Path, tmp_path: Path) -> None:
    texts = synthetic_frame(200, seed=11)["text"].tolist()
    batch = _write_texts(tmp_path / "same.txt", texts)
    result = runner.invoke(app, ["drift", str(drift_run), "--file", str(batch), "--json",
                                 "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["drifted"] is False
    names = {s["name"] for s in report["signals"]}
    assert names == {"token_length", "truncated_share", "unknown_token_rate",
                     "predicted_positive_rate", "confidence", "embedding", "vocabulary"}
    for s in report["signals"]:
        assert set(s) == {"name", "test", "statistic", "p_value", "threshold", "drifted",
                          "reference", "batch"}
    assert json.loads((tmp_path / "out" / "drift.json").read_text()) == report
    assert "no drift" in (tmp_path / "out" / "report.md").read_text()


def test_one_word_texts_drift(drift_run: Path, tmp_path: Path) -> None:
    batch = _write_texts(tmp_path / "short.txt", ["film"] * 60)
    result = runner.invoke(app, ["drift", str(drift_run), "--file", str(batch),
                                 "--output", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "out" / "drift.json").read_text())
    drifted = {s["name"] for s in report["signals"] if s["drifted"]}
    assert {"token_length", "embedding", "vocabulary"} <= drifted
    # A second report into the same folder would overwrite the first: refused.
    again = runner.invoke(app, ["drift", str(drift_run), "--file", str(batch),
                                "--output", str(tmp_path / "out")])
    assert again.exit_code == 5 and "already holds" in again.output


def test_run_without_reference_names_build_reference(trained_run: Path, tmp_path: Path) -> None:
    batch = _write_texts(tmp_path / "b.txt", ["a fine film"] * 40)
    result = runner.invoke(app, ["drift", str(trained_run), "--file", str(batch),
                                 "--output", str(tmp_path / "out")])
    assert result.exit_code == 5
    assert "--build-reference" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("content", "args", "code", "needle"), [
    ("", [], 3, "holds no reviews"),
    ("a fine film\n" * 5, [], 3, "at least 30"),
    (None, ["--text-column", "review"], 3, "no column 'review'"),
    ("a fine film\n" * 40, ["--alpha", "1.5"], 2, "--alpha"),
])
def test_bad_input_is_one_line_and_not_exit_1(drift_run: Path, tmp_path: Path, content: str | None,
                                               args: list[str], code: int, needle: str) -> None:
    if content is None:
        batch = tmp_path / "b.csv"
        batch.write_text("text\nfine\n", encoding="utf-8")
    else:
        batch = tmp_path / "b.txt"
        batch.write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["drift", str(drift_run), "--file", str(batch), *args,
                                 "--output", str(tmp_path / "out")])
    assert result.exit_code == code, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_no_action_is_a_config_error(drift_run: Path) -> None:
    result = runner.invoke(app, ["drift", str(drift_run)])
    assert result.exit_code == 2 and "--build-reference" in result.output


def test_window_is_bounded_and_reports_off_the_request_path(drift_run: Path) -> None:
    from imdb_sentiment.inference.predictor import Predictor
    from imdb_sentiment.monitoring.reference import load_reference
    from imdb_sentiment.monitoring.window import DriftWindow

    window = DriftWindow(Predictor.from_path(drift_run, precision="fp32"),
                         load_reference(drift_run), size=50, refresh_s=3600)
    window.add(["film"] * 10)
    assert window.refresh() is None and window.gauges() == {}  # too few texts yet
    window.add(["film"] * 10_000)
    assert len(window) == 50
    report = window.refresh()
    assert report is not None and report["drifted"] is True
    gauges = window.gauges()
    assert gauges["drifted"] == 1.0 and gauges["token_length.drifted"] == 1.0
    window.start()
    window.stop()
