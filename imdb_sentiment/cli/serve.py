"""``imdb-sentiment export`` and ``serve``: ship a trained run as ONNX or over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imdb_sentiment.cli import checks, render
from imdb_sentiment.cli.checks import PRECISION_HELP
from imdb_sentiment.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from imdb_sentiment.serving.schemas import ServeOptions

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
"""uvicorn's log levels (it compares them lower-cased)."""
MAX_PORT = 65_535


RunArgument = Annotated[
    Path | None, typer.Argument(help="Run directory or model folder [default: the latest run].")
]
FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        help="onnx; torch-int8 (PyTorch int8 plan for predict/serve); cpu-student (attach "
        "--student for CPUs without native bf16).",
    ),
]
StudentOption = Annotated[
    Path | None,
    typer.Option(help="--format cpu-student: a run distilled from this one (--distill-from)."),
]
QuantizeOption = Annotated[
    str | None, typer.Option(help="Also write a dynamically quantized model: int8.")
]
FileOption = Annotated[
    Path | None,
    typer.Option(help="Check parity on reviews from this file instead of the validation split."),
]
DataOption = Annotated[
    Path | None, typer.Option(help="Prepared data folder [default: the one the run trained on].")
]
TextColumnOption = Annotated[str, typer.Option(help="Text column of --file.")]
MaxSamplesOption = Annotated[int, typer.Option(help="Parity reviews to check.")]
MinAgreementOption = Annotated[
    float, typer.Option(help="Refuse the export below this label agreement with PyTorch.")
]
OptimizeOption = Annotated[
    bool, typer.Option("--optimize/--no-optimize", help="Fuse attention and LayerNorm kernels.")
]
RunsDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Runs folder whose LATEST run is used when no run is named "
        "[default: $IMDB_SENTIMENT_RUNS_DIR, else runs]."
    ),
]


