"""Checks of flag values the library does not check itself; each failure is a ConfigError (exit 2).

They run before anything slow is loaded, so a typo costs no model load.
"""

from __future__ import annotations

from collections.abc import Iterable

from imdb_sentiment.errors import ConfigError


def at_least(flag: str, value: float | None, minimum: float = 1) -> None:
    """``flag`` must be ``minimum`` or more when given."""
    if value is not None and value < minimum:
        raise ConfigError(f"{flag} must be at least {minimum}, got {value}")


def one_of(flag: str, value: str, choices: Iterable[str]) -> None:
    """``flag`` must be one of ``choices``."""
    options = tuple(choices)
    if value not in options:
        raise ConfigError(f"{flag} must be one of {', '.join(options)}, got {value!r}")


MAX_SEED = 2**32 - 1
"""numpy and scikit-learn take seeds in [0, 2**32)."""


def seed(flag: str, value: int) -> None:
    """``flag`` must be a seed numpy and scikit-learn accept."""
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{flag} must be between 0 and {MAX_SEED}, got {value}")


PRECISION_HELP = (
    "torch backend: auto (bf16 where the CPU computes it natively, else a passed "
    "int8 plan measured faster, else fp32), fp32, bf16, bf16-compiled (torch.compile at "
    "load, 15-45 s of start-up; for servers and large files), or int8 (needs "
    "`export --format torch-int8`)."
)
