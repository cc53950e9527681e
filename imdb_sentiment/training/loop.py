"""Fine-tuning with ``transformers.Trainer``; works the same in one process or under accelerate.

:func:`train` runs the phases of a run in order, each a short helper below: load and check the
data, prepare the run directory, build the Trainer, fit, take the best model's validation logits,
calibrate, refuse a model at chance, and save a self-describing run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment import __version__
from imdb_sentiment.config import Config
from imdb_sentiment.errors import DataError, TrainingFailedError
from imdb_sentiment.modeling.loading import (
    InferenceSettings,
    load_model_for_training,
    load_tokenizer,
    resolve_model_name,
)
from imdb_sentiment.runs import latest_checkpoint, mark_latest, prepare_run_dir, write_status
from imdb_sentiment.training.arguments import training_arguments, training_precision
from imdb_sentiment.training.callbacks import (
    ProcessRecorder,
    ValidationLogits,
    config_logger,
    early_stopping,
)
from imdb_sentiment.training.dataset import encoded_reviews
from imdb_sentiment.training.distributed import agree_on_run_name, is_main_process

if TYPE_CHECKING:
    import pandas as pd
    from transformers import Trainer

Log = Callable[[str], None]


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict[str, Any]
    world_size: int
    processes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Run:
    """What the phases before fitting settled on, read by the phases after it."""

    cfg: Config
    run_dir: Path
    train: pd.DataFrame
    validation: pd.DataFrame
    manifest: dict[str, Any]
    tokenizer: Any
    report_to: str = "none"
    log: Log = print


@dataclass
class _Fit:
    """What fitting left: the trainer (holding the best model) and its validation logits."""

    trainer: Trainer
    train_metrics: dict[str, Any]
    processes: list[dict[str, Any]]
    logits: np.ndarray
    labels: np.ndarray


def train(cfg: Config, *, resume: bool = False, log: Log = print) -> TrainResult:
    """Fine-tune ``cfg.model.name`` on the prepared data and write a self-describing run."""
    run = _setup(cfg, resume=resume, log=log)
    fit = _fit(run, *_build_trainer(run), resume=resume)
    metrics, temperature = _score(run, fit)
    result = TrainResult(run.run_dir, metrics, fit.trainer.args.world_size, fit.processes)
    if is_main_process():
        _record(run, fit, metrics)
        _save(run, fit, metrics, temperature)
    return result


def _setup(cfg: Config, *, resume: bool, log: Log) -> _Run:
    """Check data and model, then claim the run directory (in that order, so bad input leaves
    nothing behind)."""
    from imdb_sentiment import tracking

    model_name = resolve_model_name(cfg.model.name)
    report_to = tracking.resolve_report_to(cfg.run.report_to)
    train_df, val_df, manifest = _load_data(cfg)
    tokenizer = load_tokenizer(model_name)
    run_name = agree_on_run_name(cfg.run.name, model_name)
    run = _Run(cfg, Path(cfg.run.output_dir) / run_name, train_df, val_df, manifest, tokenizer,
               report_to, log)
    cfg.run.name = run_name
    if is_main_process():
        _claim_run_dir(run, resume=resume)
    elif run.report_to == "wandb":
        run.report_to = "none"  # only the main process reports
    return run


def _load_data(cfg: Config) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The (sampled) training and validation splits and the data manifest."""
    from imdb_sentiment.data.splits import load_manifest, load_split, sample

    train_df = load_split(cfg.data.dir, "train")
    val_df = load_split(cfg.data.dir, "validation")
    manifest = load_manifest(cfg.data.dir)
    train_df = sample(train_df, cfg.data.max_train_samples, cfg.training.seed)
    val_df = sample(val_df, cfg.data.max_eval_samples, cfg.training.seed)
    if train_df["label"].nunique() < 2:
        raise DataError("the training data holds only one label; both classes are needed")
    return train_df, val_df, manifest


def _claim_run_dir(run: _Run, *, resume: bool) -> None:
    """Create (or reopen, for ``resume``) the run directory and record that the run started."""
    from imdb_sentiment import tracking

    prepare_run_dir(run.run_dir, overwrite=run.cfg.run.overwrite, resume=resume)
    run.cfg.save(run.run_dir / "config.yaml")
    write_status(run.run_dir, "running", started_at=time.time())
    if run.report_to == "wandb":
        tracking.configure_wandb(run.run_dir, run.cfg.run.wandb_project, run.run_dir.name,
                                 run.log)


