"""``--profile`` for ``train`` and ``predict``: where the trace goes and the top-operators table.

The profiling itself is :mod:`imdb_sentiment.profiling`; this module only picks folders, checks
flags before anything slow is loaded, and prints. The table goes to stderr, beside progress, so
that ``predict --json`` and ``train``'s results on stdout stay as they are.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from imdb_sentiment.cli import render
from imdb_sentiment.errors import RunError

if TYPE_CHECKING:
    from imdb_sentiment.profiling import ProfileResult, StepProfiler

PREDICT_ROOT = Path("profiles")
"""Where ``predict --profile`` writes without ``--profile-dir``: ``profiles/predict-<time>``."""


def check_steps(profile: bool, steps: int | None) -> int | None:
    """The window to record, or ``None`` when profiling is off; a bad ``--profile-steps`` is
    refused (exit 2) even without ``--profile``, so a typo is never silently ignored."""
    from imdb_sentiment.profiling import DEFAULT_STEPS
    from imdb_sentiment.profiling import check_steps as check

    if steps is not None:
        check(steps)
    return (steps or DEFAULT_STEPS) if profile else None


def predict_folder(profile_dir: Path | None) -> Path:
    """The folder ``predict --profile`` writes into; one holding a trace is refused (a profile
    is never overwritten)."""
    from imdb_sentiment.data.storage import check_writable
    from imdb_sentiment.profiling import TRACE_FILE

    folder = profile_dir or PREDICT_ROOT / f"predict-{time.strftime('%Y%m%d-%H%M%S')}"
    if (folder / TRACE_FILE).exists():
        raise RunError(f"{folder} already holds a profile; choose another --profile-dir")
    if folder.exists() and not folder.is_dir():
        raise RunError(f"--profile-dir {folder} is a file; name a folder")
    check_writable(folder, hint="choose another --profile-dir")
    return folder


@contextmanager
def predicting(predictor: Any, folder: Path | None, steps: int | None) -> Iterator[None]:
    """Profile ``predictor``'s first ``steps`` model batches (and its tokenizing, marked
    ``tokenize``) while inside, then print the top operators; does nothing when ``folder`` or
    ``steps`` is ``None``."""
    if folder is None or steps is None:
        yield
        return
    from imdb_sentiment.profiling import StepProfiler, labelled, profiled_calls

    # A predict call is short: record from its start, first batch and tokenizing included.
    profiler = StepProfiler(folder, active=steps, wait=0, warmup=0)
    with ExitStack() as stack:
        stack.enter_context(profiled_calls(predictor, "runtime", profiler, "model batch"))
        stack.enter_context(labelled(predictor, "encode", "tokenize"))
        yield
    show(profiler, folder)


def show(profiler: StepProfiler, folder: Path) -> None:
    """The top operators of a finished profile and where its files are."""
    result: ProfileResult | None = profiler.result
    if result is None:
        render.say(
            f"--profile: nothing was recorded (the window needs {profiler.needed_steps} steps)"
        )
        return
    result = result.moved_to(folder)
    table = Table(title=f"top operators by self CPU time, {result.steps} step(s) recorded")
    for col in ("op", "self CPU ms", "share", "calls"):
        table.add_column(col, justify="left" if col == "op" else "right")
    cuda = "cuda" in result.activities
    if cuda:
        table.add_column("self CUDA ms", justify="right")
    for row in result.top_ops:
        cells = [
            escape(row["op"]),
            f"{row['self_cpu_ms']:,.1f}",
            f"{row['share']:.1%}",
            f"{row['calls']:,}",
        ]
        if cuda:
            cells.append(f"{row['self_cuda_ms']:,.1f}")
        table.add_row(*cells)
    render.err_console.print(table)
    render.say(
        f"profile written to {folder} (trace.json: open it in ui.perfetto.dev or "
        "TensorBoard's profiler plugin; top_ops.json, top_ops.txt)"
    )
