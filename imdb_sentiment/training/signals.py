"""Stopping a training cleanly: SIGTERM (``docker stop``, Kubernetes, ``timeout``) is handled
like Ctrl-C, and either ends as one line saying how to continue, never a traceback."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from imdb_sentiment.errors import RunError

SIGTERM_EXIT = 128 + signal.SIGTERM  # 143, what a shell reports for a process SIGTERM ended
SIGINT_EXIT = 130


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM. A ``KeyboardInterrupt`` so that code catching
    ``Exception`` (data loaders, callbacks) lets it through, as it does Ctrl-C."""


class TrainingInterrupted(RunError):
    """A training stopped by a signal: the message says how to resume, the exit code which."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_for(exc: BaseException) -> int:
    return SIGTERM_EXIT if isinstance(exc, Terminated) else SIGINT_EXIT


def signal_name(exc: BaseException) -> str:
    return "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C (SIGINT)"


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated`; a second one, while the first is
    being recorded, is ignored so the record is written whole."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(_signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
