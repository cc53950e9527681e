"""``imdb-sentiment train``: resolve the config, relaunch under accelerate when asked, train."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imdb_sentiment.cli import render
from imdb_sentiment.errors import RunError

if TYPE_CHECKING:
    from imdb_sentiment.config import Config


# The longest flag declarations, named so that the command reads as its list of flags.
TruncationOption = Annotated[str | None, typer.Option(
    help="Which tokens of a long review to keep: head, tail or head+tail (the first "
         "quarter and the end; see docs/QUALITY.md) [default: head+tail]."
)]
ModelOption = Annotated[str | None, typer.Option(
    help="Hub id, local folder, or alias (distilbert, minilm, bert, roberta) "
         "[default: distilbert-base-uncased]."
)]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="Override any config key, e.g. --set training.warmup_ratio=0.1.")]
ResumeOption = Annotated[bool, typer.Option(
    "--resume", help="Continue the run named by --run-name from its latest checkpoint.")]
OverwriteOption = Annotated[bool, typer.Option(
    "--overwrite", help="Replace an existing run of the same name.")]


def train(
    lr: Annotated[float | None, typer.Option("--lr", "--learning-rate",
                                             help="Peak learning rate [default: 2e-5].")] = None,
    epochs: Annotated[float | None, typer.Option(help="Training epochs [default: 2].")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Per-device training batch size [default: 16].")] = None,
    max_length: Annotated[int | None, typer.Option(
        help="Tokens per review after truncation [default: 512].")] = None,
    truncation: TruncationOption = None,
    model: ModelOption = None,
    data: Annotated[str | None, typer.Option(
        help="Prepared data folder [default: data/imdb].")] = None,
    output_dir: Annotated[str | None, typer.Option(
        help="Folder holding runs [default: runs].")] = None,
    run_name: Annotated[str | None, typer.Option(
        help="Run folder name [default: <model>-<timestamp>].")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed [default: 42].")] = None,
    report_to: Annotated[str | None, typer.Option(
        help="auto (W&B when installed), wandb or none [default: auto].")] = None,
    precision: Annotated[str | None, typer.Option(
        help="auto, fp32, bf16 or fp16 [default: auto].")] = None,
    max_train_samples: Annotated[int | None, typer.Option(
        help="Train on a stratified subset of this many reviews.")] = None,
    max_eval_samples: Annotated[int | None, typer.Option(
        help="Validate on a stratified subset of this many reviews.")] = None,
    num_processes: Annotated[int | None, typer.Option(
        help="Data-parallel processes [default: one per GPU].")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML config file (sections data/model/training/run).")] = None,
    set_: SetOption = None,
    resume: ResumeOption = False,
    overwrite: OverwriteOption = False,
) -> None:
    """Fine-tune a classifier with transformers.Trainer and write a self-describing run."""
    from imdb_sentiment.config import resolve
    from imdb_sentiment.training import distributed

    # Flags are config overrides: None leaves the config file's (or the default) value.
    overrides = {
        "training.learning_rate": lr, "training.epochs": epochs,
        "training.batch_size": batch_size, "model.max_length": max_length,
        "model.truncation": truncation, "model.name": model, "data.dir": data,
        "run.output_dir": output_dir, "run.name": run_name, "training.seed": seed,
        "run.report_to": report_to, "training.precision": precision,
        "data.max_train_samples": max_train_samples, "data.max_eval_samples": max_eval_samples,
        "training.num_processes": num_processes, "run.overwrite": overwrite or None,
    }
    if resume:
        config = resume_config(config, output_dir, run_name)
    cfg = resolve(config, overrides, set_)

    if not distributed.already_distributed():
        n = distributed.wanted_processes(cfg.training.num_processes)
        if n > 1:
            raise typer.Exit(train_distributed(cfg, n, resume))
    train_here(cfg, resume)


def resume_config(config: Path | None, output_dir: str | None, run_name: str | None) -> Path:
    """The config to resume with: ``--config`` when given, else the one the run saved."""
    if run_name is None:
        raise RunError("--resume needs --run-name to say which run to continue")
    saved = Path(output_dir or "runs") / run_name / "config.yaml"
    if config is None:
        if not saved.is_file():
            raise RunError(f"nothing to resume: {saved.parent} holds no run")
        return saved
    return config


def train_distributed(cfg: Config, n: int, resume: bool) -> int:
    """Re-run ``train`` under accelerate with the resolved config, so every process agrees."""
    from imdb_sentiment.modeling.loading import resolve_model_name
    from imdb_sentiment.runs import default_run_name
    from imdb_sentiment.training import distributed

    if cfg.run.name is None:
        cfg.run.name = default_run_name(resolve_model_name(cfg.model.name))
    cfg.training.num_processes = n
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(cfg.to_yaml())
    try:
        render.say(f"launching {n} training processes with accelerate")
        args = ["train", "--config", fh.name, "--run-name", cfg.run.name,
                "--output-dir", cfg.run.output_dir] + (["--resume"] if resume else [])
        return distributed.relaunch(n, args)
    finally:
        os.unlink(fh.name)


def train_here(cfg: Config, resume: bool) -> None:
    """Train in this process; only the main process of a distributed run talks."""
    from imdb_sentiment.training.distributed import is_main_process
    from imdb_sentiment.training.loop import train as run_training

    main = is_main_process()
    if main:
        render.say("resolved config:\n" + cfg.to_yaml())
    result = run_training(cfg, resume=resume, log=render.say if main else (lambda _m: None))
    if main:
        render.training(result)
