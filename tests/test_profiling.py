"""``train --profile`` and ``predict --profile``: a loadable Chrome trace and the top operators,
nothing when off, and bad flags refused in one line."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from imdb_sentiment.profiling import StepProfiler, trainer_callback

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_profile(folder: Path, steps: int) -> None:
    """A Chrome trace with operator events and the top-operators files."""
    trace = json.loads((folder / "trace.json").read_text())
    names = {e.get("name", "") for e in trace["traceEvents"]}
    assert any(n.startswith("aten::") for n in names), sorted(names)[:20]
    top = json.loads((folder / "top_ops.json").read_text())
    assert top["steps"] == steps and top["activities"][0] == "cpu"
    ops = top["operators"]
    assert ops and all({"op", "self_cpu_ms", "share", "calls"} <= set(r) for r in ops)
    assert 0 < sum(r["share"] for r in ops) <= 1.0001
    assert "Self CPU" in (folder / "top_ops.txt").read_text()


def test_train_profile_writes_trace_into_the_run(
    tiny_model: Path, prepared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # Whether so short a run learns is beside the point: let it be saved either way.
    monkeypatch.setattr("imdb_sentiment.metrics.classification.at_chance", lambda _m: False)
    # 32 reviews at batch 8: 4 steps, just the window of 1 + 1 + 2.
    result = invoke(
        "train",
        "--model",
        str(tiny_model),
        "--data",
        str(prepared_data),
        "--output-dir",
        str(tmp_path / "runs"),
        "--run-name",
        "prof",
        "--max-length",
        "64",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--max-train-samples",
        "32",
        "--max-eval-samples",
        "16",
        "--report-to",
        "none",
        "--precision",
        "fp32",
        "--profile",
        "--profile-steps",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert_profile(tmp_path / "runs" / "prof" / "profile", steps=2)
    assert "top operators by self CPU time" in result.output
    assert not (tmp_path / "profile").exists()  # nowhere but the run


def test_predict_profile_keeps_predictions(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    reviews = tmp_path / "reviews.txt"
    reviews.write_text(
        "\n".join(
            [
                "a wonderful brilliant film",
                "awful boring dull plot",
                "the movie was quite a story",
                "superb",
                "worst hour",
            ]
            * 4
        )
    )
    common = ["predict", "--model", str(trained_run), "--file", str(reviews), "--batch-size", "4"]
    plain = invoke(*common, "--output", "plain.csv")
    assert plain.exit_code == 0, plain.output
    assert not (tmp_path / "profiles").exists()  # profiling off writes nothing
    result = invoke(
        *common,
        "--output",
        "profiled.csv",
        "--profile",
        "--profile-dir",
        "prof",
        "--profile-steps",
        "3",
    )
    assert result.exit_code == 0, result.output
    assert_profile(tmp_path / "prof", steps=3)
    names = {
        r["op"] for r in json.loads((tmp_path / "prof" / "top_ops.json").read_text())["operators"]
    }
    assert {"tokenize", "model batch"} <= names
    pd.testing.assert_frame_equal(pd.read_csv("plain.csv"), pd.read_csv("profiled.csv"))
    again = invoke(*common, "--profile", "--profile-dir", "prof")
    assert again.exit_code == 5 and "already holds a profile" in again.output
    # Without --profile-dir it lands in a new folder under profiles/.
    default = invoke(*common, "--json", "--profile", "--profile-steps", "1")
    assert default.exit_code == 0, default.output
    (folder,) = (tmp_path / "profiles").iterdir()
    assert_profile(folder, steps=1)


def test_training_off_writes_no_profile(trained_run: Path) -> None:
    assert not (trained_run / "profile").exists()


@pytest.mark.parametrize("verb", ["train", "predict"])
@pytest.mark.parametrize("steps", ["0", "-3", "100000"])
def test_bad_profile_steps_exit_2_in_one_line(
    verb: str, steps: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [verb, "--profile", "--profile-steps", steps]
    result = invoke(*args, *(["great film"] if verb == "predict" else []))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "--profile-steps must be between 1 and" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_work_ending_before_the_window_writes_nothing(tmp_path: Path) -> None:
    messages: list[str] = []
    profiler = StepProfiler(tmp_path / "p", active=3)
    callback = trainer_callback(profiler, messages.append)
    args = SimpleNamespace(output_dir=str(tmp_path / "run" / "checkpoints"))
    state = SimpleNamespace(is_world_process_zero=True, global_step=1)
    callback.on_train_begin(args, state, None)
    callback.on_step_end(args, state, None)
    callback.on_train_end(args, state, None)
    assert profiler.result is None and not (tmp_path / "run" / "profile").exists()
    assert "needs 5" in messages[0]


def test_other_processes_are_not_profiled(tmp_path: Path) -> None:
    profiler = StepProfiler(tmp_path / "p", active=1, wait=0, warmup=0)
    callback = trainer_callback(profiler, print)
    args = SimpleNamespace(output_dir=str(tmp_path / "run" / "checkpoints"))
    state = SimpleNamespace(is_world_process_zero=False, global_step=3)
    for _ in range(3):
        callback.on_step_end(args, state, None)
    callback.on_train_end(args, state, None)
    assert profiler.result is None and not list(tmp_path.iterdir())