def _build_trainer(run: _Run) -> tuple[Trainer, ProcessRecorder, ValidationLogits]:
    """Tokenize, load the model and wire it into a Trainer with our callbacks."""
    from transformers import DataCollatorWithPadding, Trainer, set_seed

    cfg, tokenizer = run.cfg, run.tokenizer
    set_seed(cfg.training.seed)  # before the model exists: it seeds the new classifier head
    run.log(f"tokenizing {len(run.train):,} training and {len(run.validation):,} validation "
            f"reviews (max length {cfg.model.max_length}, truncation {cfg.model.truncation})")
    train_ds = encoded_reviews(tokenizer, run.train, cfg)
    val_ds = encoded_reviews(tokenizer, run.validation, cfg)
    model = load_model_for_training(resolve_model_name(cfg.model.name))
    recorder, kept = ProcessRecorder(), ValidationLogits()
    trainer = Trainer(
        model=model,
        args=training_arguments(cfg, run.run_dir, run.report_to, train_rows=len(train_ds)),
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
        compute_metrics=kept,
        callbacks=[*early_stopping(cfg.training.early_stopping_patience),
                   recorder.callback(), config_logger(cfg)],
    )
    kept.step = lambda: trainer.state.global_step
    return trainer, recorder, kept


def _fit(run: _Run, trainer: Trainer, recorder: ProcessRecorder, kept: ValidationLogits, *,
         resume: bool) -> _Fit:
    """Train (from the latest checkpoint when resuming); an interrupted run says how to resume."""
    checkpoint = latest_checkpoint(run.run_dir) if resume else None
    if checkpoint is not None:
        run.log(f"resuming from {checkpoint}")
    try:
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except BaseException:
        if is_main_process():
            write_status(run.run_dir, "interrupted", resume_with="imdb-sentiment train --resume "
                         f"--run-name {run.run_dir.name} --output-dir {run.cfg.run.output_dir}")
        raise
    processes = recorder.gather(str(trainer.args.device))
    logits, labels = _validation_logits(trainer, kept)
    return _Fit(trainer, output.metrics, processes, logits, labels)


def _validation_logits(trainer: Trainer, kept: ValidationLogits) -> tuple[np.ndarray, np.ndarray]:
    """The restored best model's validation logits and labels: kept from its evaluation, or
    computed again when it was evaluated before a ``--resume``."""
    best = kept.best(trainer.state.best_model_checkpoint)
    if best is not None:
        return best
    prediction = trainer.predict(trainer.eval_dataset,  # type: ignore[arg-type]
                                 metric_key_prefix="validation")
    return np.asarray(prediction.predictions), np.asarray(prediction.label_ids)


