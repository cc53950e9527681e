from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_train_overrides

from imdb_sentiment.config import resolve
from imdb_sentiment.errors import ConfigError, DataError, ModelError, RunError, TrainingFailedError
from imdb_sentiment.runs import LATEST_FILE, resolve_run
from imdb_sentiment.training.loop import train


def _cfg(tiny_model: Path, data: Path, runs: Path, name: str, **extra: object):
    return resolve(overrides={**tiny_train_overrides(tiny_model, data, runs, name), **extra})


def test_run_directory_is_self_describing(trained_run: Path, prepared_data: Path) -> None:
    for name in (
        "config.yaml",
        "data_manifest.json",
        "metrics.json",
        "status.json",
        "processes.json",
        "validation_predictions.parquet",
    ):
        assert (trained_run / name).is_file(), name
    model = trained_run / "model"
    assert (model / "model.safetensors").is_file()
    assert (model / "tokenizer.json").is_file() or (model / "vocab.txt").is_file()
    config = json.loads((model / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    settings = json.loads((model / "imdb_sentiment.json").read_text())
    assert settings["max_length"] == 64 and settings["truncation"] == "head+tail"
    assert settings["head_tokens"] == 16

    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["state"] == "succeeded"
    assert metrics["metrics"]["accuracy"] > 0.8
    assert metrics["metrics"]["world_size"] == 1
    assert metrics["processes"][0]["optimizer_steps"] > 0
    # One calibration schema for training, eval and the model card.
    assert set(metrics["metrics"]["calibration"]) == {
        "temperature",
        "ece_uncalibrated",
        "brier_uncalibrated",
        "ece",
        "brier",
        "fitted_on",
        "log_loss",
        "ece_crossfit",
        "brier_crossfit",
    }

    saved = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert saved["run"]["name"] == "tiny"
    assert saved["training"]["learning_rate"] == pytest.approx(5e-3)

    manifest = json.loads((trained_run / "data_manifest.json").read_text())
    source = json.loads((prepared_data / "manifest.json").read_text())
    assert manifest["splits"]["train"]["sha256"] == source["splits"]["train"]["sha256"]
    assert manifest["used"]["train_rows"] == source["splits"]["train"]["rows"]

    assert (trained_run.parent / LATEST_FILE).read_text().strip() == "tiny"
    assert resolve_run(None, trained_run.parent) == trained_run


def test_existing_run_is_not_overwritten(
    tiny_model: Path, prepared_data: Path, trained_run: Path
) -> None:
    before = (trained_run / "model" / "model.safetensors").read_bytes()
    cfg = _cfg(tiny_model, prepared_data, trained_run.parent, "tiny")
    with pytest.raises(RunError, match="already holds a run; pass --overwrite"):
        train(cfg, log=lambda _m: None)
    assert (trained_run / "model" / "model.safetensors").read_bytes() == before


def test_overwrite_replaces_a_run(tiny_model: Path, prepared_data: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_model, prepared_data, tmp_path, "r")
    train(cfg, log=lambda _m: None)
    (tmp_path / "r" / "stale.txt").write_text("old")
    # Kept, to check that best_checkpoint names the checkpoint where it is after the swap.
    keep = {"run.overwrite": True, "training.keep_checkpoints": True}
    train(_cfg(tiny_model, prepared_data, tmp_path, "r", **keep), log=lambda _m: None)
    assert not (tmp_path / "r" / "stale.txt").exists()
    assert (tmp_path / "r" / "model" / "config.json").is_file()
    # Trained beside the old run, then moved into its place: nothing of the swap is left.
    assert sorted(p.name for p in tmp_path.iterdir()) == [LATEST_FILE, "r"]
    assert json.loads((tmp_path / "r" / "status.json").read_text())["state"] == "succeeded"
    best = json.loads((tmp_path / "r" / "metrics.json").read_text())["metrics"]["best_checkpoint"]
    assert Path(best).parent == tmp_path / "r" / "checkpoints" and Path(best).is_dir()


def test_resume_continues_from_the_latest_checkpoint(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_model, prepared_data, tmp_path, "r", **{"training.keep_checkpoints": True})
    train(cfg, log=lambda _m: None)
    checkpoints = sorted((tmp_path / "r" / "checkpoints").glob("checkpoint-*"))
    assert checkpoints
    messages: list[str] = []
    cfg = _cfg(tiny_model, prepared_data, tmp_path, "r", **{"training.epochs": 3})
    result = train(cfg, resume=True, log=messages.append)
    assert any("resuming from" in m and checkpoints[-1].name in m for m in messages)
    assert result.metrics["epochs_completed"] == pytest.approx(3.0)
    # The records cover the whole run: the first two epochs and the resumed third.
    first_part = int(checkpoints[-1].name.split("-")[1])
    process = result.processes[0]
    assert process["resumed_from_step"] == first_part
    assert process["optimizer_steps"] == first_part * 3 // 2
    assert process["samples_seen"] == process["optimizer_steps"] * 8
    saved = json.loads((tmp_path / "r" / "processes.json").read_text())
    assert saved[0]["optimizer_steps"] == process["optimizer_steps"]


def test_resume_with_nothing_to_resume(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    cfg = _cfg(tiny_model, prepared_data, tmp_path, "never")
    with pytest.raises(RunError, match="nothing to resume"):
        train(cfg, resume=True, log=lambda _m: None)


def test_a_run_at_chance_fails_loudly(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    cfg = _cfg(
        tiny_model,
        prepared_data,
        tmp_path,
        "flat",
        **{"training.learning_rate": 1e-9, "training.epochs": 1},
    )
    with pytest.raises(TrainingFailedError, match=r"TRAINING FAILED.*at chance"):
        train(cfg, log=lambda _m: None)
    run = tmp_path / "flat"
    assert not (run / "model").exists()
    assert json.loads((run / "status.json").read_text())["state"] == "failed"
    assert json.loads((run / "metrics.json").read_text())["state"] == "failed"
    assert not (tmp_path / LATEST_FILE).exists()
    with pytest.raises(ModelError, match="did not produce a model"):
        from imdb_sentiment.modeling.loading import find_model_dir

        find_model_dir(run)


def test_bad_inputs_leave_nothing_behind(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="imdb-sentiment download"):
        train(_cfg(tiny_model, tmp_path / "nodata", tmp_path / "runs", "x"), log=print)
    with pytest.raises(ModelError, match="not a model folder"):
        train(_cfg(tmp_path, prepared_data, tmp_path / "runs", "x"), log=print)
    assert not (tmp_path / "runs" / "x").exists()


def test_training_arguments_is_the_one_translation(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    from imdb_sentiment.training.arguments import training_arguments

    cfg = _cfg(
        tiny_model,
        prepared_data,
        tmp_path,
        "t",
        **{"training.eval_steps": 10, "training.warmup_ratio": 0.1},
    )
    args = training_arguments(cfg, tmp_path / "t", "none", train_rows=300)
    assert args.learning_rate == pytest.approx(5e-3)
    assert args.per_device_train_batch_size == 8
    assert args.eval_strategy == "steps" and args.eval_steps == 10
    assert args.load_best_model_at_end and args.metric_for_best_model == "accuracy"
    assert args.output_dir == str(tmp_path / "t" / "checkpoints")
    assert args.weight_decay == pytest.approx(0.01)
    assert not args.bf16 and not args.fp16  # auto precision is fp32 on CPU
    assert args.report_to in ([], ["none"], "none", None)


def test_invalid_trainer_settings_become_config_errors(
    tiny_model: Path, prepared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    from imdb_sentiment.training.arguments import training_arguments

    def refuse(*_a: object, **_k: object) -> None:
        raise ValueError("bf16 is not supported here\nmore detail")

    monkeypatch.setattr(transformers, "TrainingArguments", refuse)
    cfg = _cfg(tiny_model, prepared_data, tmp_path, "t")
    with pytest.raises(
        ConfigError, match=r"invalid training settings: bf16 is not supported here$"
    ):
        training_arguments(cfg, tmp_path / "t", "none", train_rows=300)


@pytest.mark.parametrize(
    ("epochs", "accumulation", "steps", "warmup"), [(2, 1, 76, 8), (1.5, 3, 20, 2)]
)
def test_warmup_ratio_becomes_whole_steps_of_the_trainers_schedule(
    tiny_model: Path,
    prepared_data: Path,
    tmp_path: Path,
    epochs: float,
    accumulation: int,
    steps: int,
    warmup: int,
) -> None:
    """0.1 of the run's optimiser steps, as a count every transformers version reads the same;
    the count is the one Trainer derives, and its scheduler warms up for exactly that long."""
    from transformers import Trainer

    from imdb_sentiment.modeling.loading import load_model_for_training
    from imdb_sentiment.training.arguments import optimizer_steps, training_arguments
    from imdb_sentiment.training.dataset import EncodedReviews

    cfg = _cfg(
        tiny_model,
        prepared_data,
        tmp_path,
        "t",
        **{
            "training.warmup_ratio": 0.1,
            "training.epochs": epochs,
            "training.gradient_accumulation_steps": accumulation,
        },
    )
    rows = 300  # 38 batches of 8 per epoch, the last one short
    args = training_arguments(cfg, tmp_path / "t", "none", train_rows=rows)
    assert optimizer_steps(cfg, rows, processes=1) == steps
    assert args.warmup_steps == warmup and isinstance(args.warmup_steps, int)

    reviews = EncodedReviews([[101, 7, 102]] * rows, [i % 2 for i in range(rows)])
    trainer = Trainer(
        model=load_model_for_training(str(tiny_model)),
        args=args,
        train_dataset=reviews,
        eval_dataset=reviews,
    )  # type: ignore[arg-type]
    *_, max_steps = trainer.set_initial_training_values(args, trainer.get_train_dataloader())
    assert max_steps == steps
    trainer.create_optimizer_and_scheduler(num_training_steps=max_steps)
    factor = trainer.lr_scheduler.lr_lambdas[0]  # type: ignore[union-attr]
    assert factor(warmup - 1) < 1.0 and factor(warmup) == pytest.approx(1.0)


def test_warmup_counts_each_process_share_of_the_data(
    tiny_model: Path, prepared_data: Path, tmp_path: Path
) -> None:
    from imdb_sentiment.training.arguments import optimizer_steps, warmup_steps

    cfg = _cfg(tiny_model, prepared_data, tmp_path, "t", **{"training.warmup_ratio": 0.1})
    assert optimizer_steps(cfg, 300, processes=2) == 38  # 2 epochs of 19 batches per process
    assert warmup_steps(cfg, 300, processes=2) == 4
    no_warmup = _cfg(tiny_model, prepared_data, tmp_path, "t")
    assert warmup_steps(no_warmup, 300, processes=1) == 0
    # 0.1 * 30 is 3.0000000000000004 in floats: still 3 steps, not 4.
    assert (
        warmup_steps(
            _cfg(
                tiny_model,
                prepared_data,
                tmp_path,
                "t",
                **{"training.warmup_ratio": 0.1, "training.epochs": 1, "training.batch_size": 10},
            ),
            300,
            processes=1,
        )
        == 3
    )


def test_training_precision_resolves_auto_by_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from imdb_sentiment.training.arguments import training_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("imdb_sentiment.hardware.cpu_flags", lambda *_: frozenset())
    assert training_precision("auto") == "fp32"  # CPUs with AMX: tests/test_precision.py
    assert training_precision("fp16") == "fp16"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert training_precision("auto") == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert training_precision("auto") == "bf16"


def test_run_metrics_match_an_independent_pass_over_validation(trained_run: Path) -> None:
    """The validation figures kept from training belong to the saved (best) model."""
    from imdb_sentiment.evaluation.evaluate import EvalOptions, evaluate

    saved = json.loads((trained_run / "metrics.json").read_text())["metrics"]
    fresh = evaluate(trained_run, EvalOptions(split="validation", report=False)).metrics
    assert fresh["n"] == saved["n"]
    assert fresh["accuracy"] == pytest.approx(saved["accuracy"])
    assert fresh["roc_auc"] == pytest.approx(saved["roc_auc"], abs=1e-4)


def test_kept_logits_are_looked_up_by_checkpoint_step() -> None:
    import numpy as np

    from imdb_sentiment.training.callbacks import ValidationLogits

    kept = ValidationLogits()
    kept.by_step[40] = (np.zeros((2, 2)), np.array([0, 1]))
    assert kept.best("/runs/x/checkpoints/checkpoint-40") is kept.by_step[40]
    assert kept.best("/runs/x/checkpoints/checkpoint-80") is None
    assert kept.best(None) is None
    assert kept.best("/runs/x/odd-name") is None
