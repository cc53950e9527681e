"""What the Trainer is told to do besides training: count, keep, stop early, log the config."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
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

    The counts cover the whole run: each checkpoint keeps them (``PROGRESS_FILE``, one per
    process) and a resumed run starts from the checkpoint's.
    """

    PROGRESS_FILE = "imdb_sentiment_progress-rank{rank}.json"

    def __init__(self, resume_from: Path | None = None) -> None:
        self.steps = 0
        self.samples = 0
        self.step_seconds = 0.0
        self.train_seconds = 0.0
        """Wall time in ``Trainer.train`` of the earlier parts of a resumed run."""
        self.resumed_from_step = 0
        self.resume_from = resume_from
        self._started = 0.0
        self._train_started = time.perf_counter()

    def _rank(self) -> int:
        return int(os.environ.get("RANK", "0"))

    def start(self, args: Any, state: Any) -> None:
        """At train begin: carry over the counts of the checkpoint resumed from."""
        self._train_started = time.perf_counter()
        if self.resume_from is None:
            return
        self.resumed_from_step = state.global_step
        saved = self.resume_from / self.PROGRESS_FILE.format(rank=self._rank())
        try:
            prior = json.loads(saved.read_text(encoding="utf-8"))
            self.steps, self.samples = int(prior["optimizer_steps"]), int(prior["samples_seen"])
            self.step_seconds = float(prior["step_seconds"])
            self.train_seconds = float(prior["train_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            # A checkpoint from before these files (or killed before writing one): the steps
            # are known, the time they took is not.
            self.steps = state.global_step
            self.samples = (
                state.global_step
                * args.per_device_train_batch_size
                * (args.gradient_accumulation_steps)
            )

    def save(self, args: Any, state: Any) -> None:
        """After a checkpoint is written: keep this process's whole-run counts in it."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            return
        from imdb_sentiment.atomic import write_json

        write_json(
            folder / self.PROGRESS_FILE.format(rank=self._rank()),
            {
                "optimizer_steps": self.steps,
                "samples_seen": self.samples,
                "step_seconds": self.step_seconds,
                "train_seconds": self.seconds_so_far(),
            },
        )

    def seconds_so_far(self) -> float:
        """Wall time in training over the whole run, this part included."""
        return self.train_seconds + time.perf_counter() - self._train_started

    def callback(self) -> TrainerCallback:
        """The ``TrainerCallback`` that feeds this recorder."""
        from transformers import TrainerCallback

        recorder = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                recorder.start(args, state)

            def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                recorder.save(args, state)

            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                recorder._started = time.perf_counter()

            def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                recorder.step_seconds += time.perf_counter() - recorder._started
                recorder.steps += 1
                recorder.samples += args.per_device_train_batch_size * (
                    args.gradient_accumulation_steps
                )

        return _Callback()

    def whole_run(
        self, train_metrics: dict[str, Any], state: Any, train_rows: int
    ) -> dict[str, Any]:
        """Runtime, samples/s and mean loss of the whole run. Trainer's own figures cover only
        the part since a ``--resume``; the earlier part's loss is read from its logged losses."""
        runtime = train_metrics.get("train_runtime")
        speed = train_metrics.get("train_samples_per_second")
        loss = train_metrics.get("train_loss")
        if self.resumed_from_step and runtime is not None:
            runtime += self.train_seconds
            speed = train_rows * (state.epoch or 0.0) / runtime if runtime > 0 else None
            earlier = _logged_mean_loss(state.log_history, self.resumed_from_step)
            if loss is not None and earlier is not None and state.global_step > 0:
                later_steps = state.global_step - self.resumed_from_step
                loss = (earlier * self.resumed_from_step + loss * later_steps) / state.global_step
        return {"train_runtime_s": runtime, "train_samples_per_second": speed, "train_loss": loss}

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
            "resumed_from_step": self.resumed_from_step,
        }
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            everyone: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(everyone, mine)
            return sorted(everyone, key=lambda r: r["rank"])
        return [mine]


def _logged_mean_loss(log_history: list[dict[str, Any]], up_to_step: int) -> float | None:
    """Mean training loss over steps 1..``up_to_step`` from Trainer's logs, each logged loss
    being the mean since the previous log."""
    total, last = 0.0, 0
    for entry in log_history:
        step = entry.get("step")
        if "loss" in entry and isinstance(step, int) and last < step <= up_to_step:
            total += float(entry["loss"]) * (step - last)
            last = step
    return total / last if last else None


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


def stderr_progress() -> TrainerCallback:
    """Trainer's progress bar, with its log lines on stderr beside the bar instead of stdout
    (which ``train`` keeps for results)."""
    from tqdm.auto import tqdm
    from transformers.trainer_callback import ProgressCallback

    class _StderrProgress(ProgressCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
        ) -> None:
            if not state.is_world_process_zero or self.training_bar is None or not logs:
                return
            shown = {
                k: f"{v:.4g}" if isinstance(v, float) else v
                for k, v in logs.items()
                if k != "total_flos"
            }
            tqdm.write(str(shown), file=sys.stderr)

    return _StderrProgress()


def progress_on_stderr(trainer: Any) -> None:
    """Replace Trainer's progress callbacks, which print log dicts on stdout, with
    :func:`stderr_progress` (main process only; the others stay quiet)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not trainer.args.disable_tqdm:
        trainer.add_callback(stderr_progress())


def close_progress_bars() -> None:
    """End a stopped run's progress bars with a newline, so the error after them is a line of
    its own (they would otherwise be redrawn after it at exit)."""
    from tqdm.auto import tqdm

    # Innermost first: a nested bar (evaluation inside training) clears its line and moves the
    # cursor up as it closes, so the outer bar must close after it to end with the newline.
    bars = sorted(
        getattr(tqdm, "_instances", []), key=lambda b: abs(getattr(b, "pos", 0)), reverse=True
    )
    for bar in bars:
        bar.close()


def rebase_best_checkpoint() -> TrainerCallback:
    """Point a resumed run's best checkpoint at its folder as it is now: the run may have been
    moved since (an ``--overwrite`` trains in a staging folder and is renamed at the end), and
    Trainer would otherwise neither restore nor protect the best model."""
    from transformers import TrainerCallback

    class _Rebase(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            best = state.best_model_checkpoint
            if best and not Path(best).is_dir():
                here = Path(args.output_dir) / Path(best).name
                if here.is_dir():
                    state.best_model_checkpoint = str(here)

    return _Rebase()


def share_checkpoints() -> TrainerCallback:
    """Give each checkpoint's files the mode the user's umask gives new files, as it is saved:
    safetensors writes the weights 0600 whatever the umask, and another user (a container's
    uid with the run mounted) must be able to read a checkpoint to resume or inspect it."""
    from transformers import TrainerCallback

    from imdb_sentiment.data.storage import share_like_umask

    class _Share(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not state.is_world_process_zero or not folder.is_dir():
                return
            # Another process may still be renaming its own record into the folder, and a
            # temporary file can vanish under the walk: walk again.
            for _ in range(3):
                try:
                    share_like_umask(folder)
                    return
                except FileNotFoundError:
                    continue

    return _Share()
