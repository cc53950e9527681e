"""``--profile``: record a bounded window of steps with ``torch.profiler`` and keep what it saw.

A :class:`StepProfiler` is stepped once per unit of work (an optimiser step in ``train``, a
model batch in ``predict``) and records ``active`` steps after skipping ``wait`` and warming up
for ``warmup`` more, so a long run costs no more than a short one. When the window closes (or
the work ends inside it) it writes into its folder:

- ``trace.json``: a Chrome trace (open it in Perfetto, ui.perfetto.dev, or TensorBoard's profiler
  plugin);
- ``top_ops.json`` and ``top_ops.txt``: the operators that took the most self CPU time (and self
  CUDA time when a GPU was recorded).

Profiling observes only: it draws no random numbers and changes no tensor, so a profiled run
learns and predicts what an unprofiled one does. ``Trainer`` callbacks are built here, not in
``training/``, because this module needs nothing of ours but :mod:`atomic` and :mod:`errors`
(transformers is imported only when a callback is asked for).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imdb_sentiment.atomic import write_json, write_text
from imdb_sentiment.errors import ConfigError

DEFAULT_STEPS = 5
"""Steps recorded when ``--profile-steps`` is not given."""
MAX_STEPS = 1000
"""A trace of more steps would be too large to open in a browser."""
TRACE_FILE = "trace.json"
TOP_OPS_JSON = "top_ops.json"
TOP_OPS_TXT = "top_ops.txt"
TOP_N = 15


def check_steps(steps: int, flag: str = "--profile-steps") -> int:
    """Refuse a window of fewer than one or more than :data:`MAX_STEPS` steps."""
    if not 1 <= steps <= MAX_STEPS:
        raise ConfigError(f"{flag} must be between 1 and {MAX_STEPS}, got {steps}")
    return steps


@dataclass
class ProfileResult:
    """What one profiled window produced."""

    folder: Path
    steps: int
    """Steps recorded (fewer than asked when the work ended inside the window)."""
    activities: list[str]
    total_self_cpu_ms: float
    top_ops: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trace(self) -> Path:
        return self.folder / TRACE_FILE

    def moved_to(self, folder: Path) -> ProfileResult:
        """The same result with its files named in ``folder`` (a staged run renamed into
        place)."""
        return ProfileResult(
            folder, self.steps, self.activities, self.total_self_cpu_ms, self.top_ops
        )


class StepProfiler:
    """``torch.profiler`` over steps ``wait + warmup`` to ``wait + warmup + active - 1``."""

    def __init__(
        self,
        folder: Path,
        *,
        active: int = DEFAULT_STEPS,
        wait: int = 1,
        warmup: int = 1,
        top: int = TOP_N,
    ) -> None:
        self.folder = Path(folder)
        self.active, self.wait, self.warmup, self.top = check_steps(active), wait, warmup, top
        self.result: ProfileResult | None = None
        self._prof: Any = None
        self._steps_done = 0

    def start(self) -> None:
        """Start counting steps (recording begins after ``wait + warmup`` of them)."""
        import torch
        from torch.profiler import ProfilerActivity, profile, schedule

        activities = [ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(ProfilerActivity.CUDA)
        # Kineto prints "USDT: profiler_start/stop" lines on stderr at every start and stop;
        # a level the user set is kept.
        os.environ.setdefault("KINETO_LOG_LEVEL", "6")
        with warnings.catch_warnings():
            # Without warm-up (predict records from its first batch) torch warns on each start.
            warnings.filterwarnings("ignore", message=".*won't be using warmup")
            window = schedule(wait=self.wait, warmup=self.warmup, active=self.active, repeat=1)
        self._prof = profile(
            activities=activities,
            schedule=window,
            on_trace_ready=self._write,
            # Shapes show padding in the trace; stacks would make it too large to open.
            record_shapes=True,
        )
        self._prof.start()

    def step(self) -> None:
        """One unit of work has ended."""
        if self._prof is not None:
            self._steps_done += 1
            self._prof.step()

    def stop(self) -> ProfileResult | None:
        """End profiling; the trace is written now if the work ended inside the window.
        ``None`` when it ended before recording began."""
        if self._prof is not None:
            prof, self._prof = self._prof, None
            prof.stop()
        return self.result

    @property
    def needed_steps(self) -> int:
        """Steps the work must last for the whole window to be recorded."""
        return self.wait + self.warmup + self.active

    def _write(self, prof: Any) -> None:
        import torch

        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{TRACE_FILE}.{os.getpid()}.tmp"
        try:
            prof.export_chrome_trace(str(tmp))
            tmp.replace(self.folder / TRACE_FILE)
        finally:
            tmp.unlink(missing_ok=True)
        averages = prof.key_averages()
        cuda = torch.cuda.is_available()
        rows, total = top_operators(averages, self.top, cuda=cuda)
        recorded = min(self.active, max(self._steps_done - self.wait - self.warmup, 0)) or 1
        self.result = ProfileResult(
            self.folder, recorded, ["cpu", "cuda"] if cuda else ["cpu"], total, rows
        )
        write_json(
            self.folder / TOP_OPS_JSON,
            {
                "steps": recorded,
                "activities": self.result.activities,
                "total_self_cpu_ms": round(total, 3),
                "operators": rows,
            },
        )
        sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        write_text(self.folder / TOP_OPS_TXT, averages.table(sort_by=sort, row_limit=self.top))


def top_operators(
    averages: Any, n: int, *, cuda: bool = False
) -> tuple[list[dict[str, Any]], float]:
    """The ``n`` operators with the most self CPU time, and the self CPU time of all of them
    (ms). Each row: ``op``, ``self_cpu_ms``, ``share`` (of all self CPU time), ``calls`` and,
    with ``cuda``, ``self_cuda_ms``."""
    events = [e for e in averages if not e.key.startswith("ProfilerStep")]
    total = sum(e.self_cpu_time_total for e in events) / 1000.0
    rows = []
    for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:n]:
        ms = e.self_cpu_time_total / 1000.0
        row: dict[str, Any] = {
            "op": e.key,
            "self_cpu_ms": round(ms, 3),
            "share": round(ms / total, 4) if total else 0.0,
            "calls": e.count,
        }
        if cuda:
            row["self_cuda_ms"] = round(getattr(e, "self_device_time_total", 0.0) / 1000.0, 3)
        rows.append(row)
    return rows, total


def trainer_callback(profiler: StepProfiler, log: Callable[[str], None]) -> Any:
    """A ``TrainerCallback`` that profiles optimiser steps of the main process only (other
    processes of a distributed run train unprofiled), writing into ``profile/`` beside the
    run's ``checkpoints/``."""
    from transformers import TrainerCallback

    class _Profile(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero:
                # Trainer writes checkpoints in <run>/checkpoints: the profile sits beside them
                # and moves with the run when a staged --overwrite is renamed into place.
                profiler.folder = Path(args.output_dir).parent / "profile"
                profiler.start()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            profiler.step()

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.is_world_process_zero and profiler.stop() is None:
                log(
                    f"--profile: training ended after {state.global_step} steps, before any "
                    f"was recorded (the window needs {profiler.needed_steps}); nothing written"
                )

    return _Profile()


@contextmanager
def profiled_calls(
    target: Any, attribute: str, profiler: StepProfiler, label: str
) -> Iterator[StepProfiler]:
    """Profile while inside: each call of ``target.attribute`` is one step, marked ``label`` in
    the trace. The attribute is put back on leaving, even after an error."""
    from torch.profiler import record_function

    inner = getattr(target, attribute)
    proxy = _StepCalls(inner, profiler, label, record_function)
    setattr(target, attribute, proxy)
    profiler.start()
    try:
        yield profiler
    finally:
        setattr(target, attribute, inner)
        profiler.stop()


@contextmanager
def labelled(target: Any, attribute: str, label: str) -> Iterator[None]:
    """Mark each call of ``target.attribute`` as ``label`` in a trace while inside (work with no
    operators of its own, such as tokenizing, then shows as that label's self CPU time)."""
    from torch.profiler import record_function

    inner = getattr(target, attribute)

    def marked(*args: Any, **kwargs: Any) -> Any:
        with record_function(label):
            return inner(*args, **kwargs)

    setattr(target, attribute, marked)
    try:
        yield
    finally:
        setattr(target, attribute, inner)


class _StepCalls:
    """Calls ``inner`` inside a ``record_function`` span, then steps the profiler; its other
    attributes are those of ``inner`` (a runtime's ``name`` and ``precision``)."""

    def __init__(self, inner: Any, profiler: StepProfiler, label: str, span: Any) -> None:
        self._inner, self._profiler, self._label, self._span = inner, profiler, label, span

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._span(self._label):
            out = self._inner(*args, **kwargs)
        self._profiler.step()
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
