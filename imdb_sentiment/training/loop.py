"""Fine-tuning with ``transformers.Trainer``; works the same in one process or under accelerate.

:func:`training_arguments` is the one place our config becomes ``TrainingArguments``.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment import __version__
from imdb_sentiment.config import Config
from imdb_sentiment.errors import ConfigError, DataError, TrainingFailedError
from imdb_sentiment.modeling.loading import (
    InferenceSettings,
    load_model_for_training,
    load_tokenizer,
    resolve_model_name,
)
from imdb_sentiment.modeling.tokenization import encode
from imdb_sentiment.runs import (
    default_run_name,
    latest_checkpoint,
    mark_latest,
    prepare_run_dir,
    write_status,
)

if TYPE_CHECKING:
    import pandas as pd
    from transformers import TrainerCallback, TrainingArguments

Log = Callable[[str], None]


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict[str, Any]
    world_size: int
    processes: list[dict[str, Any]] = field(default_factory=list)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def resolve_precision(precision: str) -> str:
    """``auto``: bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU."""
    import torch

    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def training_arguments(cfg: Config, run_dir: Path, report_to: str) -> TrainingArguments:
    """Translate our config into ``TrainingArguments`` (the only place that does)."""
    import torch

    t = cfg.training
    precision = resolve_precision(t.precision)
    strategy = "steps" if t.eval_steps > 0 else "epoch"
    distributed_cpu = world_size() > 1 and not torch.cuda.is_available()
    try:
        return _training_arguments(cfg, run_dir, report_to, precision, strategy, distributed_cpu)
    except ValueError as exc:
        raise ConfigError(f"invalid training settings: {str(exc).splitlines()[0]}") from None


def _training_arguments(cfg: Config, run_dir: Path, report_to: str, precision: str,
                        strategy: str, distributed_cpu: bool) -> TrainingArguments:
    import torch
    from transformers import TrainingArguments

    t = cfg.training
    return TrainingArguments(
        use_cpu=not torch.cuda.is_available(),
        output_dir=str(run_dir / "checkpoints"),
        run_name=run_dir.name,
        learning_rate=t.learning_rate,
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        eval_strategy=strategy,
        save_strategy=strategy,
        eval_steps=t.eval_steps or None,
        save_steps=t.eval_steps or 500,  # ignored unless strategy is "steps"
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_total_limit=t.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        report_to=[] if report_to == "none" else [report_to],
        dataloader_num_workers=t.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        ddp_backend="gloo" if distributed_cpu else None,
        # Sequence classification has one loss per review, not per token; averaging "tokens"
        # across processes only inflates the logged loss by the world size.
        average_tokens_across_devices=False,
        ddp_find_unused_parameters=False if world_size() > 1 else None,
        disable_tqdm=not is_main_process(),
        save_only_model=False,
    )


def _sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """A stratified, seeded subset of ``n`` rows (all rows when ``n`` is None or too big)."""
    if n is None or n >= len(frame):
        return frame
    from sklearn.model_selection import train_test_split

    stratify = frame["label"] if frame["label"].value_counts().min() >= 2 and n >= 2 else None
    subset, _ = train_test_split(frame, train_size=n, stratify=stratify, random_state=seed)
    return subset


class EncodedReviews:
    """Tokenized reviews as the map-style dataset Trainer expects (one dict per review)."""

    def __init__(self, input_ids: list[list[int]], labels: list[int]) -> None:
        self.input_ids = input_ids
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ids = self.input_ids[i]
        return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": self.labels[i]}


def _dataset(tokenizer: Any, frame: pd.DataFrame, cfg: Config) -> EncodedReviews:
    m = cfg.model
    enc = encode(tokenizer, frame["text"].tolist(), m.max_length, m.truncation, m.head_budget)
    return EncodedReviews(enc.input_ids, frame["label"].astype(int).tolist())


def _agree_on_run_name(name: str | None, model_name: str) -> str:
    """Every process must write to the same run directory: rank 0 picks, the others follow."""
    if name is not None:
        return name
    name = default_run_name(model_name)
    if world_size() > 1:
        from accelerate import PartialState
        from accelerate.utils import broadcast_object_list

        PartialState()  # initialises the process group Trainer will reuse
        box = [name]
        broadcast_object_list(box, from_process=0)
        name = box[0]
    return name


class ProcessRecorder:
    """Counts optimiser steps in each process, so a run can show every process took part.

    It also times the training steps alone: Trainer's own samples/s includes the validation
    passes and checkpoint writes, which a run with per-epoch evaluation pays for and a bare
    training loop does not, so step time is what compares training speed fairly.
    """

    def __init__(self) -> None:
        self.steps = 0
        self.samples = 0
        self.step_seconds = 0.0
        self._started = 0.0

    def callback(self) -> TrainerCallback:
        from transformers import TrainerCallback

        recorder = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                recorder._started = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                recorder.step_seconds += time.perf_counter() - recorder._started
                recorder.steps += 1
                recorder.samples += args.per_device_train_batch_size * (
                    args.gradient_accumulation_steps
                )

        return _Callback()

    @staticmethod
    def step_throughput(processes: list[dict[str, Any]]) -> float | None:
        """Training samples per second of step time, all processes together."""
        slowest = max((p["step_seconds"] for p in processes), default=0.0)
        return sum(p["samples_seen"] for p in processes) / slowest if slowest > 0 else None

    def gather(self, device: str) -> list[dict[str, Any]]:
        import torch

        mine = {
            "rank": int(os.environ.get("RANK", "0")),
            "local_rank": int(os.environ.get("LOCAL_RANK", "0")),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": device,
            "optimizer_steps": self.steps,
            "samples_seen": self.samples,
            "step_seconds": round(self.step_seconds, 3),
        }
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            everyone: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(everyone, mine)
            return sorted(everyone, key=lambda r: r["rank"])
        return [mine]


class ValidationLogits:
    """``compute_metrics`` that also keeps each evaluation's logits, keyed by training step.

    The best checkpoint's validation logits were computed when it was evaluated; keeping them
    spares a second pass over the validation split after training (a minute on a CPU).
    """

    def __init__(self) -> None:
        self.by_step: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.step = lambda: -1

    def __call__(self, eval_pred: Any) -> dict[str, float]:
        from imdb_sentiment.metrics.classification import trainer_metrics

        logits = eval_pred.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        self.by_step[self.step()] = (np.asarray(logits), np.asarray(eval_pred.label_ids))
        return trainer_metrics(eval_pred)

    def best(self, best_checkpoint: str | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Logits and labels of the restored best model, if it was evaluated in this process."""
        if not best_checkpoint:
            return None
        try:
            step = int(best_checkpoint.rstrip("/").rsplit("-", 1)[1])
        except (IndexError, ValueError):
            return None
        return self.by_step.get(step)


