"""``imdb-sentiment search``: trials, pruning, resuming the SQLite study, best.yaml, the CLI.

One test trains for real (two tiny trials, a few reviews each) to hold the wiring into Trainer:
the pruning hook sees every evaluation and a trial at chance does not end the study. The others
stand a scripted ``train`` in for the real one (each trial's accuracy per epoch is set by the
test), so ranking, pruning and resuming are checked in milliseconds and without chance.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from conftest import tiny_train_overrides
from typer.testing import CliRunner

from imdb_sentiment.atomic import write_json
from imdb_sentiment.cli.app import app
from imdb_sentiment.config import Config, resolve
from imdb_sentiment.errors import ConfigError, RunError, TrainingFailedError
from imdb_sentiment.training import loop
from imdb_sentiment.training.loop import TrainResult
from imdb_sentiment.training.search import (
    LOCK_FILE,
    STUDY_FILE,
    ConfigSource,
    SearchSettings,
    search,
)
from imdb_sentiment.training.search_space import load_space, parse_space
from imdb_sentiment.training.signals import TrainingInterrupted

optuna = pytest.importorskip("optuna")
runner = CliRunner()
LRS = [1e-3, 2e-3, 5e-3]
QUIET: Callable[[str], None] = lambda _m: None  # noqa: E731


def _source(
    tmp_path: Path, model: Path | str = "tiny", data: Path | str = "data", **extra: Any
) -> ConfigSource:
    overrides = tiny_train_overrides(Path(model), Path(data), tmp_path / "runs", "unused")
    for key in ("run.name", "training.learning_rate"):
        overrides.pop(key)
    return ConfigSource(overrides={**overrides, **extra})


def _settings(trials: int, name: str = "s", **extra: Any) -> SearchSettings:
    space = parse_space({"training.learning_rate": LRS}, "test")
    return SearchSettings(name=name, trials=trials, space=space, **extra)


class ScriptedTrain:
    """Stands in for ``loop.train``: trial ``i`` reports ``curves[i]`` (one accuracy per epoch)
    to the callbacks, then succeeds with the last one, or does what ``curves[i]`` says."""

    def __init__(self, curves: list[Any]) -> None:
        self.curves = curves
        self.configs: list[Config] = []
        self.groups: list[str | None] = []

    def __call__(
        self,
        cfg: Config,
        *,
        resume: bool = False,
        log: Any = print,
        callbacks: list[Any] | None = None,
    ) -> TrainResult:
        run_dir = Path(cfg.run.output_dir) / str(cfg.run.name)
        (run_dir / "checkpoints" / "checkpoint-1").mkdir(parents=True)
        self.configs.append(cfg)
        self.groups.append(os.environ.get("WANDB_RUN_GROUP"))
        curve = self.curves[len(self.configs) - 1]
        if isinstance(curve, BaseException):
            raise curve
        for epoch, accuracy in enumerate(curve, start=1):
            state = SimpleNamespace(epoch=float(epoch), is_world_process_zero=True)
            for callback in callbacks or []:
                callback.on_evaluate(None, state, None, metrics={"eval_accuracy": accuracy})
        if curve[-1] <= 0.52:
            raise TrainingFailedError("TRAINING FAILED: validation accuracy at chance")
        return TrainResult(run_dir, {"accuracy": curve[-1], "f1": curve[-1]}, 1)


def _scripted(monkeypatch: pytest.MonkeyPatch, curves: list[Any]) -> ScriptedTrain:
    fake = ScriptedTrain(curves)
    monkeypatch.setattr(loop, "train", fake)
    return fake


def _study(search_dir: Path) -> Any:
    return optuna.load_study(
        study_name=search_dir.name, storage=f"sqlite:///{search_dir / STUDY_FILE}"
    )


# --------------------------------------------------------------------------- real tiny training


def test_real_trials_report_each_evaluation_and_survive_a_trial_at_chance(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    source = _source(
        tmp_path,
        tiny_model,
        prepared_data,
        **{
            "training.epochs": 1,
            "data.max_train_samples": 16,
            "data.max_eval_samples": 16,
            "model.max_length": 16,
        },
    )
    settings = SearchSettings(
        name="real",
        trials=2,
        prune=False,
        space=parse_space({"training.learning_rate": [1e-9]}, "test"),
    )
    result = search(source, settings, log=QUIET)

    assert [r.state for r in result.rows] == ["at chance", "at chance"]
    assert result.best_config is None  # nothing completed, so nothing to recommend
    for trial in _study(result.search_dir).trials:
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert list(trial.intermediate_values) == [100]  # the Trainer's one evaluation
        run = Path(trial.user_attrs["run_dir"])
        assert run.parent == tmp_path / "runs" / "real"
        assert json.loads((run / "status.json").read_text())["state"] == "failed"
        assert not (run / "checkpoints").exists()
    assert not (result.search_dir / LOCK_FILE).exists()


# ------------------------------------------------------------------------------ scripted trials


def test_trials_are_ranked_and_best_yaml_trains(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _scripted(monkeypatch, [[0.7, 0.80], [0.8, 0.90], [0.78, 0.88]])
    result = search(_source(tmp_path), _settings(3), log=QUIET)

    assert [r.number for r in result.rows] == [1, 2, 0], result.rows
    assert [r.accuracy for r in result.rows] == [0.90, 0.88, 0.80]
    assert all(r.state == "complete" for r in result.rows)
    assert fake.groups == ["s"] * 3  # one W&B group for the search, then the variable is gone
    assert "WANDB_RUN_GROUP" not in os.environ
    assert all(not (Path(str(r.run_dir)) / "checkpoints").exists() for r in result.rows)
    ranked = json.loads((result.search_dir / "trials.json").read_text())
    assert [r["number"] for r in ranked] == [1, 2, 0]

    # best.yaml is what trial 1 trained with, minus its run folder, and `train` takes it.
    best = result.best_config
    assert best is not None and best == tmp_path / "runs" / "s" / "best.yaml"
    assert "run" not in yaml.safe_load(best.read_text())
    trained_with = fake.configs[1]
    assert resolve(best).to_dict() == {
        **trained_with.to_dict(),
        "run": dataclasses.asdict(Config().run),
    }

    calls: list[Config] = []
    monkeypatch.setattr(
        loop,
        "train",
        lambda cfg, **_kw: (
            calls.append(cfg)
            or TrainResult(
                tmp_path / "r",
                {"accuracy": 0.9, "f1": 0.9, "roc_auc": 0.9, "log_loss": 0.3, "n": 5},
                1,
            )
        ),
    )
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["train", "--config", str(best), "--run-name", "final"])
    assert out.exit_code == 0, out.output
    assert calls[0].training.learning_rate == trained_with.training.learning_rate
    assert calls[0].run.name == "final"


def test_pruning_stops_a_trial_that_trails_the_median(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _scripted(monkeypatch, [[0.80, 0.90], [0.85, 0.90], [0.55, 0.95]])
    result = search(_source(tmp_path), _settings(3), log=QUIET)

    pruned = next(r for r in result.rows if r.number == 2)
    assert pruned.state == "pruned" and pruned.accuracy == 0.55
    assert result.rows[-1] is pruned
    status = json.loads((tmp_path / "runs" / "s" / "trial-002" / "status.json").read_text())
    assert status["state"] == "pruned" and "epoch 1" in status["reason"]


def test_without_pruning_every_trial_finishes_and_one_at_chance_does_not_end_the_study(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _scripted(monkeypatch, [[0.80, 0.90], [0.85, 0.90], [0.55, 0.95], [0.5]])
    result = search(_source(tmp_path), _settings(4, prune=False), log=QUIET)
    assert [(r.number, r.state) for r in result.rows] == [
        (2, "complete"),
        (0, "complete"),
        (1, "complete"),
        (3, "at chance"),
    ]
    assert "trial 2" in (tmp_path / "runs" / "s" / "best.yaml").read_text()


def test_an_interrupted_search_resumes_with_the_same_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stop = TrainingInterrupted("training stopped by Ctrl-C (SIGINT)", 130)
    first = _scripted(monkeypatch, [[0.8], stop])
    with pytest.raises(TrainingInterrupted, match="run the same command to resume") as caught:
        search(_source(tmp_path), _settings(3), log=QUIET)
    assert caught.value.exit_code == 130
    search_dir = tmp_path / "runs" / "s"
    assert not (search_dir / LOCK_FILE).exists()
    interrupted_lr = first.configs[1].training.learning_rate

    second = _scripted(monkeypatch, [[0.7], [0.9], [0.6]])
    result = search(_source(tmp_path), _settings(3), log=QUIET)

    # The interrupted trial is tried again first, with its settings; one more makes three.
    assert second.configs[0].training.learning_rate == interrupted_lr
    assert result.ran == 2
    states = {r.number: r.state for r in result.rows}
    assert states == {0: "complete", 1: "interrupted", 2: "complete", 3: "complete"}
    assert len(_study(search_dir).trials) == 4

    # Asked for no more than it holds, the search runs nothing and ranks again.
    third = _scripted(monkeypatch, [])
    assert search(_source(tmp_path), _settings(3), log=QUIET).ran == 0
    assert third.configs == []


def test_a_killed_trial_is_retried_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _scripted(monkeypatch, [[0.8]])
    search(_source(tmp_path), _settings(1), log=QUIET)
    killed = _study(tmp_path / "runs" / "s").ask()  # left running, as by kill -9 ...
    killed.suggest_categorical("training.learning_rate", LRS)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_json(
        tmp_path / "runs" / "s" / LOCK_FILE,  # ... which leaves its lock behind
        {"pid": gone.pid, "host": socket.gethostname()},
    )

    fake = _scripted(monkeypatch, [[0.9]])
    result = search(_source(tmp_path), _settings(2), log=QUIET)
    assert fake.configs[0].training.learning_rate == killed.params["training.learning_rate"]
    assert [r.state for r in result.rows] == ["complete", "complete", "interrupted"]


def test_a_resumed_search_draws_new_settings_and_refuses_another_space_or_base(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    space = parse_space({"training.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}, "t")
    fake = _scripted(monkeypatch, [[0.8], [0.8]])
    search(_source(tmp_path), SearchSettings(name="s", trials=1, space=space), log=QUIET)
    search(_source(tmp_path), SearchSettings(name="s", trials=2, space=space), log=QUIET)
    first, second = (c.training.learning_rate for c in fake.configs)
    assert first != second  # the sampler's seed moves on with the study

    with pytest.raises(RunError, match="different search space"):
        search(_source(tmp_path), _settings(3), log=QUIET)
    with pytest.raises(RunError, match="different settings"):
        search(
            _source(tmp_path, **{"training.epochs": 3}),
            SearchSettings(name="s", trials=3, space=space),
            log=QUIET,
        )


def test_each_trial_logs_to_its_own_wandb_run_in_the_search_group(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wandb = pytest.importorskip("wandb")
    from wandb.proto import wandb_internal_pb2
    from wandb_records import _payloads

    from imdb_sentiment import tracking

    def train_with_wandb(cfg: Config, **_kw: Any) -> TrainResult:
        # What training does with W&B on: point it at the run folder, start a run (as the
        # Trainer's callback does), log; the search closes it.
        run_dir = Path(cfg.run.output_dir) / str(cfg.run.name)
        run_dir.mkdir(parents=True)
        tracking.configure_wandb(run_dir, "p", run_dir.name, QUIET)
        wandb.init(project="p", name=run_dir.name).log({"eval/accuracy": 0.8})
        return TrainResult(run_dir, {"accuracy": 0.8}, 1)

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(loop, "train", train_with_wandb)
    search(_source(tmp_path), _settings(2, name="wb"), log=QUIET)
    for trial in ("trial-000", "trial-001"):
        files = list((tmp_path / "runs" / "wb" / trial / "wandb").glob("offline-run-*/*.wandb"))
        assert len(files) == 1, trial  # not both in the first trial's folder
        record = wandb_internal_pb2.Record()
        runs = []
        for payload in _payloads(files[0].read_bytes()):
            record.ParseFromString(payload)
            if record.WhichOneof("record_type") == "run":
                runs.append((record.run.display_name, record.run.run_group))
        assert runs[0] == (trial, "wb")


def test_a_second_command_on_a_running_search_is_refused(tmp_path: Path) -> None:
    from imdb_sentiment.runs.status import this_process

    search_dir = tmp_path / "runs" / "s"
    search_dir.mkdir(parents=True)
    write_json(search_dir / LOCK_FILE, this_process())  # this very process: alive
    with pytest.raises(RunError, match="being searched by pid"):
        search(_source(tmp_path), _settings(1), log=QUIET)


def test_bad_settings_are_refused_before_any_trial(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _scripted(monkeypatch, [])
    with pytest.raises(ConfigError, match="both searched and fixed"):
        search(_source(tmp_path, **{"training.learning_rate": 1e-3}), _settings(1), log=QUIET)
    with pytest.raises(ConfigError, match="--trials must be at least 1"):
        search(_source(tmp_path), _settings(0), log=QUIET)
    wide = SearchSettings(space=parse_space({"training.weight_decay": {"low": -1, "high": 1}}, "t"))
    with pytest.raises(ConfigError, match=r"search space: .*weight_decay"):
        search(_source(tmp_path), wide, log=QUIET)
    assert fake.configs == [] and not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------------- search space


def test_space_files_narrow_the_search(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "training:\n  learning_rate: {low: 1e-5, high: 1e-4, log: true}\n"
        "  batch_size: {low: 8, high: 32, step: 8}\nmodel.truncation: [head, tail]\n"
    )
    space = load_space(path)
    assert set(space) == {"training.learning_rate", "training.batch_size", "model.truncation"}
    assert space["training.learning_rate"].describe() == "log-uniform 1e-05..0.0001"
    assert space["training.batch_size"].integer
    assert space["model.truncation"].choices == ("head", "tail")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"training.lr": [1]}, "unknown config key 'training.lr'"),
        ({"run.name": ["a"]}, "cannot be searched"),
        ({"training.learning_rate": 1e-4}, "fix a value with --set"),
        ({"training.learning_rate": {"low": 1e-3, "high": 1e-4}}, "needs low < high"),
        ({"training.learning_rate": {"low": 0, "high": 1e-4, "log": True}}, "needs low > 0"),
        ({"training.batch_size": {"low": 8, "high": 32.5}}, "whole number"),
        ({"model.truncation": {"low": 1, "high": 2}}, "not numeric"),
        ({"training.learning_rate": {"low": "x", "high": 1}}, "must be a number"),
        ([], "expected a mapping"),
    ],
)
def test_bad_space_files_name_the_problem(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_space(raw, "space.yaml")


# -------------------------------------------------------------------------------------- the CLI


def test_cli_flags_reach_the_search_and_the_table_ranks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from imdb_sentiment.training import search as search_module

    seen: dict[str, Any] = {}

    def fake_search(source: ConfigSource, settings: SearchSettings, **_kw: Any) -> Any:
        seen.update(source=source, settings=settings)
        rows = [
            search_module.TrialRow(
                1,
                "complete",
                0.91,
                {"training.learning_rate": 2e-5},
                str(tmp_path / "s" / "trial-001"),
                60.0,
            ),
            search_module.TrialRow(0, "pruned", 0.6, {"training.learning_rate": 1e-3}, None, None),
        ]
        return search_module.SearchResult(tmp_path / "s", rows, tmp_path / "s" / "best.yaml", 2)

    monkeypatch.setattr(search_module, "search", fake_search)
    space = tmp_path / "space.yaml"
    space.write_text("training.learning_rate: {low: 1e-5, high: 1e-4, log: true}\n")
    out = runner.invoke(
        app,
        [
            "search",
            "--name",
            "lr",
            "--trials",
            "7",
            "--timeout",
            "90",
            "--space",
            str(space),
            "--no-prune",
            "--model",
            "minilm",
            "--epochs",
            "1",
            "--set",
            "training.seed=3",
        ],
    )
    assert out.exit_code == 0, out.output
    settings, source = seen["settings"], seen["source"]
    assert (settings.name, settings.trials, settings.timeout, settings.prune) == (
        "lr",
        7,
        90.0,
        False,
    )
    assert list(settings.space) == ["training.learning_rate"]
    assert source.overrides["model.name"] == "minilm" and source.overrides["training.epochs"] == 1
    assert source.sets == ["training.seed=3"]
    assert "trial-001" in out.output and "0.9100" in out.output and "best.yaml" in out.output


@pytest.mark.parametrize(
    "args", [["--trials", "0"], ["--timeout", "-1"], ["--set", "training.learning_rate=1e-4"]]
)
def test_cli_bad_values_exit_2(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["search", *args])
    assert out.exit_code == 2, out.output
    assert out.output.count("error:") == 1 and "Traceback" not in out.output


def test_missing_optuna_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    monkeypatch.chdir(tmp_path)
    out = runner.invoke(app, ["search"])
    assert out.exit_code == 7
    assert "pip install 'imdb-sentiment[search]'" in out.output