def _positive(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    from imdb_sentiment.metrics.classification import softmax

    return softmax(logits, temperature)[:, 1]


def _score(run: _Run, fit: _Fit) -> tuple[dict[str, Any], float]:
    """The run's metrics, with calibration and bootstrap intervals, and the fitted temperature."""
    from imdb_sentiment.metrics.intervals import bootstrap_intervals

    metrics = _run_metrics(run, fit)
    temperature, calibration = _calibrate(run.cfg, fit.logits, fit.labels, metrics)
    if calibration is not None:
        metrics["calibration"] = calibration
    metrics["intervals"] = bootstrap_intervals(fit.labels, _positive(fit.logits, temperature),
                                               seed=run.cfg.training.seed)
    return metrics, temperature


def _run_metrics(run: _Run, fit: _Fit) -> dict[str, Any]:
    """The best model's validation metrics and how the run went."""
    from imdb_sentiment.metrics.classification import compute_metrics

    state, args = fit.trainer.state, fit.trainer.args
    return {
        **compute_metrics(fit.labels, _positive(fit.logits)),
        "train_samples": len(run.train),
        "validation_samples": len(run.validation),
        "train_runtime_s": fit.train_metrics.get("train_runtime"),
        "train_samples_per_second": fit.train_metrics.get("train_samples_per_second"),
        "train_step_samples_per_second": ProcessRecorder.step_throughput(fit.processes),
        "train_loss": fit.train_metrics.get("train_loss"),
        "epochs_completed": state.epoch,
        "best_checkpoint": state.best_model_checkpoint,
        "world_size": args.world_size,
        "training_precision": training_precision(run.cfg.training.precision),
        "device": str(args.device),
    }


def _calibrate(cfg: Config, logits: np.ndarray, labels: np.ndarray,
               metrics: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """The temperature fitted on validation and its calibration record; ``(1.0, None)`` when
    calibration is off or the model learned nothing."""
    from imdb_sentiment.metrics.calibration import (
        calibration_summary,
        cross_fitted_ece,
        fit_temperature,
    )
    from imdb_sentiment.metrics.classification import at_chance, compute_metrics

    if not cfg.training.calibrate or at_chance(metrics):
        return 1.0, None
    temperature = fit_temperature(logits, labels)
    after = _positive(logits, temperature)
    # T was fitted on these same reviews; the cross-fitted figures are the honest "after".
    honest = cross_fitted_ece(logits, labels, seed=cfg.training.seed)
    return temperature, calibration_summary(
        labels, _positive(logits), after, temperature,
        fitted_on=f"validation ({len(labels)} reviews)",
        log_loss=compute_metrics(labels, after)["log_loss"],
        ece_crossfit=honest["ece"],
        brier_crossfit=honest["brier"],
    )


def _payload(fit: _Fit, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"state": "succeeded", "metrics": metrics, "processes": fit.processes,
            "imdb_sentiment_version": __version__}


def _record(run: _Run, fit: _Fit, metrics: dict[str, Any]) -> None:
    """Write what data the run used and report its final metrics; stop here if at chance."""
    from imdb_sentiment import tracking
    from imdb_sentiment.atomic import write_json
    from imdb_sentiment.metrics.classification import at_chance
    from imdb_sentiment.text import predicted_labels

    cfg = run.cfg
    write_json(run.run_dir / "data_manifest.json", {
        **run.manifest, "data_dir": str(Path(cfg.data.dir).resolve()),
        "used": {"train_rows": len(run.train), "validation_rows": len(run.validation),
                 "sample_seed": cfg.training.seed},
    })
    tracking.log_final(metrics, fit.labels, predicted_labels(_positive(fit.logits)))
    if at_chance(metrics):
        _fail_at_chance(run.run_dir, {**_payload(fit, metrics), "state": "failed",
                                      "reason": "validation accuracy at chance"})


def _fail_at_chance(run_dir: Path, payload: dict[str, Any]) -> None:
    """Record the failed run and raise: a model that learned nothing is never saved."""
    from imdb_sentiment import tracking
    from imdb_sentiment.atomic import write_json

    metrics = payload["metrics"]
    write_json(run_dir / "metrics.json", payload)
    write_status(run_dir, "failed", reason=payload["reason"])
    tracking.finish()
    raise TrainingFailedError(
        f"TRAINING FAILED: validation accuracy {metrics['accuracy']:.1%} is at chance "
        f"(majority class {metrics['majority_rate']:.1%}); no model was saved. Try another "
        f"learning rate, more data or more epochs. Details: {run_dir / 'metrics.json'}"
    )


def _save(run: _Run, fit: _Fit, metrics: dict[str, Any], temperature: float) -> None:
    """Save the model with its settings, predictions, metrics and card; mark the run latest."""
    from imdb_sentiment import tracking
    from imdb_sentiment.atomic import write_json
    from imdb_sentiment.model_card import write_model_card

    cfg, run_dir = run.cfg, run.run_dir
    model_dir = run_dir / "model"
    fit.trainer.save_model(str(model_dir))
    run.tokenizer.save_pretrained(str(model_dir))
    InferenceSettings(
        max_length=cfg.model.max_length,
        truncation=cfg.model.truncation,
        head_tokens=cfg.model.head_budget,
        temperature=temperature,
        base_model=cfg.model.name,
    ).save(model_dir)
    _write_predictions(run_dir, run.validation, fit.logits, temperature)
    write_json(run_dir / "metrics.json", _payload(fit, metrics))
    write_model_card(model_dir, run_dir)
    write_json(run_dir / "processes.json", fit.processes)
    write_status(run_dir, "succeeded")
    mark_latest(run_dir)
    tracking.finish()


def _write_predictions(run_dir: Path, val_df: pd.DataFrame, logits: np.ndarray,
                       temperature: float) -> None:
    from imdb_sentiment.metrics.classification import predictions_frame, softmax

    frame = predictions_frame(val_df["text"].tolist(), val_df["label"].to_numpy(),
                              softmax(logits, temperature))
    frame.to_parquet(run_dir / "validation_predictions.parquet", index=False)
