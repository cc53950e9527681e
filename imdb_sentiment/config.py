"""Typed configuration: defaults < model recipe < ``--config file.yaml`` < ``--set key=value`` <
explicit flags.

Every knob lives in one dataclass section below with its default visible; the recipe for the
model family (:mod:`imdb_sentiment.recipes`) replaces some of them. Values are validated when a
:class:`Config` is built, errors name the offending key (and file), and the resolved config
records where each value came from.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imdb_sentiment.atomic import write_text
from imdb_sentiment.config_rules import RULES, fail
from imdb_sentiment.errors import ConfigError
from imdb_sentiment.provenance import (
    CONFIG_FILE,
    DEFAULT,
    FLAG,
    SET,
    annotated_yaml,
    saved_record,
    write_sources,
)
from imdb_sentiment.recipes import select_recipe


@dataclass
class DataConfig:
    """Where the prepared data lives and how much of it to use."""

    dir: str = "data/imdb"
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    # Reuse tokenized reviews from <dir>/.cache/tokens when reviews, tokenizer and cut match.
    token_cache: bool = True
    # A labelled table (e.g. from `imdb-sentiment pseudo-label`) whose rows join the training
    # split only, after dropping validation/test, training and repeated texts.
    extra_train: str | None = None


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
    # A student with fewer encoder layers: keep this many of the model's, evenly spaced from
    # the first (6 -> 3 keeps 0, 2, 4; training/layers.py); None keeps them all.
    layers: int | None = None

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
    # Keep RUN/checkpoints/ once the run has succeeded (to resume it with a larger --epochs);
    # else it is removed: a finished run's --resume changes nothing.
    keep_checkpoints: bool = False
    num_processes: int | None = None
    dataloader_num_workers: int = 0
    calibrate: bool = True
    # Distil from this run's model (docs/STUDENTS.md): loss = alpha * CE(labels) + (1 - alpha)
    # * T^2 * KL(teacher || student) at temperature T; the student starts from the teacher
    # unless model.name is given.
    distill_from: str | None = None
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0


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
    # Filled by resolve(), never saved as values: the source of each dotted key and the recipe.
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    recipe: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def describe(self) -> str:
        """The config as YAML with each value's source as a trailing comment (still loadable)."""
        return annotated_yaml(self.to_dict(), self.sources, self.recipe)

    def save(self, path: str | Path) -> None:
        """Write ``path`` and, when the sources are known, ``<stem>_sources.yaml`` beside it."""
        write_text(path, self.describe())
        if self.sources:
            write_sources(path, self.sources, self.recipe)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "training": TrainingConfig,
    "run": RunConfig,
}


def valid_keys() -> list[str]:
    """All dotted keys a config file or ``--set`` accepts."""
    return [
        f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
    ]


def validate(cfg: Config) -> None:
    """Check every value that has a constraint; raise :class:`ConfigError` naming the key."""
    for key, (holds, requirement) in RULES.items():
        section, name = key.split(".", 1)
        value = getattr(getattr(cfg, section), name)
        if not holds(value):
            fail(key, f"{requirement}, got {value!r}")
    m = cfg.model
    if m.head_tokens is not None and not 0 < m.head_tokens < m.max_length - 2:
        fail("model.head_tokens", f"must be between 1 and max_length - 3, got {m.head_tokens}")


def _field_type(section: str, name: str) -> Any:
    hints = typing.get_type_hints(SECTIONS[section])
    return hints[name]


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    # "1e3" from --set is a whole number written in scientific notation.
    return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    return float(value)


_CONVERTERS: dict[Any, Callable[[Any], Any]] = {bool: _to_bool, int: _to_int, float: _to_float}


