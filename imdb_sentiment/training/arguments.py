"""Our config as ``transformers.TrainingArguments``: the one place that translation happens.

The valid ``training.precision`` choices are
:data:`imdb_sentiment.config_rules.TRAINING_PRECISIONS`, checked when the config is built; here a
choice only becomes the precision training runs in.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imdb_sentiment.config import Config
from imdb_sentiment.errors import ConfigError
from imdb_sentiment.training.distributed import is_main_process, world_size

if TYPE_CHECKING:
    from transformers import TrainingArguments


# Where ``auto`` trains in bf16 autocast on a CPU. Measured on real IMDB reviews with MiniLM
# (scripts/bench_cpu_precision.py, docs/TRAINING_SPEED.md): on AMX bf16 autocast is faster at
# the same validation accuracy; on AVX512-BF16 alone (oneDNN capped at AVX512_CORE_BF16 on the
# same Xeon) its steps were slower than fp32, so auto keeps fp32 there.
CPU_AUTO_BF16_UNITS = ("amx",)


def training_precision(choice: str) -> str:
    """The precision training runs in: ``auto`` is bf16 on GPUs that have it, fp16 on older
    GPUs, bf16 autocast on CPUs with AMX that PyTorch may use, fp32 on other CPUs; any other
    (already validated) choice is kept as it is."""
    import torch

    from imdb_sentiment.hardware import cpu_bf16_unit

    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_bf16_unit() in CPU_AUTO_BF16_UNITS else "fp32"


def optimizer_steps(cfg: Config, train_rows: int, processes: int) -> int:
    """How many optimiser steps fitting ``train_rows`` reviews for ``training.epochs`` takes.

    Each process gets ``ceil(rows / processes)`` reviews in batches of ``batch_size`` (the last
    one short) and steps once per ``gradient_accumulation_steps`` batches, the last group short:
    the count ``Trainer`` itself derives for its learning-rate schedule.
    """
    t = cfg.training
    batches = math.ceil(train_rows / (t.batch_size * processes))
    per_epoch = max(math.ceil(batches / t.gradient_accumulation_steps), 1)
    return math.ceil(t.epochs * per_epoch)


def warmup_steps(cfg: Config, train_rows: int, processes: int) -> int:
    """``training.warmup_ratio`` of the run's optimiser steps, as a whole number of steps.

    Passed to ``Trainer`` as an integer because transformers 4.x reads ``warmup_steps`` only as
    a count and 5.x has no ``warmup_ratio``; a count means the same in both.
    """
    steps = cfg.training.warmup_ratio * optimizer_steps(cfg, train_rows, processes)
    # Rounding first keeps float noise (0.1 * 30 = 3.0000000000000004) from adding a step.
    return math.ceil(round(steps, 6))


def training_arguments(
    cfg: Config, run_dir: Path, report_to: str, *, train_rows: int, masked_lm: bool = False
) -> TrainingArguments:
    """Translate our config into ``TrainingArguments`` for a run on ``train_rows`` reviews
    (``masked_lm``: for ``adapt``, which has no labelled validation to evaluate on)."""
    from transformers import TrainingArguments

    values = {
        **_optimisation(cfg, train_rows),
        **_bookkeeping(cfg, run_dir, report_to, masked_lm=masked_lm),
    }
    try:
        return TrainingArguments(**values)
    except ValueError as exc:
        raise ConfigError(f"invalid training settings: {str(exc).splitlines()[0]}") from None


def _optimisation(cfg: Config, train_rows: int) -> dict[str, Any]:
    """What changes the model: schedule, batch sizes, precision and the devices it runs on."""
    import torch

    t = cfg.training
    precision = training_precision(t.precision)
    distributed = world_size() > 1
    return {
        "use_cpu": not torch.cuda.is_available(),
        "learning_rate": t.learning_rate,
        "num_train_epochs": t.epochs,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.eval_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "weight_decay": t.weight_decay,
        "warmup_steps": warmup_steps(cfg, train_rows, world_size()),
        "max_grad_norm": t.max_grad_norm,
        "seed": t.seed,
        "data_seed": t.seed,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "ddp_backend": "gloo" if distributed and not torch.cuda.is_available() else None,
        # Sequence classification has one loss per review, not per token; averaging "tokens"
        # across processes only inflates the logged loss by the world size.
        "average_tokens_across_devices": False,
        "ddp_find_unused_parameters": False if distributed else None,
        "dataloader_num_workers": t.dataloader_num_workers,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }


def _bookkeeping(
    cfg: Config, run_dir: Path, report_to: str, *, masked_lm: bool = False
) -> dict[str, Any]:
    """What is evaluated, kept, logged and reported, and when."""
    t = cfg.training
    strategy = "steps" if t.eval_steps > 0 else "epoch"
    return {
        "output_dir": str(run_dir / "checkpoints"),
        "run_name": run_dir.name,
        # Masked-LM adaptation has no accuracy to pick a best checkpoint by: it checkpoints on
        # the same schedule (for --resume) and keeps the last model.
        "eval_strategy": "no" if masked_lm else strategy,
        "save_strategy": strategy,
        "eval_steps": t.eval_steps or None,
        "save_steps": t.eval_steps or 500,  # ignored unless strategy is "steps"
        "logging_strategy": "steps",
        "logging_steps": t.logging_steps,
        "logging_first_step": True,
        "save_total_limit": t.save_total_limit,
        "load_best_model_at_end": not masked_lm,
        "metric_for_best_model": None if masked_lm else "accuracy",
        "greater_is_better": None if masked_lm else True,
        "save_only_model": False,
        "report_to": [] if report_to == "none" else [report_to],
        "disable_tqdm": not is_main_process(),
    }
