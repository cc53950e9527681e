"""What each configuration value must be: the allowed choices and the single-value rules
that :func:`imdb_sentiment.config.validate` and every config layer are checked against."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from imdb_sentiment.errors import ConfigError

TRUNCATION_STRATEGIES = ("head", "tail", "head+tail")
TRAINING_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""Training precision: ``auto`` is bf16 on GPUs that have it, fp16 on older GPUs, bf16 autocast
on CPUs with AMX (docs/TRAINING_SPEED.md), fp32 on other CPUs."""
REPORT_TO = ("auto", "wandb", "none")


def fail(key: str, message: str) -> NoReturn:
    """Raise the error for ``key``, naming it."""
    raise ConfigError(f"config key '{key}': {message}")


def _one_of(choices: tuple[str, ...]) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), f"must be one of {', '.join(choices)}"


_AT_LEAST_1 = (lambda v: v >= 1), "must be at least 1"
_POSITIVE = (lambda v: v > 0), "must be positive"
_NOT_NEGATIVE = (lambda v: v >= 0), "must not be negative"
_OPTIONAL_AT_LEAST_1 = (lambda v: v is None or v >= 1), "must be at least 1"

# Constraints on single values, by key: (holds, what the value must be).
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "training.learning_rate": _POSITIVE,
    # numpy and scikit-learn take seeds in [0, 2**32); outside it training fails mid-setup.
    "training.seed": ((lambda v: 0 <= v < 2**32), "must be between 0 and 4294967295"),
    "training.epochs": _POSITIVE,
    "training.batch_size": _AT_LEAST_1,
    "training.eval_batch_size": _AT_LEAST_1,
    "training.gradient_accumulation_steps": _AT_LEAST_1,
    "training.logging_steps": _AT_LEAST_1,
    "training.save_total_limit": _AT_LEAST_1,
    "training.weight_decay": _NOT_NEGATIVE,
    "training.warmup_ratio": ((lambda v: 0 <= v < 1), "must be in [0, 1)"),
    "training.max_grad_norm": _POSITIVE,
    "training.eval_steps": _NOT_NEGATIVE,
    "training.early_stopping_patience": (_NOT_NEGATIVE[0], "must not be negative (0 turns it off)"),
    "training.num_processes": _OPTIONAL_AT_LEAST_1,
    "training.dataloader_num_workers": _NOT_NEGATIVE,
    "training.precision": _one_of(TRAINING_PRECISIONS),
    "training.distill_from": ((lambda v: v is None or bool(v.strip())), "must not be empty"),
    "training.distill_alpha": ((lambda v: 0 <= v <= 1), "must be in [0, 1]"),
    "training.distill_temperature": _POSITIVE,
    "model.max_length": ((lambda v: 8 <= v <= 8192), "must be between 8 and 8192"),
    "model.truncation": _one_of(TRUNCATION_STRATEGIES),
    "model.name": ((lambda v: bool(v)), "must not be empty"),
    "data.max_train_samples": _OPTIONAL_AT_LEAST_1,
    "data.max_eval_samples": _OPTIONAL_AT_LEAST_1,
    "data.extra_train": ((lambda v: v is None or bool(v.strip())), "must not be empty"),
    "run.report_to": _one_of(REPORT_TO),
    "run.name": (
        (lambda v: v is None or (bool(v) and "/" not in v and not v.startswith("."))),
        "must be a plain folder name",
    ),
}
