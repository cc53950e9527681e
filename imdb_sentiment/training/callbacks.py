"""What the Trainer is told to do besides training: count, keep, stop early, log the config."""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment.config import Config

if TYPE_CHECKING:
    from transformers import TrainerCallback


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
        """The ``TrainerCallback`` that feeds this recorder."""
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
        """Every process's record, by rank (a collective call: all processes must make it)."""
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


def early_stopping(patience: int) -> list[TrainerCallback]:
    """Stop after ``patience`` evaluations without a better accuracy; none when 0."""
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=patience)] if patience > 0 else []


def config_logger(cfg: Config) -> TrainerCallback:
    """Adds our whole config to the W&B run once the Trainer has started it (rank 0 only)."""
    from transformers import TrainerCallback

    from imdb_sentiment import tracking

    class _LogConfig(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                tracking.log_config(cfg.to_dict())

    return _LogConfig()