def _early_stopping(patience: int) -> list[Any]:
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=patience)] if patience > 0 else []


def _config_callback(cfg: Config) -> Any:
    from transformers import TrainerCallback

    from imdb_sentiment import tracking

    class _LogConfig(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                tracking.log_config(cfg.to_dict())

    return _LogConfig()


def train(cfg: Config, *, resume: bool = False, log: Log = print) -> TrainResult:
    """Fine-tune ``cfg.model.name`` on the prepared data and write a self-describing run."""
    from transformers import DataCollatorWithPadding, Trainer, set_seed

    from imdb_sentiment import tracking
    from imdb_sentiment.atomic import write_json
    from imdb_sentiment.data import prepare as data_mod
    from imdb_sentiment.evaluation.report import bootstrap_intervals, write_model_card
    from imdb_sentiment.metrics.calibration import (
        brier_score,
        cross_fitted_ece,
        expected_calibration_error,
        fit_temperature,
    )
    from imdb_sentiment.metrics.classification import at_chance, compute_metrics, softmax

    main = is_main_process()
    model_name = resolve_model_name(cfg.model.name)
    report_to = tracking.resolve_report_to(cfg.run.report_to)

    # Validate data before touching the run directory, so bad input leaves nothing behind.
    train_df = data_mod.load_split(cfg.data.dir, "train")
    val_df = data_mod.load_split(cfg.data.dir, "validation")
    manifest = data_mod.load_manifest(cfg.data.dir)
    train_df = _sample(train_df, cfg.data.max_train_samples, cfg.training.seed)
    val_df = _sample(val_df, cfg.data.max_eval_samples, cfg.training.seed)
    if train_df["label"].nunique() < 2:
        raise DataError("the training data holds only one label; both classes are needed")

    tokenizer = load_tokenizer(model_name)
    run_name = _agree_on_run_name(cfg.run.name, model_name)
    run_dir = Path(cfg.run.output_dir) / run_name
    if main:
        prepare_run_dir(run_dir, overwrite=cfg.run.overwrite, resume=resume)
    cfg.run.name = run_name
    if main:
        cfg.save(run_dir / "config.yaml")
        write_status(run_dir, "running", started_at=time.time())
        if report_to == "wandb":
            tracking.configure_wandb(run_dir, cfg.run.wandb_project, run_name, log)
    elif report_to == "wandb":
        report_to = "none"  # only the main process reports

    set_seed(cfg.training.seed)
    log(f"tokenizing {len(train_df):,} training and {len(val_df):,} validation reviews "
        f"(max length {cfg.model.max_length}, truncation {cfg.model.truncation})")
    train_ds = _dataset(tokenizer, train_df, cfg)
    val_ds = _dataset(tokenizer, val_df, cfg)
    model = load_model_for_training(model_name)

    args = training_arguments(cfg, run_dir, report_to)
    recorder = ProcessRecorder()
    validation_logits = ValidationLogits()
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8),
        compute_metrics=validation_logits,
        callbacks=[*_early_stopping(cfg.training.early_stopping_patience),
                   recorder.callback(), _config_callback(cfg)],
    )
    validation_logits.step = lambda: trainer.state.global_step
    checkpoint = latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        log(f"resuming from {checkpoint}")
    try:
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except BaseException:
        if main:
            write_status(run_dir, "interrupted", resume_with="imdb-sentiment train --resume "
                         f"--run-name {run_name} --output-dir {cfg.run.output_dir}")
        raise

    processes = recorder.gather(str(args.device))
    kept = validation_logits.best(trainer.state.best_model_checkpoint)
    if kept is None:  # e.g. the best checkpoint predates a --resume
        prediction = trainer.predict(val_ds, metric_key_prefix="validation")  # type: ignore[arg-type]
        kept = (np.asarray(prediction.predictions), np.asarray(prediction.label_ids))
    logits, labels = kept
    metrics = compute_metrics(labels, softmax(logits))
    metrics.update(
        {
            "train_samples": len(train_df),
            "validation_samples": len(val_df),
            "train_runtime_s": output.metrics.get("train_runtime"),
            "train_samples_per_second": output.metrics.get("train_samples_per_second"),
            "train_step_samples_per_second": ProcessRecorder.step_throughput(processes),
            "train_loss": output.metrics.get("train_loss"),
            "epochs_completed": trainer.state.epoch,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "world_size": args.world_size,
            "training_precision": resolve_precision(cfg.training.precision),
            "device": str(args.device),
        }
    )
    temperature = 1.0
    if cfg.training.calibrate and not at_chance(metrics):
        temperature = fit_temperature(logits, labels)
        before, after = softmax(logits)[:, 1], softmax(logits, temperature)[:, 1]
        metrics["calibration"] = {
            "temperature": temperature,
            "fitted_on": f"validation ({len(labels)} reviews)",
            "ece_before": expected_calibration_error(labels, before),
            "ece_after": expected_calibration_error(labels, after),
            "brier_before": brier_score(labels, before),
            "brier_after": brier_score(labels, after),
            "log_loss_after": compute_metrics(labels, softmax(logits, temperature))["log_loss"],
        }
        # T was fitted on these same reviews; the cross-fitted figures are the honest "after".
        honest = cross_fitted_ece(logits, labels, seed=cfg.training.seed)
        metrics["calibration"].update({"ece_after_crossfit": honest["ece"],
                                       "brier_after_crossfit": honest["brier"]})
    metrics["intervals"] = bootstrap_intervals(labels, softmax(logits, temperature)[:, 1],
                                               seed=cfg.training.seed)

    result = TrainResult(run_dir, metrics, args.world_size, processes)
    if not main:
        return result

    payload = {"state": "succeeded", "metrics": metrics, "processes": processes,
               "imdb_sentiment_version": __version__}
    data_record = {**manifest, "data_dir": str(Path(cfg.data.dir).resolve()),
                   "used": {"train_rows": len(train_df), "validation_rows": len(val_df),
                            "sample_seed": cfg.training.seed}}
    write_json(run_dir / "data_manifest.json", data_record)
    tracking.log_final(metrics, labels, (logits[:, 1] > logits[:, 0]).astype(int))

    if at_chance(metrics):
        payload["state"] = "failed"
        payload["reason"] = "validation accuracy at chance"
        write_json(run_dir / "metrics.json", payload)
        write_status(run_dir, "failed", reason=payload["reason"])
        tracking.finish()
        raise TrainingFailedError(
            f"TRAINING FAILED: validation accuracy {metrics['accuracy']:.1%} is at chance "
            f"(majority class {metrics['majority_rate']:.1%}); no model was saved. Try another "
            f"learning rate, more data or more epochs. Details: {run_dir / 'metrics.json'}"
        )

    model_dir = run_dir / "model"
    trainer.save_model(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    InferenceSettings(
        max_length=cfg.model.max_length,
        truncation=cfg.model.truncation,
        head_tokens=cfg.model.head_budget,
        temperature=temperature,
        base_model=cfg.model.name,
    ).save(model_dir)
    _write_predictions(run_dir, val_df, logits, temperature)
    write_json(run_dir / "metrics.json", payload)
    write_model_card(model_dir, run_dir)
    (run_dir / "processes.json").write_text(json.dumps(processes, indent=2) + "\n")
    write_status(run_dir, "succeeded")
    mark_latest(run_dir)
    tracking.finish()
    return result


def _write_predictions(run_dir: Path, val_df: pd.DataFrame, logits: np.ndarray,
                       temperature: float) -> None:
    from imdb_sentiment.metrics.classification import predictions_frame, softmax

    frame = predictions_frame(val_df["text"].tolist(), val_df["label"].to_numpy(),
                              softmax(logits, temperature))
    frame.to_parquet(run_dir / "validation_predictions.parquet", index=False)
