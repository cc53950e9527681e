"""``imdb-sentiment export --format``: which exporter writes what.

The one place that knows every export format, so the exporters themselves never import each
other: ``onnx`` (:mod:`.onnx`, float32 and optionally dynamic int8 ONNX files) and
``torch-int8`` (:mod:`.torch_int8`, the PyTorch int8 plan) and ``cpu-student``
(:mod:`.cpu_student`, a distilled student that ``--precision auto`` runs where bf16 is not native).
"""

from __future__ import annotations

from pathlib import Path

from imdb_sentiment.errors import ConfigError
from imdb_sentiment.export import cpu_student, onnx, torch_int8
from imdb_sentiment.export.onnx import ExportOptions, ExportResult, Log

FORMATS = ("onnx", "torch-int8", "cpu-student")
"""``--format`` choices of ``imdb-sentiment export``."""


def check_format(format_: str) -> str:
    """Validate an ``export --format`` value against :data:`FORMATS`."""
    if format_ not in FORMATS:
        raise ConfigError(f"--format must be {', '.join(FORMATS)}, got {format_!r}")
    return format_


NEEDS_STUDENT = "--format cpu-student needs --student STUDENT_RUN (the distilled student)"


def check_student(format_: str, student: str | Path | None) -> None:
    """``--student`` goes with ``--format cpu-student``, and only with it."""
    if format_ == "cpu-student" and student is None:
        raise ConfigError(NEEDS_STUDENT)
    if format_ != "cpu-student" and student is not None:
        raise ConfigError("--student goes with --format cpu-student only")


def export_model(
    run: str | Path, format_: str, options: ExportOptions | None = None, *, log: Log = print
) -> ExportResult:
    """``imdb-sentiment export``: the ONNX files, the PyTorch int8 plan (``torch-int8``), or an
    attached student for CPUs without native bf16 (``cpu-student``)."""
    check_format(format_)
    if format_ == "cpu-student":
        student = options.student if options else None
        if student is None:
            raise ConfigError(NEEDS_STUDENT)
        return cpu_student.export_cpu_student(run, student, log=log)
    if format_ == "torch-int8":
        return torch_int8.export_torch_int8(run, options or ExportOptions(), log=log)
    return onnx.export_onnx(run, options, log=log)
