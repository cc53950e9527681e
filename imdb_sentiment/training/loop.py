"""Fine-tuning with ``transformers.Trainer``; works the same in one process or under accelerate.

:func:`train` runs the phases of a run in order, each a short helper below: load and check the
data, prepare the run directory, build the Trainer, fit, take the best model's validation logits,
calibrate, refuse a model at chance, and save a self-describing run.

The main process settles the run directory (:func:`imdb_sentiment.runs.claim_run_dir`) and
the others follow it. ``--overwrite`` trains beside the old run and replaces it only once the
new one has succeeded. SIGTERM and Ctrl-C record where the run stopped and how to resume it.
"""

from __future__ import annotations

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
from imdb_sentiment.runs import Claim, replace_with_new, write_status
from imdb_sentiment.training import lifecycle
from imdb_sentiment.training.arguments import training_arguments, training_precision
from imdb_sentiment.training.callbacks import (
    ProcessRecorder,
    ValidationLogits,
    close_progress_bars,
    config_logger,
    early_stopping,
    progress_on_stderr,
    rebase_best_checkpoint,
    share_checkpoints,
)
from imdb_sentiment.training.dataset import encoded_reviews
from imdb_sentiment.training.distributed import agree, is_main_process
from imdb_sentiment.training.scoring import positive, score
from imdb_sentiment.training.signals import (
    TrainingInterrupted,
    exit_code_for,
    signal_name,
    sigterm_interrupts,
)
from imdb_sentiment.training.student import Student, prepare_student, student_metrics, wire

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
    already_finished: bool = False
    """``--resume`` found the run finished and changed nothing."""


@dataclass
class _Run:
    """What the phases before fitting settled on, read by the phases after it."""

    cfg: Config
    claim: Claim
    train: pd.DataFrame
    validation: pd.DataFrame
    manifest: dict[str, Any]
    tokenizer: Any
    report_to: str = "none"
    log: Log = print
    callbacks: list[Any] = field(default_factory=list)
    student: Student | None = None  # --layers / --distill-from

    @property
    def run_dir(self) -> Path:
        """The run as users name it."""
        return self.claim.run_dir

    @property
    def work_dir(self) -> Path:
        """Where this training writes until it has succeeded."""
        return self.claim.work_dir


@dataclass
class _Fit:
    """What fitting left: the trainer (holding the best model) and its validation logits."""

    trainer: Trainer
    train_metrics: dict[str, Any]
    """Runtime, samples/s and loss of the whole run (both parts of a resumed one)."""
    processes: list[dict[str, Any]]
    logits: np.ndarray
    labels: np.ndarray


def train(
    cfg: Config, *, resume: bool = False, log: Log = print, callbacks: list[Any] | None = None
) -> TrainResult:
    """Fine-tune ``cfg.model.name`` on the prepared data and write a self-describing run.

    ``callbacks`` are extra ``TrainerCallback``s, such as the search's pruning hook.

    ``resume`` on a run that succeeded and is not asked to train longer changes nothing and
    returns its saved results with ``already_finished`` set.
    """
    with sigterm_interrupts():
        try:
            run = _setup(cfg, resume=resume, log=log)
        except KeyboardInterrupt as exc:
            raise TrainingInterrupted(
                f"training stopped by {signal_name(exc)} before the run "
                "started; nothing was written",
                exit_code_for(exc),
            ) from None
        if run.claim.finished:
            metrics, processes = lifecycle.saved_results(run.claim, log)
            return TrainResult(
                run.run_dir,
                metrics,
                int(metrics.get("world_size") or 1),
                processes,
                already_finished=True,
            )
        run.callbacks = list(callbacks or [])
        try:
            return _train_claimed(run)
        except TrainingFailedError:
            raise
        except BaseException as exc:
            close_progress_bars()
            stopped = lifecycle.record_stop(run.claim, cfg, exc)
            if stopped is None:
                raise
            raise stopped from None


def _train_claimed(run: _Run) -> TrainResult:
    fit = _fit(run, *_build_trainer(run))
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
    train_df, val_df, manifest = _load_data(cfg, log)
    tokenizer = load_tokenizer(model_name)
    student = prepare_student(cfg, tokenizer, model_name)
    claim = agree(lambda: lifecycle.claim(cfg, model_name, resume=resume))
    cfg.run.name = claim.run_dir.name
    run = _Run(cfg, claim, train_df, val_df, manifest, tokenizer, report_to, log, student=student)
    if claim.finished:
        return run
    if is_main_process():
        lifecycle.start(claim, cfg, log, resume=resume)
        if report_to == "wandb":
            tracking.configure_wandb(claim.work_dir, cfg.run.wandb_project, claim.run_dir.name, log)
    elif run.report_to == "wandb":
        run.report_to = "none"  # only the main process reports
    return run


