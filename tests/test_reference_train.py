"""``imdb-sentiment train`` writes the drift reference beside the model, once, and a failure to
build it never costs the trained model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from tests.conftest import synthetic_frame, tiny_train_args

runner = CliRunner()


@pytest.fixture
def fake_training(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``train`` returns a copy of the shared (real, tiny) run at once: the step after training
    is what's tested, and training again adds nothing to it but time."""
    from imdb_sentiment.training import loop

    run = tmp_path / "runs" / "copied"
    shutil.copytree(trained_run, run)
    shutil.rmtree(run / "reference", ignore_errors=True)
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]

    def train(*_args: Any, **_kwargs: Any) -> loop.TrainResult:
        return loop.TrainResult(run, metrics, 1)

    monkeypatch.setattr(loop, "train", train)
    return run


def test_train_writes_the_reference_and_the_card_lists_it(
    fake_training: Path, tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app, tiny_train_args(tiny_model, prepared_data, tmp_path / "runs", "copied")
    )
    assert result.exit_code == 0, result.output
    run = fake_training
    payload = json.loads((run / "reference" / "reference.json").read_text())
    assert payload["schema_version"] == 1
    validation_rows = len(pd.read_parquet(run / "validation_predictions.parquet"))
    assert payload["n_reviews"] == validation_rows
    assert (run / "reference" / "embeddings.npy").is_file()
    card = (run / "model" / "README.md").read_text()
    assert "## Drift reference" in card and "reference/reference.json" in card
    assert "wrote the drift reference" in result.output
    # The run can be tested against at once, without --build-reference.
    batch = tmp_path / "batch.txt"
    batch.write_text("\n".join(synthetic_frame(60, seed=5)["text"]) + "\n", encoding="utf-8")
    drift = runner.invoke(
        app, ["drift", str(run), "--file", str(batch), "--output", str(tmp_path / "out")]
    )
    assert drift.exit_code in (0, 1), drift.output


def test_no_reference_skips_it(
    fake_training: Path, tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        tiny_train_args(tiny_model, prepared_data, tmp_path / "runs", "copied", "--no-reference"),
    )
    assert result.exit_code == 0, result.output
    assert not (fake_training / "reference").exists()
    assert "drift reference" not in result.output


def test_a_failing_reference_keeps_the_model_and_warns(
    fake_training: Path,
    tiny_model: Path,
    prepared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imdb_sentiment.monitoring import reference

    def broken(*_args: Any, **_kwargs: Any) -> Path:
        raise RuntimeError("out of memory\nwith a second line")

    monkeypatch.setattr(reference, "build_reference", broken)
    result = runner.invoke(
        app, tiny_train_args(tiny_model, prepared_data, tmp_path / "runs", "copied")
    )
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1, result.output
    assert "out of memory" in warning[0]
    assert f"imdb-sentiment drift {fake_training} --build-reference" in warning[0]
    assert "Traceback" not in result.output
    assert (fake_training / "model" / "model.safetensors").is_file()
    assert json.loads((fake_training / "status.json").read_text())["state"] == "succeeded"


def test_only_the_main_process_writes_it(
    fake_training: Path,
    tiny_model: Path,
    prepared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RANK", "1")
    result = runner.invoke(
        app, tiny_train_args(tiny_model, prepared_data, tmp_path / "runs", "copied")
    )
    assert result.exit_code == 0, result.output
    assert not (fake_training / "reference").exists()


@pytest.mark.parametrize(("flags", "passed"), [([], False), (["--no-reference"], True)])
def test_the_launcher_passes_no_reference_on(
    tiny_model: Path,
    prepared_data: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    passed: bool,
) -> None:
    from imdb_sentiment.training import distributed

    launched: list[list[str]] = []
    monkeypatch.setattr(distributed, "relaunch", lambda _n, args: launched.append(args) or 0)
    result = runner.invoke(
        app,
        tiny_train_args(
            tiny_model, prepared_data, tmp_path / "runs", "d", "--num-processes", "2", *flags
        ),
    )
    assert result.exit_code == 0, result.output
    assert ("--no-reference" in launched[0]) is passed


def test_reference_samples_a_label_ordered_split_at_random(
    trained_run: Path, tmp_path: Path
) -> None:
    # A prepared validation split is ordered by label: its first reviews are all negative.
    from imdb_sentiment.monitoring.reference import reference_texts

    run = tmp_path / "run"
    run.mkdir()
    texts = [f"negative {i}" for i in range(100)] + [f"positive {i}" for i in range(100)]
    pd.DataFrame({"text": texts}).to_parquet(run / "validation_predictions.parquet")
    chosen, _source, available = reference_texts(run, 50)
    assert available == 200 and len(chosen) == 50
    positives = sum(t.startswith("positive") for t in chosen)
    assert 15 <= positives <= 35
    assert chosen == reference_texts(run, 50)[0]  # seeded: the same sample every time
