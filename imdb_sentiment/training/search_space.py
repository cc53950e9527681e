"""What a hyperparameter search tries: config keys and the values each may take.

A space maps dotted config keys to a range or a list of choices. Without a ``--space`` file the
search uses :data:`DEFAULT_SPACE`; a file replaces it, so naming fewer keys, or narrower ranges,
narrows the search. Keys not in the space keep the value the normal config precedence gives them
(defaults < recipe < ``--config`` < ``--set`` < flags). A space file looks like::

    training.learning_rate: {low: 1e-5, high: 1e-4, log: true}
    training.batch_size: [16, 32]          # a list is a choice
    training.warmup_ratio: {low: 0.0, high: 0.1}
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imdb_sentiment.config import SECTIONS, coerce, valid_keys
from imdb_sentiment.errors import ConfigError

DEFAULT_SPACE: dict[str, Any] = {
    # Fine-tuning recipes for encoders of this size use 1e-5..1e-4 at batch 16-32, and larger
    # batches want larger rates (on an H100, MiniLM did best at batch 128 with 1.5e-4).
    "training.learning_rate": {"low": 1e-5, "high": 2e-4, "log": True},
    "training.batch_size": [16, 32, 64],
    "training.warmup_ratio": {"low": 0.0, "high": 0.2},
    "training.weight_decay": {"low": 0.0, "high": 0.1},
}
"""The space a search tries when no ``--space`` file is given."""

_RANGE_KEYS = {"low", "high", "log", "step"}
# run.* says where trials go and who hears about them; the search sets those itself.
_SEARCHABLE = tuple(s for s in SECTIONS if s != "run")


@dataclass(frozen=True)
class Dimension:
    """One searched key: a numeric range (``low``..``high``) or a list of ``choices``."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    integer: bool = False

    def sample(self, trial: Any) -> Any:
        """This dimension's value for an Optuna ``trial``."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.integer:
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)

    def ends(self) -> list[Any]:
        """The extreme values, to check against the config's rules before any trial runs."""
        if self.choices is not None:
            return list(self.choices)
        ends = [self.low, self.high]
        return [int(v) if self.integer and v is not None else v for v in ends]

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        kind = "log-uniform" if self.log else "uniform"
        step = f" in steps of {self.step:g}" if self.step else ""
        return f"{kind} {self.low:g}..{self.high:g}{step}"

    def to_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log, "step": self.step}


Space = dict[str, Dimension]


def _field_kind(key: str) -> type:
    """The config field's type without ``None``: int, float, bool or str."""
    section, name = key.split(".", 1)
    tp = typing.get_type_hints(SECTIONS[section])[name]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def _number(key: str, where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: '{key}' {name} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{where}: '{key}' {name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{where}: '{key}' {name} must be finite, got {value!r}")
    return number


def _range(key: str, spec: dict[str, Any], where: str) -> Dimension:
    unknown = set(spec) - _RANGE_KEYS
    if unknown or not {"low", "high"} <= set(spec):
        raise ConfigError(
            f"{where}: '{key}' needs low and high (and optionally log, step), "
            f"or a list of choices; got {sorted(spec)}"
        )
    kind = _field_kind(key)
    if kind not in (int, float):
        raise ConfigError(f"{where}: '{key}' is not numeric; give a list of choices instead")
    low, high = (_number(key, where, n, spec[n]) for n in ("low", "high"))
    step = None if spec.get("step") is None else _number(key, where, "step", spec["step"])
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: '{key}' log must be true or false, got {log!r}")
    if not low < high:
        raise ConfigError(f"{where}: '{key}' needs low < high, got {low:g} and {high:g}")
    if log and (low <= 0 or step is not None):
        raise ConfigError(f"{where}: '{key}' on a log scale needs low > 0 and no step")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}: '{key}' step must be positive, got {step:g}")
    integer = kind is int
    if integer and not all(v.is_integer() for v in (low, high, step or 1.0)):
        raise ConfigError(f"{where}: '{key}' is a whole number; low, high and step must be too")
    return Dimension(key, low, high, log, step, integer=integer)


def _dimension(key: str, spec: Any, where: str) -> Dimension:
    if key not in valid_keys():
        raise ConfigError(
            f"{where}: unknown config key '{key}'; valid keys: "
            f"{', '.join(k for k in valid_keys() if not k.startswith('run.'))}"
        )
    if not key.startswith(tuple(f"{s}." for s in _SEARCHABLE)):
        raise ConfigError(f"{where}: '{key}' cannot be searched; the search sets run.* itself")
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where}: '{key}' needs at least one choice")
        return Dimension(key, choices=tuple(coerce(key, v) for v in spec))
    if isinstance(spec, dict):
        return _range(key, spec, where)
    raise ConfigError(
        f"{where}: '{key}' must be a range {{low: .., high: ..}} or a list of "
        f"choices, got {spec!r}; fix a value with --set or --config instead"
    )


def parse_space(raw: Any, where: str) -> Space:
    """A space from its YAML form: dotted keys, or sections holding keys, as at the top level."""
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: expected a mapping of config keys to ranges or choices")
    flat: dict[str, Any] = {}
    for key, spec in raw.items():
        if key in SECTIONS and isinstance(spec, dict) and not set(spec) & _RANGE_KEYS:
            flat.update({f"{key}.{name}": value for name, value in spec.items()})
        else:
            flat[str(key)] = spec
    return {key: _dimension(key, spec, where) for key, spec in flat.items()}


def default_space() -> Space:
    return parse_space(DEFAULT_SPACE, "the default search space")


def load_space(path: str | Path) -> Space:
    """Read a ``--space`` YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"search space file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{p}: not valid YAML ({first})") from None
    return parse_space(raw, str(p))


def space_to_dict(space: Space) -> dict[str, Any]:
    """The space as plain data (stored with the study, to tell a resumed search is the same)."""
    return {key: dim.to_dict() for key, dim in space.items()}