def export(
    run: RunArgument = None,
    format_: FormatOption = "onnx",
    quantize: QuantizeOption = None,
    file: FileOption = None,
    data: DataOption = None,
    text_column: TextColumnOption = "text",
    max_samples: MaxSamplesOption = 500,
    min_agreement: MinAgreementOption = 0.995,
    optimize: OptimizeOption = True,
    student: StudentOption = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Export to ONNX (and int8) next to the run's model, refused unless parity holds.

    Writes <run>/model/onnx/model.onnx, model.int8.onnx and parity.json, only if each exported
    model gives the PyTorch model's label on at least --min-agreement of the parity reviews.
    --format torch-int8 writes the PyTorch int8 plan; --format cpu-student --student STUDENT
    attaches a student distilled from the run (at most 1 point less accurate), which
    predict/serve --precision auto then run on CPUs without native bf16.
    """
    from imdb_sentiment.export.formats import check_format, check_student, export_model
    from imdb_sentiment.export.onnx import ExportOptions
    from imdb_sentiment.runs import resolve_run

    check_student(check_format(format_), student)
    # Built first: it checks --quantize, --max-samples and --min-agreement before any load.
    options = ExportOptions(
        quantize=quantize,
        file=file,
        data_dir=data,
        text_column=text_column,
        max_samples=max_samples,
        min_agreement=min_agreement,
        optimize=optimize,
        student=student,
    )
    result = export_model(resolve_run(run, runs_dir), format_, options, log=render.say)
    render.parity(result)


HostOption = Annotated[str, typer.Option(help="Interface to listen on.")]
PortOption = Annotated[int, typer.Option(help="Port to listen on.")]
BackendOption = Annotated[str, typer.Option(help="torch, onnx or onnx-int8.")]
PrecisionOption = Annotated[str, typer.Option(help=PRECISION_HELP)]
MaxBatchSizeOption = Annotated[int, typer.Option(help="Most reviews merged into one model call.")]
BatchWindowMsOption = Annotated[
    float, typer.Option(help="How long a request waits for others to share its model call.")
]
BatchingOption = Annotated[
    bool,
    typer.Option("--batching/--no-batching", help="Merge concurrent requests into one model call."),
]
MaxTextsOption = Annotated[int, typer.Option(help="Most reviews per request (413 beyond).")]
MaxCharsOption = Annotated[int, typer.Option(help="Most characters per review (413 beyond).")]
LogLevelOption = Annotated[str, typer.Option(help="uvicorn log level.")]
DriftWindowOption = Annotated[
    int,
    typer.Option(
        help="Recent request texts tested for drift against the run's reference (GET /drift); "
        "0 turns drift monitoring off."
    ),
]
DriftRefreshOption = Annotated[
    float,
    typer.Option(help="Seconds between two drift tests of the window (on a background thread)."),
]


def serve(
    run: RunArgument = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    backend: BackendOption = "torch",
    precision: PrecisionOption = "auto",
    max_batch_size: MaxBatchSizeOption = 32,
    batch_window_ms: BatchWindowMsOption = 5.0,
    batching: BatchingOption = True,
    max_texts: MaxTextsOption = 64,
    max_chars: MaxCharsOption = 50_000,
    log_level: LogLevelOption = "info",
    runs_dir: RunsDirOption = None,
    drift_window: DriftWindowOption = 500,
    drift_refresh: DriftRefreshOption = 60.0,
) -> None:
    """Serve the model over HTTP: POST /predict, /health, /ready, /metrics, /drift, a web page
    at /.

    Set IMDB_SENTIMENT_API_KEY to require that key (X-API-Key header or Bearer token) on
    /predict and /metrics. OpenAPI docs are at /docs.
    """
    from imdb_sentiment.inference.backends import OnnxModel, check_backend, check_precision
    from imdb_sentiment.modeling.loading import find_model_dir
    from imdb_sentiment.runs import resolve_run

    check_precision(precision, check_backend(backend))
    _check_serve_flags(port, max_batch_size, batch_window_ms, max_texts, max_chars, log_level)
    _check_drift_flags(drift_window, drift_refresh)
    run_path = resolve_run(run, runs_dir)
    model_dir = find_model_dir(run_path)  # fail here, in one line, not in the server's log
    if backend != "torch":
        OnnxModel.load(model_dir, quantized=backend == "onnx-int8")
    try:
        from imdb_sentiment.serving import app as server
        from imdb_sentiment.serving.schemas import ServeOptions
    except ImportError:
        raise MissingExtraError("fastapi", "serve") from None
    options = ServeOptions(
        backend=backend,
        precision=precision,
        max_texts=max_texts,
        max_chars=max_chars,
        max_batch_size=max_batch_size,
        batch_window_ms=batch_window_ms,
        batching=batching,
        drift_window=drift_window,
        drift_refresh_s=drift_refresh,
    )
    render.say(f"serving {run_path} on http://{host}:{port} (docs at /docs)")
    _say_drift(run_path, options)
    server.serve(run_path, host=host, port=port, options=options, log_level=log_level)


def _check_serve_flags(
    port: int,
    max_batch_size: int,
    batch_window_ms: float,
    max_texts: int,
    max_chars: int,
    log_level: str,
) -> None:
    # uvicorn would fail on these only once the model is loaded, with a traceback.
    if not 0 <= port <= MAX_PORT:
        raise ConfigError(f"--port must be between 0 and {MAX_PORT}, got {port}")
    checks.one_of("--log-level", log_level.lower(), LOG_LEVELS)
    checks.at_least("--max-batch-size", max_batch_size)
    checks.at_least("--max-texts", max_texts)
    checks.at_least("--max-chars", max_chars)
    checks.at_least("--batch-window-ms", batch_window_ms, 0)


def _check_drift_flags(drift_window: int, drift_refresh: float) -> None:
    from imdb_sentiment.monitoring.drift import MIN_BATCH

    if drift_window != 0 and drift_window < MIN_BATCH:
        raise ConfigError(
            f"--drift-window must be 0 (off) or at least {MIN_BATCH} (the fewest "
            f"texts a drift test accepts), got {drift_window}"
        )
    if not drift_refresh > 0:
        raise ConfigError(f"--drift-refresh must be more than 0 seconds, got {drift_refresh}")


def _say_drift(run_path: Path, options: ServeOptions) -> None:
    # The server warns by itself when the reference is missing; the good news is said here.
    from imdb_sentiment.monitoring.reference import REFERENCE_DIR, REFERENCE_FILE
    from imdb_sentiment.serving.drift import reference_run

    run = reference_run(run_path)
    if options.drift_window and (run / REFERENCE_DIR / REFERENCE_FILE).is_file():
        render.say(
            f"drift monitoring: the last {options.drift_window} texts are tested against "
            f"{run / REFERENCE_DIR} every {options.drift_refresh_s:g} s "
            "(GET /drift, gauges on /metrics)"
        )
