"""Exceptions raised for user mistakes.

Library code raises these with a message that names the problem and what to do; the CLI turns
them into one stderr line and a non-zero exit code, the server into an HTTP 4xx response.
"""

from __future__ import annotations


class ImdbSentimentError(Exception):
    """Base class for errors a user can act on."""

    exit_code = 1


class ConfigError(ImdbSentimentError):
    """An invalid configuration value, key or file."""

    exit_code = 2


class DataError(ImdbSentimentError):
    """Missing, malformed or unusable data."""

    exit_code = 3


class ModelError(ImdbSentimentError):
    """A model path that is not a usable model, or no trained model at all."""

    exit_code = 4


class RunError(ImdbSentimentError):
    """A run directory that cannot be used as asked (already exists, nothing to resume, ...)."""

    exit_code = 5


class TrainingFailedError(ImdbSentimentError):
    """Training finished but produced a model no better than chance."""

    exit_code = 6


class StorageError(ImdbSentimentError):
    """A destination that cannot be written: missing, read-only, not a folder, or full."""

    exit_code = 8


class MissingExtraError(ImdbSentimentError):
    """An optional dependency is not installed."""

    exit_code = 7

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"{package} is not installed; install it with: pip install 'imdb-sentiment[{extra}]'"
        )
