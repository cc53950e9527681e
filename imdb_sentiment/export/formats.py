"""``imdb-sentiment export --format``: which exporter writes what.

The one place that knows every export format, so the exporters themselves never import each
other: ``onnx`` (:mod:`.onnx`, float32 and optionally dynamic int8 ONNX files) and
``torch-int8`` (:mod:`.torch_int8`, the PyTorch int8 plan).
"""

from __future__ import annotations

from pathlib import Path

from imdb_sentiment.errors import ConfigError
from imdb_sentiment.export import onnx, torch_int8
from imdb_sentiment.export.onnx import ExportOptions, ExportResult, Log

FORMATS = ("onnx", "torch-int8")
"""``--format`` choices of ``imdb-sentiment export``."""


def check_format(format_: str) -> str:
    """Validate an ``export --format`` value against :data:`FORMATS`."""
    if format_ not in FORMATS:
        raise ConfigError(f"--format must be {' or '.join(FORMATS)}, got {format_!r}")
    return format_


def export_model(
    run: str | Path, format_: str, options: ExportOptions | None = None, *, log: Log = print
) -> ExportResult:
    """``imdb-sentiment export``: the ONNX files, or the PyTorch int8 plan (``torch-int8``)."""
    check_format(format_)
    if format_ == "torch-int8":
        return torch_int8.export_torch_int8(run, options or ExportOptions(), log=log)
    return onnx.export_onnx(run, options, log=log)
