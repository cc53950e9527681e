"""A run that succeeded drops its Trainer checkpoints unless ``--keep-checkpoints``; a run
that stopped short (interrupted, failed, at chance) keeps them for ``--resume``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import tiny_train_args, tiny_train_overrides
from transformers import TrainerCallback
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from imdb_sentiment.config import resolve
from imdb_sentiment.errors import RunError, TrainingFailedError
from imdb_sentiment.training.loop import TrainResult, train
from imdb_sentiment.training.signals import TrainingInterrupted

runner = CliRunner()
SMALL = ("--max-train-samples", "48", "--max-eval-samples", "16", "--epochs", "1")


@pytest.fixture(autouse=True)
def never_at_chance(monkeypatch: pytest.MonkeyPatch) -> None:
    """These runs are about files, not quality: a few steps of a tiny encoder may be at chance."""
    monkeypatch.setattr("imdb_sentiment.metrics.classification.at_chance", lambda _m: False)


def _small(model: Path, data: Path, runs: Path, name: str, **extra: Any) -> Any:
    overrides = {
        **tiny_train_overrides(model, data, runs, name),
        "data.max_train_samples": 48,
        "data.max_eval_samples": 16,
        "training.epochs": 1,
        **extra,
    }
    return resolve(overrides=overrides)


def _state(run: Path) -> str:
    return str(json.loads((run / "status.json").read_text())["state"])


def _source(run: Path, key: str = "training.keep_checkpoints") -> str:
    return str(yaml.safe_load((run / "config_sources.yaml").read_text())["sources"][key])


def _kept(run: Path) -> bool:
    return bool(yaml.safe_load((run / "config.yaml").read_text())["training"]["keep_checkpoints"])


def test_a_finished_run_drops_its_checkpoints(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, tiny_train_args(tiny_model, prepared_data, tmp_path, "r", *SMALL))
    assert result.exit_code == 0, result.output
    run = tmp_path / "r"
    assert not (run / "checkpoints").exists()
    assert (run / "model" / "model.safetensors").is_file() and _state(run) == "succeeded"
    assert _kept(run) is False
    assert _source(run) == "default"
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["best_checkpoint"] is None  # it was removed; the step it was is kept
    assert isinstance(metrics["best_step"], int) and metrics["best_step"] > 0

    # --resume of it still changes nothing, and says why it cannot train longer ...
    messages: list[str] = []
    done = train(_small(tiny_model, prepared_data, tmp_path, "r"), resume=True, log=messages.append)
    assert done.already_finished
    assert any("checkpoints were removed" in m and "--keep-checkpoints" in m for m in messages)
    # ... and asked to, it refuses in one line that says how to start it again.
    longer = _small(tiny_model, prepared_data, tmp_path, "r", **{"training.epochs": 2})
    with pytest.raises(RunError, match="no complete checkpoint; start it again with"):
        train(longer, resume=True, log=lambda _m: None)


def test_keep_checkpoints_keeps_them(tiny_model: Path, prepared_data: Path, tmp_path: Path) -> None:
    args = tiny_train_args(tiny_model, prepared_data, tmp_path, "r", *SMALL, "--keep-checkpoints")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "r"
    assert sorted((run / "checkpoints").glob("checkpoint-*"))
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert Path(metrics["best_checkpoint"]).name == f"checkpoint-{metrics['best_step']}"
    assert Path(metrics["best_checkpoint"]).is_dir()
    assert _kept(run) is True
    assert _source(run) == "flag"


class _StopAfterFirstSave(TrainerCallback):  # type: ignore[misc]
    """Ctrl-C once the first checkpoint is on disk."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt


def test_an_interrupted_run_keeps_its_checkpoints_and_resumes(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    cfg = _small(tiny_model, prepared_data, tmp_path, "r", **{"training.epochs": 2})
    with pytest.raises(TrainingInterrupted, match="resume with"):
        train(cfg, log=lambda _m: None, callbacks=[_StopAfterFirstSave()])
    run = tmp_path / "r"
    assert _state(run) == "interrupted"
    assert sorted((run / "checkpoints").glob("checkpoint-*"))

    messages: list[str] = []
    cfg = _small(tiny_model, prepared_data, tmp_path, "r", **{"training.epochs": 2})
    result = train(cfg, resume=True, log=messages.append)
    assert any(m.startswith("resuming from") for m in messages)
    assert not result.already_finished and _state(run) == "succeeded"
    assert not (run / "checkpoints").exists()  # finished now: dropped like any finished run


def test_a_run_at_chance_keeps_its_checkpoints(
    tiny_model: Path, prepared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("imdb_sentiment.metrics.classification.at_chance", lambda _m: True)
    with pytest.raises(TrainingFailedError, match="at chance"):
        train(_small(tiny_model, prepared_data, tmp_path, "r"), log=lambda _m: None)
    run = tmp_path / "r"
    assert _state(run) == "failed"
    assert sorted((run / "checkpoints").glob("checkpoint-*"))


def test_a_failure_to_remove_them_is_one_warning(
    tiny_model: Path, prepared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(shutil, "rmtree", refuse)
    result = runner.invoke(app, tiny_train_args(tiny_model, prepared_data, tmp_path, "r", *SMALL))
    assert result.exit_code == 0, result.output
    run = tmp_path / "r"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert f"could not remove {run / 'checkpoints'} (Permission denied)" in warnings[0]
    assert "Traceback" not in result.output
    assert _state(run) == "succeeded" and (run / "model" / "model.safetensors").is_file()
    assert (run / "checkpoints").is_dir()


def test_search_keep_checkpoints_reaches_each_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imdb_sentiment.training import search as search_module
    from imdb_sentiment.training.search_space import parse_space
    from imdb_sentiment.training.study import SearchSettings

    seen: list[bool] = []

    def fake_train(cfg: Any, **_kwargs: Any) -> TrainResult:
        seen.append(cfg.training.keep_checkpoints)
        run = Path(cfg.run.output_dir) / str(cfg.run.name)
        (run / "checkpoints" / "checkpoint-1").mkdir(parents=True)
        return TrainResult(run, {"accuracy": 0.9}, 1)

    monkeypatch.setattr(search_module.loop, "train", fake_train)
    overrides = tiny_train_overrides(Path("tiny"), Path("data"), tmp_path / "runs", "unused")
    for key in ("run.name", "training.learning_rate"):  # the trial's, not fixed
        overrides.pop(key)
    source = search_module.ConfigSource(overrides=overrides)
    space = parse_space({"training.learning_rate": [1e-3]}, "test")
    for name, keep in (("kept", True), ("dropped", False)):
        settings = SearchSettings(name=name, trials=1, space=space, keep_checkpoints=keep)
        search_module.search(source, settings, log=lambda _m: None)
        assert (tmp_path / "runs" / name / "trial-000" / "checkpoints").is_dir() is keep
    assert seen == [True, False]
