"""The CLI end to end, through Typer's runner and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import synthetic_frame, tiny_train_args
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app

runner = CliRunner()


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def one_error_line(result) -> str:
    """The error message, checked to be a single line with no traceback."""
    text = result.output.strip()
    assert "Traceback" not in text
    # Commands may print progress (e.g. the resolved config) before failing; the error is
    # the last line, and a single one.
    assert "error:" in text, text
    message = text[text.rindex("error:") :]
    assert "\n" not in message, message
    return message


def test_help_and_version() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for verb in ("download", "train", "eval", "predict"):
        assert verb in result.output
    assert invoke("--version").output.startswith("imdb-sentiment ")


@pytest.mark.parametrize(
    ("verb", "default"),
    [
        ("predict", "[default: the latest run]"),
        ("eval", "[default: the one the run trained on]"),
        ("serve", "[default: the latest run]"),
        ("train", "[default: data/imdb]"),
        ("predict", "[default: 32]"),  # the defaults Typer adds itself stay too
    ],
)
def test_help_keeps_every_default(verb: str, default: str) -> None:
    # Rich markup took "[default: ...]" written in a help text for a tag and dropped it.
    result = invoke(verb, "--help")
    assert result.exit_code == 0
    assert default in " ".join(result.output.split()), result.output


def test_full_cycle_download_train_eval_predict(
    tiny_model: Path, synthetic_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data" / "imdb"
    result = invoke("download", "--source", str(synthetic_source), "--output", str(data))
    assert result.exit_code == 0, result.output
    assert (data / "manifest.json").is_file() and (data / "test.parquet").is_file()

    again = invoke("download", "--source", str(synthetic_source), "--output", str(data))
    assert again.exit_code != 0 and "--force" in one_error_line(again)

    result = invoke(*tiny_train_args(tiny_model, data, tmp_path / "runs", "cycle"))
    assert result.exit_code == 0, result.output
    assert "marked as the latest run" in result.output

    result = invoke("eval")  # latest run, test split
    assert result.exit_code == 0, result.output
    metrics = json.loads(
        (tmp_path / "runs" / "cycle" / "eval" / "test" / "metrics.json").read_text()
    )
    assert metrics["n"] == 100 and metrics["accuracy"] > 0.8
    assert (tmp_path / "runs" / "cycle" / "eval" / "test" / "predictions.parquet").is_file()

    result = invoke(
        "predict", "--json", "a wonderful brilliant superb film", "awful boring terrible waste"
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["label"] for r in rows] == ["positive", "negative"]
    assert 0.5 < rows[0]["positive_probability"] <= 1


def test_predict_from_file_stdin_and_output(trained_run: Path, tmp_path: Path) -> None:
    reviews = synthetic_frame(300, seed=9)
    txt = tmp_path / "reviews.txt"
    txt.write_text("\n".join(reviews["text"]) + "\n\n")
    out = tmp_path / "preds.csv"
    result = invoke(
        "predict", "--model", str(trained_run), "--file", str(txt), "--output", str(out)
    )
    assert result.exit_code == 0, result.output
    import pandas as pd

    preds = pd.read_csv(out)
    assert len(preds) == 300
    accuracy = ((preds["label"] == "positive").astype(int) == reviews["label"]).mean()
    assert accuracy > 0.8

    again = invoke("predict", "--model", str(trained_run), "--file", str(txt), "--output", str(out))
    assert again.exit_code != 0 and "--overwrite" in one_error_line(again)

    result = invoke(
        "predict",
        "--model",
        str(trained_run),
        "-",
        input="a superb moving film\nboring dull waste\n",
    )
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("positive") and lines[1].startswith("negative")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["train", "--data", "{tmp}/nowhere"], 3, "no prepared data"),
        (["train", "--lr", "-1e-5"], 2, "'training.learning_rate': must be positive"),
        (["train", "--set", "training.lr=1"], 2, "unknown config key 'training.lr'"),
        (
            ["train", "--resume", "--run-name", "ghost", "--output-dir", "{tmp}/runs"],
            5,
            "nothing to resume",
        ),
        (["train", "--resume"], 5, "--resume needs --run-name"),
        (["predict", "great film"], 4, "no trained run found"),
        (["predict", "--model", "{tmp}", "great film"], 4, "is not a model"),
        (["predict", "--model", "{tmp}/missing", "great film"], 4, "no such run or model"),
        (["eval", "{tmp}/missing"], 4, "no such run or model"),
        (["download", "--source", "{tmp}/missing-folder"], 3, "no such file or folder"),
        (["train", "--config", "{tmp}/missing.yaml"], 2, "config file not found"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code(
    args: list[str], code: int, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMDB_SENTIMENT_RUNS", str(tmp_path / "runs"))
    result = invoke(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == code, result.output
    assert message in one_error_line(result)


def test_predict_rejects_empty_reviews_and_files(trained_run: Path, tmp_path: Path) -> None:
    result = invoke("predict", "--model", str(trained_run), "  ")
    assert result.exit_code == 3 and "review 1 is empty" in one_error_line(result)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    result = invoke("predict", "--model", str(trained_run), "--file", str(empty))
    assert result.exit_code == 3
    one_error_line(result)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    result = invoke("predict", "--model", str(trained_run), "--file", str(latin))
    assert result.exit_code == 3 and "UTF-8" in one_error_line(result)
    result = invoke("predict", "--model", str(trained_run))
    assert result.exit_code == 3 and "nothing to predict" in one_error_line(result)


def test_eval_on_a_labelled_file_with_string_labels(trained_run: Path, tmp_path: Path) -> None:
    frame = synthetic_frame(60, seed=5)
    frame["sentiment"] = frame["label"].map({0: "neg", 1: "positive"})
    frame = frame.rename(columns={"text": "review"}).drop(columns=["label"])
    path = tmp_path / "labelled.csv"
    frame.to_csv(path, index=False)
    result = invoke(
        "eval",
        str(trained_run),
        "--file",
        str(path),
        "--text-column",
        "review",
        "--label-column",
        "sentiment",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((trained_run / "eval" / "file-labelled" / "metrics.json").read_text())
    assert metrics["n"] == 60
    bad = tmp_path / "bad.csv"
    frame.assign(sentiment="meh").to_csv(bad, index=False)
    result = invoke(
        "eval",
        str(trained_run),
        "--file",
        str(bad),
        "--text-column",
        "review",
        "--label-column",
        "sentiment",
    )
    assert result.exit_code == 3 and "unknown label values" in one_error_line(result)


def test_existing_run_needs_overwrite(
    tiny_model: Path, prepared_data: Path, trained_run: Path, tmp_path: Path
) -> None:
    result = invoke(*tiny_train_args(tiny_model, prepared_data, trained_run.parent, "tiny"))
    assert result.exit_code == 5
    assert "--overwrite" in one_error_line(result)


def test_subprocess_console_script_and_module(trained_run: Path, tmp_path: Path) -> None:
    env = {**os.environ, "IMDB_SENTIMENT_RUNS": str(tmp_path / "none")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "imdb_sentiment",
            "predict",
            "--model",
            str(trained_run),
            "--json",
            "superb gripping film",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["label"] == "positive"
    proc = subprocess.run(
        [sys.executable, "-m", "imdb_sentiment", "predict", "great"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 4
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: no trained run found")