def _load_data(cfg: Config, log: Log) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The (sampled) training split with any --extra-train rows, validation, data manifest."""
    from imdb_sentiment.data.pseudo import add_extra_rows
    from imdb_sentiment.data.splits import load_manifest, load_split, sample

    train_df = load_split(cfg.data.dir, "train")
    val_df = load_split(cfg.data.dir, "validation")
    manifest = load_manifest(cfg.data.dir)
    train_df = sample(train_df, cfg.data.max_train_samples, cfg.training.seed)
    val_df = sample(val_df, cfg.data.max_eval_samples, cfg.training.seed)
    train_df, manifest["extra_train"] = add_extra_rows(
        train_df, cfg.data.dir, cfg.data.extra_train, log
    )
    if train_df["label"].nunique() < 2:
        raise DataError("the training data holds only one label; both classes are needed")
    return train_df, val_df, manifest


def _build_trainer(run: _Run) -> tuple[Trainer, ProcessRecorder, ValidationLogits]:
    """Tokenize, load the model and wire it into a Trainer with our callbacks."""
    import contextlib
    import sys

    # transformers prints "Running in WANDB offline mode" on stdout when its W&B integration is
    # first imported; stdout is for results.
    with contextlib.redirect_stdout(sys.stderr):
        from transformers import DataCollatorWithPadding, Trainer, set_seed

    cfg, tokenizer = run.cfg, run.tokenizer
    set_seed(cfg.training.seed)  # before the model exists: it seeds the new classifier head
    run.log(
        f"tokenizing {len(run.train):,} training and {len(run.validation):,} validation "
        f"reviews (max length {cfg.model.max_length}, truncation {cfg.model.truncation})"
    )
    train_ds = encoded_reviews(tokenizer, run.train, cfg)
    val_ds = encoded_reviews(tokenizer, run.validation, cfg)
    model = load_model_for_training(resolve_model_name(cfg.model.name))
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)
    parts = wire(run.student, Trainer, model, train_ds, collator, run.work_dir, run.log)
    recorder, kept = ProcessRecorder(resume_from=run.claim.checkpoint), ValidationLogits()
    args = training_arguments(cfg, run.work_dir, run.report_to, train_rows=len(train_ds))
    args.run_name = run.run_dir.name  # not the staging folder's name
    trainer = parts.trainer_class(
        model=parts.model,
        args=args,
        train_dataset=parts.rows,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=parts.collator,
        **parts.kwargs,
        compute_metrics=kept,
        callbacks=[
            *early_stopping(cfg.training.early_stopping_patience),
            recorder.callback(),
            config_logger(cfg),
            rebase_best_checkpoint(),
            share_checkpoints(),
            *run.callbacks,
        ],
    )
    progress_on_stderr(trainer)
    kept.step = lambda: trainer.state.global_step
    return trainer, recorder, kept


def _fit(run: _Run, trainer: Trainer, recorder: ProcessRecorder, kept: ValidationLogits) -> _Fit:
    """Train (from the claimed checkpoint when resuming)."""
    checkpoint = run.claim.checkpoint
    if checkpoint is not None:
        run.log(f"resuming from {checkpoint}")
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    processes = recorder.gather(str(trainer.args.device))
    whole = recorder.whole_run(output.metrics, trainer.state, len(run.train))
    logits, labels = _validation_logits(trainer, kept)
    return _Fit(trainer, whole, processes, logits, labels)


def _validation_logits(trainer: Trainer, kept: ValidationLogits) -> tuple[np.ndarray, np.ndarray]:
    """The restored best model's validation logits and labels: kept from its evaluation, or
    computed again when it was evaluated before a ``--resume``."""
    best = kept.best(trainer.state.best_model_checkpoint)
    if best is not None:
        return best
    prediction = trainer.predict(
        trainer.eval_dataset,  # type: ignore[arg-type]
        metric_key_prefix="validation",
    )
    return np.asarray(prediction.predictions), np.asarray(prediction.label_ids)


def _score(run: _Run, fit: _Fit) -> tuple[dict[str, Any], float]:
    """The run's metrics, with calibration and bootstrap intervals, and the fitted temperature."""
    return score(run.cfg, fit.logits, fit.labels, _run_metrics(run, fit))


