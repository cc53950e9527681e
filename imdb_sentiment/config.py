"""Typed configuration: defaults < ``--config file.yaml`` < explicit flags and ``--set key=value``.

Every knob lives in one dataclass section below with its default visible; values are validated
when a :class:`Config` is built, and errors name the offending key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imdb_sentiment.errors import ConfigError

TRUNCATION_STRATEGIES = ("head", "tail", "head+tail")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
REPORT_TO = ("auto", "wandb", "none")


@dataclass
class DataConfig:
    """Where the prepared data lives and how much of it to use."""

    dir: str = "data/imdb"
    max_train_samples: int | None = None
    max_eval_samples: int | None = None


@dataclass
class ModelConfig:
    """Which pretrained encoder to fine-tune and how reviews are cut to fit it."""

    name: str = "distilbert-base-uncased"
    max_length: int = 512
    # head+tail beat head-only in our full-data MiniLM runs: +0.56 points at 512 tokens and
    # +1.45 at 256 on 2,491 validation reviews (docs/results, README "Measured results").
    truncation: str = "head+tail"
    # For head+tail: how many of the max_length tokens come from the start of the review;
    # None means a quarter of max_length (128 of 512, the split Sun et al. 2019 found best).
    head_tokens: int | None = None

    @property
    def head_budget(self) -> int:
        """Tokens kept from the start of a long review under head+tail."""
        return self.head_tokens if self.head_tokens is not None else self.max_length // 4


@dataclass
class TrainingConfig:
    """Optimisation settings. Defaults reproduce the DistilBERT IMDB recipe."""

    learning_rate: float = 2e-5
    epochs: float = 2.0
    batch_size: int = 16
    eval_batch_size: int = 64
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = 1.0
    seed: int = 42
    precision: str = "auto"
    early_stopping_patience: int = 2
    # Evaluate (and checkpoint) every N steps; 0 means once per epoch.
    eval_steps: int = 0
    logging_steps: int = 50
    save_total_limit: int = 2
    num_processes: int | None = None
    dataloader_num_workers: int = 0
    calibrate: bool = True


@dataclass
class RunConfig:
    """Where results go and who hears about them."""

    output_dir: str = "runs"
    name: str | None = None
    overwrite: bool = False
    report_to: str = "auto"
    wandb_project: str = "imdb-sentiment"


@dataclass
class Config:
    """The whole, resolved configuration of a training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml(), encoding="utf-8")


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "run": RunConfig,
}


def valid_keys() -> list[str]:
    """All dotted keys a config file or ``--set`` accepts."""
    return [
        f"{section}.{f.name}"
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
    ]


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"config key '{key}': {message}")


def validate(cfg: Config) -> None:
    """Check every value that has a constraint; raise :class:`ConfigError` naming the key."""
    t, m, d, r = cfg.training, cfg.model, cfg.data, cfg.run
    if not t.learning_rate > 0:
        _fail("training.learning_rate", f"must be positive, got {t.learning_rate}")
    if not t.epochs > 0:
        _fail("training.epochs", f"must be positive, got {t.epochs}")
    for key, value in (
        ("training.batch_size", t.batch_size),
        ("training.eval_batch_size", t.eval_batch_size),
        ("training.gradient_accumulation_steps", t.gradient_accumulation_steps),
        ("training.logging_steps", t.logging_steps),
        ("training.save_total_limit", t.save_total_limit),
    ):
        if value < 1:
            _fail(key, f"must be at least 1, got {value}")
    if t.weight_decay < 0:
        _fail("training.weight_decay", f"must not be negative, got {t.weight_decay}")
    if not 0 <= t.warmup_ratio < 1:
        _fail("training.warmup_ratio", f"must be in [0, 1), got {t.warmup_ratio}")
    if t.max_grad_norm <= 0:
        _fail("training.max_grad_norm", f"must be positive, got {t.max_grad_norm}")
    if t.eval_steps < 0:
        _fail("training.eval_steps", f"must not be negative, got {t.eval_steps}")
    if t.early_stopping_patience < 0:
        _fail("training.early_stopping_patience", "must not be negative (0 turns it off)")
    if t.num_processes is not None and t.num_processes < 1:
        _fail("training.num_processes", f"must be at least 1, got {t.num_processes}")
    if t.dataloader_num_workers < 0:
        _fail("training.dataloader_num_workers", "must not be negative")
    if t.precision not in PRECISIONS:
        _fail("training.precision", f"must be one of {', '.join(PRECISIONS)}, got {t.precision!r}")
    if not 8 <= m.max_length <= 8192:
        _fail("model.max_length", f"must be between 8 and 8192, got {m.max_length}")
    if m.truncation not in TRUNCATION_STRATEGIES:
        _fail(
            "model.truncation",
            f"must be one of {', '.join(TRUNCATION_STRATEGIES)}, got {m.truncation!r}",
        )
    if m.head_tokens is not None and not 0 < m.head_tokens < m.max_length - 2:
        _fail("model.head_tokens", f"must be between 1 and max_length - 3, got {m.head_tokens}")
    if not m.name:
        _fail("model.name", "must not be empty")
    for key, n in (("data.max_train_samples", d.max_train_samples),
                   ("data.max_eval_samples", d.max_eval_samples)):
        if n is not None and n < 1:
            _fail(key, f"must be at least 1, got {n}")
    if r.report_to not in REPORT_TO:
        _fail("run.report_to", f"must be one of {', '.join(REPORT_TO)}, got {r.report_to!r}")
    if r.name is not None and (not r.name or "/" in r.name or r.name.startswith(".")):
        _fail("run.name", f"must be a plain folder name, got {r.name!r}")