def coerce(key: str, value: Any) -> Any:
    """Convert ``value`` (from YAML or a ``--set`` string) to the type of ``key``."""
    section, name = key.split(".", 1)
    tp = _field_type(section, name)
    optional = False
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        tp = args[0]
    if value is None or (
        optional and isinstance(value, str) and value.strip().lower() in ("none", "null", "")
    ):
        if optional:
            return None
        fail(key, "must not be empty")
    try:
        return _CONVERTERS.get(tp, str)(value)
    except (TypeError, ValueError):
        fail(key, f"expected {tp.__name__}, got {value!r}")
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
    # A DVC params.yaml's download, adapt and eval sections feed those verbs' flags (dvc.yaml).
    return flatten({k: v for k, v in raw.items() if k not in ("download", "adapt", "eval")}, str(p))


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


def _checked(values: dict[str, Any], where: str | None = None) -> dict[str, Any]:
    """Coerce and check each value; errors in a file's values name the file."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        try:
            out[key] = coerce(key, value)
            holds, requirement = RULES.get(key, (lambda _v: True, ""))
            if not holds(out[key]):
                fail(key, f"{requirement}, got {out[key]!r}")
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None
    return out


def recipe_layers(
    model_name: str,
    device: str | None = None,
) -> tuple[str | None, list[tuple[str, dict[str, Any]]]]:
    """The recipe for ``model_name`` and its values as ``(source, values)`` layers, lowest
    first: the recipe, then its section for ``device`` (``cpu`` or ``gpu``) when it has one."""
    recipe = select_recipe(model_name)
    if recipe is None:
        return None, []
    label, where = f"recipe:{recipe.name}", str(recipe.path)
    layers = [(label, _checked(flatten(recipe.settings, where), where))]
    if device is not None and device in recipe.devices:
        section = f"{where} ({device} section)"
        layers.append(
            (f"{label}/{device}", _checked(flatten(recipe.devices[device], section), section))
        )
    return recipe.name, layers


def resolve(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
    *,
    device: str | None = None,
) -> Config:
    """Build a validated :class:`Config` that knows where each value came from.

    ``overrides`` holds explicit CLI flags as dotted keys; a ``None`` value means "not given" and
    is ignored. Precedence: defaults < the model's recipe (and its ``device`` section, for
    ``cpu`` or ``gpu``; none without a device) < config file < ``--set`` < explicit flags. A
    config file saved by :meth:`Config.save` and unchanged since keeps its recorded sources.
    """
    for key, value in (overrides or {}).items():
        if value is not None:
            _check_key(key)
    given: list[tuple[str, dict[str, Any]]] = [
        (CONFIG_FILE, _checked(load_yaml(config_file), str(config_file)) if config_file else {}),
        (SET, _checked(parse_set(sets))),
        (FLAG, _checked({k: v for k, v in (overrides or {}).items() if v is not None})),
    ]
    model_name = next(
        (str(values["model.name"]) for _, values in reversed(given) if "model.name" in values),
        ModelConfig.name,
    )
    _, layers = recipe_layers(model_name, device)
    recipe = layers[-1][0].removeprefix("recipe:") if layers else None  # minilm or minilm/cpu
    record = saved_record(config_file) if config_file else {}
    recorded: dict[str, str] = record.get("sources", {})
    if set(recorded) >= set(valid_keys()):  # a saved run's config: every value is its own
        recipe = record.get("recipe")
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for label, values in [*layers, *given]:
        for key, value in values.items():
            merged[key] = value
            sources[key] = recorded.get(key, label) if label == CONFIG_FILE else label
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in merged.items():
        section, name = key.split(".", 1)
        sections[section][name] = value
    return Config(
        **{name: cls(**sections[name]) for name, cls in SECTIONS.items()},
        sources={key: sources.get(key, DEFAULT) for key in valid_keys()},
        recipe=recipe,
    )


def from_dict(raw: dict[str, Any]) -> Config:
    """Rebuild a config saved with :meth:`Config.save` (used when resuming a run)."""
    flat = flatten(raw, "saved config")
    return resolve(overrides=flat) if flat else Config()