def _run_metrics(run: _Run, fit: _Fit) -> dict[str, Any]:
    """The best model's validation metrics and how the run went."""
    from imdb_sentiment.metrics.classification import compute_metrics

    state, args = fit.trainer.state, fit.trainer.args
    best = state.best_model_checkpoint
    return {
        **compute_metrics(fit.labels, positive(fit.logits)),
        "train_samples": len(run.train),
        "validation_samples": len(run.validation),
        "train_runtime_s": fit.train_metrics.get("train_runtime_s"),
        "train_samples_per_second": fit.train_metrics.get("train_samples_per_second"),
        "train_step_samples_per_second": ProcessRecorder.step_throughput(fit.processes),
        "train_loss": fit.train_metrics.get("train_loss"),
        "epochs_completed": state.epoch,
        # Named where it will be once the run is in place (not in an --overwrite staging folder).
        "best_checkpoint": str(run.run_dir / "checkpoints" / Path(best).name) if best else None,
        "best_step": int(Path(best).name.rsplit("-", 1)[1]) if best else None,
        "world_size": args.world_size,
        "training_precision": training_precision(run.cfg.training.precision),
        "device": str(args.device),
        **student_metrics(run.student, run.validation, fit.logits, run.manifest),
    }


def _payload(fit: _Fit, metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "state": "succeeded",
        "metrics": metrics,
        "processes": fit.processes,
        "imdb_sentiment_version": __version__,
    }


def _record(run: _Run, fit: _Fit, metrics: dict[str, Any]) -> None:
    """Write what data the run used and report its final metrics; stop here if at chance."""
    from imdb_sentiment import tracking
    from imdb_sentiment.atomic import write_json
    from imdb_sentiment.metrics.classification import at_chance
    from imdb_sentiment.text import predicted_labels

    cfg = run.cfg
    write_json(
        run.work_dir / "data_manifest.json",
        {
            **run.manifest,
            "data_dir": str(Path(cfg.data.dir).resolve()),
            "used": {
                "train_rows": len(run.train),
                "validation_rows": len(run.validation),
                "sample_seed": cfg.training.seed,
            },
        },
    )
    tracking.log_final(metrics, fit.labels, predicted_labels(positive(fit.logits)))
    if at_chance(metrics):
        _fail_at_chance(
            run.work_dir,
            {
                **_payload(fit, metrics),
                "state": "failed",
                "reason": "validation accuracy at chance",
            },
        )


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
    """Save the model with its settings, predictions, metrics and card; put the run in place
    (replacing an old one only now), mark it latest and drop its checkpoints unless kept."""
    from imdb_sentiment import tracking
    from imdb_sentiment.atomic import write_json
    from imdb_sentiment.data.storage import share_like_umask
    from imdb_sentiment.model_card import write_model_card

    cfg, work_dir = run.cfg, run.work_dir
    model_dir = work_dir / "model"
    fit.trainer.save_model(str(model_dir))
    run.tokenizer.save_pretrained(str(model_dir))
    share_like_umask(model_dir)  # safetensors writes 0600 whatever the umask
    InferenceSettings(
        max_length=cfg.model.max_length,
        truncation=cfg.model.truncation,
        head_tokens=cfg.model.head_budget,
        temperature=temperature,
        base_model=cfg.model.name,
    ).save(model_dir)
    _write_predictions(work_dir, run.validation, fit.logits, temperature)
    write_json(work_dir / "metrics.json", _payload(fit, metrics))
    write_json(work_dir / "processes.json", fit.processes)
    replace_with_new(run.claim)
    write_model_card(run.run_dir / "model", run.run_dir)
    lifecycle.succeeded(run.run_dir, cfg, run.log)  # drops the checkpoints unless kept
    tracking.finish()


def _write_predictions(
    run_dir: Path, val_df: pd.DataFrame, logits: np.ndarray, temperature: float
) -> None:
    from imdb_sentiment.metrics.classification import predictions_frame, softmax

    frame = predictions_frame(
        val_df["text"].tolist(), val_df["label"].to_numpy(), softmax(logits, temperature)
    )
    frame.to_parquet(run_dir / "validation_predictions.parquet", index=False)