def _field_type(section: str, name: str) -> Any:
    hints = typing.get_type_hints(SECTIONS[section])
    return hints[name]


def coerce(key: str, value: Any) -> Any:
    """Convert ``value`` (from YAML or a ``--set`` string) to the type of ``key``."""
    section, name = key.split(".", 1)
    tp = _field_type(section, name)
    optional = False
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0]
    if value is None:
        if optional:
            return None
        _fail(key, "must not be empty")
    if optional and isinstance(value, str) and value.strip().lower() in ("none", "null", ""):
        return None
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            if isinstance(value, bool):
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() \
                else int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        _fail(key, f"expected {tp.__name__}, got {value!r}")
    raise AssertionError("unreachable")  # pragma: no cover


def _check_key(key: str) -> None:
    if key not in valid_keys():
        raise ConfigError(f"unknown config key '{key}'; valid keys: {', '.join(valid_keys())}")


def flatten(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Turn ``{'training': {'epochs': 1}}`` into ``{'training.epochs': 1}``, rejecting unknowns."""
    flat: dict[str, Any] = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{source}: unknown config section '{section}'; valid sections: "
                f"{', '.join(SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping of keys to values")
        for name, value in values.items():
            key = f"{section}.{name}"
            if key not in valid_keys():
                raise ConfigError(
                    f"{source}: unknown config key '{key}'; valid keys: {', '.join(valid_keys())}"
                )
            flat[key] = value
    return flat


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file into a flat ``{dotted.key: value}`` mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{p}: not valid YAML ({first})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of sections at the top level")
    return flatten(raw, str(p))


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """Parse ``--set key=value`` items."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        _check_key(key)
        out[key] = value.strip()
    return out


def resolve(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> Config:
    """Build a validated :class:`Config`.

    ``overrides`` holds explicit CLI flags as dotted keys; a ``None`` value means "not given" and
    is ignored. Precedence: defaults < config file < ``--set`` < explicit flags.
    """
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(load_yaml(config_file))
    merged.update(parse_set(sets))
    for key, value in (overrides or {}).items():
        if value is not None:
            _check_key(key)
            merged[key] = value
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in merged.items():
        section, name = key.split(".", 1)
        sections[section][name] = coerce(key, value)
    return Config(
        data=DataConfig(**sections["data"]),
        model=ModelConfig(**sections["model"]),
        training=TrainingConfig(**sections["training"]),
        run=RunConfig(**sections["run"]),
    )


def from_dict(raw: dict[str, Any]) -> Config:
    """Rebuild a config saved with :meth:`Config.save` (used when resuming a run)."""
    flat = flatten(raw, "saved config")
    return resolve(overrides=flat) if flat else Config()
