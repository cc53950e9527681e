"""The ``imdb-sentiment`` command line: parse flags, resolve config, call one library function.

Heavy libraries (torch, transformers, datasets) are imported inside commands so ``--help`` stays
fast. User mistakes end as one stderr line and a non-zero exit code.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from imdb_sentiment import __version__
from imdb_sentiment.errors import DataError, ImdbSentimentError, RunError

app = typer.Typer(
    name="imdb-sentiment",
    help="Fine-tune, evaluate and serve transformer sentiment classifiers on IMDB reviews.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console()
# soft_wrap: a message stays one line in logs and pipes, whatever the terminal width.
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def say(message: str) -> None:
    """Progress messages go to stderr so stdout stays clean for --json output."""
    err_console.print(message, highlight=False, markup=False)


def handle_errors(func: F) -> F:
    """Turn library errors into one stderr line and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ImdbSentimentError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def version_callback(value: bool) -> None:
    if value:
        console.print(f"imdb-sentiment {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=version_callback, is_eager=True,
                     help="Show the version and exit."),
    ] = None,
) -> None:
    """Fine-tune, evaluate and serve transformer sentiment classifiers on IMDB reviews."""


# --------------------------------------------------------------------------------------- download


@app.command()
@handle_errors
def download(
    source: Annotated[str, typer.Option(
        help="Hub dataset id, a folder of parquet/csv/jsonl files, an aclImdb/ folder, or a file."
    )] = "stanfordnlp/imdb",
    output: Annotated[Path, typer.Option(help="Where to write the prepared splits.")] = Path(
        "data/imdb"
    ),
    text_column: Annotated[str, typer.Option(help="Column holding the review text.")] = "text",
    label_column: Annotated[str, typer.Option(help="Column holding the label.")] = "label",
    validation_fraction: Annotated[float, typer.Option(
        help="Share of train carved out (stratified) as validation.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of the validation split.")] = 42,
    revision: Annotated[str | None, typer.Option(help="Hub dataset revision.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing prepared data.")] = False,
) -> None:
    """Get IMDB (hub or local copy), clean it, carve validation, write splits and a manifest."""
    from imdb_sentiment.data import prepare as data

    manifest = data.prepare(
        source, output, text_column=text_column, label_column=label_column,
        validation_fraction=validation_fraction, seed=seed, revision=revision, force=force,
        log=say,
    )
    table = Table(title=f"prepared data in {output}")
    for col in ("split", "rows", "negative", "positive"):
        table.add_column(col, justify="right" if col != "split" else "left")
    for name, info in manifest["splits"].items():
        labels = info["labels"]
        table.add_row(name, f"{info['rows']:,}", f"{labels['negative']:,}",
                      f"{labels['positive']:,}")
    console.print(table)


# ------------------------------------------------------------------------------------------ train


@app.command()
@handle_errors
def train(
    lr: Annotated[float | None, typer.Option("--lr", "--learning-rate",
                                             help="Peak learning rate [default: 2e-5].")] = None,
    epochs: Annotated[float | None, typer.Option(help="Training epochs [default: 2].")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Per-device training batch size [default: 16].")] = None,
    max_length: Annotated[int | None, typer.Option(
        help="Tokens per review after truncation [default: 512].")] = None,
    truncation: Annotated[str | None, typer.Option(
        help="Which tokens of a long review to keep: head, tail or head+tail (the first "
             "quarter and the end; see docs/QUALITY.md) [default: head+tail]."
    )] = None,
    model: Annotated[str | None, typer.Option(
        help="Hub id, local folder, or alias (distilbert, minilm, bert, roberta) "
             "[default: distilbert-base-uncased]."
    )] = None,
    data: Annotated[str | None, typer.Option(
        help="Prepared data folder [default: data/imdb].")] = None,
    output_dir: Annotated[str | None, typer.Option(
        help="Folder holding runs [default: runs].")] = None,
    run_name: Annotated[str | None, typer.Option(
        help="Run folder name [default: <model>-<timestamp>].")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed [default: 42].")] = None,
    report_to: Annotated[str | None, typer.Option(
        help="auto (W&B when installed), wandb or none [default: auto].")] = None,
    precision: Annotated[str | None, typer.Option(
        help="auto, fp32, bf16 or fp16 [default: auto].")] = None,
    max_train_samples: Annotated[int | None, typer.Option(
        help="Train on a stratified subset of this many reviews.")] = None,
    max_eval_samples: Annotated[int | None, typer.Option(
        help="Validate on a stratified subset of this many reviews.")] = None,
    num_processes: Annotated[int | None, typer.Option(
        help="Data-parallel processes [default: one per GPU].")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML config file (sections data/model/training/run).")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override any config key, e.g. --set training.warmup_ratio=0.1.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run named by --run-name from its latest checkpoint.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing run of the same name.")] = False,
) -> None:
    """Fine-tune a classifier with transformers.Trainer and write a self-describing run."""
    from imdb_sentiment import config as config_mod
    from imdb_sentiment.training import distributed as launch

    overrides = {
        "training.learning_rate": lr, "training.epochs": epochs,
        "training.batch_size": batch_size, "model.max_length": max_length,
        "model.truncation": truncation, "model.name": model, "data.dir": data,
        "run.output_dir": output_dir, "run.name": run_name, "training.seed": seed,
        "run.report_to": report_to, "training.precision": precision,
        "data.max_train_samples": max_train_samples, "data.max_eval_samples": max_eval_samples,
        "training.num_processes": num_processes, "run.overwrite": overwrite or None,
    }
    if resume:
        config = _resume_config(config, output_dir, run_name)
    cfg = config_mod.resolve(config, overrides, set_)

    if not launch.already_distributed():
        n = launch.wanted_processes(cfg.training.num_processes)
        if n > 1:
            raise typer.Exit(_train_distributed(cfg, n, resume))
    _train_here(cfg, resume)


def _resume_config(config: Path | None, output_dir: str | None, run_name: str | None) -> Path:
    if run_name is None:
        raise RunError("--resume needs --run-name to say which run to continue")
    saved = Path(output_dir or "runs") / run_name / "config.yaml"
    if config is None:
        if not saved.is_file():
            raise RunError(f"nothing to resume: {saved.parent} holds no run")
        return saved
    return config


def _train_distributed(cfg: Any, n: int, resume: bool) -> int:
    """Re-run ``train`` under accelerate with the resolved config, so every process agrees."""
    from imdb_sentiment.modeling.loading import resolve_model_name
    from imdb_sentiment.runs import default_run_name
    from imdb_sentiment.training import distributed as launch

    if cfg.run.name is None:
        cfg.run.name = default_run_name(resolve_model_name(cfg.model.name))
    cfg.training.num_processes = n
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        fh.write(cfg.to_yaml())
    try:
        say(f"launching {n} training processes with accelerate")
        args = ["train", "--config", fh.name, "--run-name", cfg.run.name,
                "--output-dir", cfg.run.output_dir] + (["--resume"] if resume else [])
        return launch.relaunch(n, args)
    finally:
        os.unlink(fh.name)


def _train_here(cfg: Any, resume: bool) -> None:
    from imdb_sentiment.training.loop import is_main_process
    from imdb_sentiment.training.loop import train as run_training

    main = is_main_process()
    if main:
        say("resolved config:\n" + cfg.to_yaml())
    result = run_training(cfg, resume=resume, log=say if main else (lambda _m: None))
    if not main:
        return
    m = result.metrics
    table = Table(title=f"run {result.run_dir}")
    table.add_column("validation metric")
    table.add_column("value", justify="right")
    for key in ("accuracy", "f1", "roc_auc", "log_loss"):
        table.add_row(key, f"{m[key]:.4f}")
    table.add_row("reviews", f"{m['n']:,}")
    if m.get("train_samples_per_second"):
        table.add_row("train samples/s", f"{m['train_samples_per_second']:.1f}")
    if m.get("train_step_samples_per_second"):
        table.add_row("  in training steps", f"{m['train_step_samples_per_second']:.1f}")
    table.add_row("processes", str(result.world_size))
    if "calibration" in m:
        table.add_row("temperature", f"{m['calibration']['temperature']:.3f}")
    console.print(table)
    console.print(f"model saved to {result.run_dir / 'model'} (marked as the latest run)")


# ------------------------------------------------------------------------------------------- eval


@app.command("eval")
@handle_errors
def eval_(
    run: Annotated[Path | None, typer.Argument(
        help="Run directory or model folder [default: the latest run].")] = None,
    split: Annotated[str, typer.Option(help="Prepared split: test, validation or train.")] = "test",
    file: Annotated[Path | None, typer.Option(
        help="A labelled .parquet/.csv/.jsonl file instead of a prepared split.")] = None,
    data: Annotated[Path | None, typer.Option(
        help="Prepared data folder [default: the one the run trained on].")] = None,
    text_column: Annotated[str, typer.Option(help="Text column of --file.")] = "text",
    label_column: Annotated[str, typer.Option(help="Label column of --file.")] = "label",
    max_samples: Annotated[int | None, typer.Option(
        help="Evaluate a seeded random subset of this many reviews.")] = None,
    batch_size: Annotated[int, typer.Option(help="Inference batch size.")] = 64,
    long_reviews: Annotated[str, typer.Option(
        help="truncate (cut as trained) or chunks (average overlapping windows over the whole "
             "review).")] = "truncate",
    robustness: Annotated[bool, typer.Option(
        "--robustness", help="Also run typo, neutral-sentence and negation checks.")] = False,
    robustness_samples: Annotated[int, typer.Option(
        help="Reviews the robustness checks are generated from.")] = 200,
    no_report: Annotated[bool, typer.Option(
        "--no-report", help="Skip intervals, slices, plots, report.md and the model card.")
    ] = False,
    report_to: Annotated[str, typer.Option(
        help="Also log the report to W&B: none, wandb or auto (W&B when installed).")] = "none",
) -> None:
    """Metrics with 95% intervals, slices by length and rating, calibration, worst errors, plots.

    Writes metrics.json, predictions.parquet, misclassified.csv, plots/*.png and report.md to
    <run>/eval/<split>/ and refreshes the model card (model/README.md).
    """
    from imdb_sentiment.evaluation.evaluate import evaluate
    from imdb_sentiment.runs import resolve_run

    if max_samples is not None and max_samples < 1:
        raise DataError("--max-samples must be at least 1")
    run_path = resolve_run(run)
    from imdb_sentiment.modeling.windows import check_mode

    check_mode(long_reviews)
    if report_to not in ("none", "wandb", "auto"):
        raise DataError(f"--report-to must be none, wandb or auto, got {report_to!r}")
    result = evaluate(run_path, split=split, file=file, data_dir=data, text_column=text_column,
                      long_reviews=long_reviews, report=not no_report, robustness=robustness,
                      robustness_samples=robustness_samples, report_to=report_to, log=say,
                      label_column=label_column, max_samples=max_samples, batch_size=batch_size)
    m = result.metrics
    table = Table(title=f"{run_path} on {m['source']} ({m['n']:,} reviews)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "mcc", "log_loss"):
        table.add_row(key, f"{m[key]:.4f}")
    (tn, fp), (fn, tp) = m["confusion_matrix"]
    table.add_row("confusion [tn fp; fn tp]", f"[{tn} {fp}; {fn} {tp}]")
    console.print(table)
    _print_eval_extras(m)
    console.print(f"wrote {', '.join(str(f) for f in result.files)}")


def _print_eval_extras(m: dict[str, Any]) -> None:
    """Intervals, calibration and robustness lines under the eval table, when measured."""
    for key in ("accuracy", "f1", "roc_auc"):
        iv = m.get("intervals", {}).get(key)
        if iv:
            console.print(f"{key}: {iv['value']:.4f} (95% CI {iv['low']:.4f}-{iv['high']:.4f})")
    cal = m.get("calibration")
    if cal and "ece_uncalibrated" in cal:
        console.print(f"ECE {cal['ece_uncalibrated']:.4f} -> {cal['ece']:.4f}, Brier "
                      f"{cal['brier_uncalibrated']:.4f} -> {cal['brier']:.4f} "
                      f"(temperature {cal['temperature']:.3f})")
    for name, r in m.get("robustness", {}).get("checks", {}).items():
        rate = "n/a" if r["pass_rate"] is None else f"{r['pass_rate']:.1%}"
        console.print(f"robustness {name}: {rate} of {r['cases']:,} passed")


# ---------------------------------------------------------------------------------------- predict


def _gather_texts(texts: list[str] | None, file: Path | None, text_column: str) -> list[str]:
    from imdb_sentiment.data import prepare as data

    out: list[str] = []
    for text in texts or []:
        if text == "-":
            raw = sys.stdin.buffer.read()
            try:
                decoded = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError("standard input is not valid UTF-8") from None
            out.extend(line for line in decoded.splitlines() if line.strip())
            if not decoded.strip():
                raise DataError("standard input holds no reviews")
        else:
            out.append(text)
    if file is not None:
        out.extend(data.read_texts_file(file, text_column=text_column))
    if not out:
        raise DataError('nothing to predict: give texts, --file PATH, or - for stdin')
    return out


def _write_predictions(path: Path, texts: list[str], rows: list[dict[str, Any]],
                       overwrite: bool) -> None:
    import pandas as pd

    if path.exists() and not overwrite:
        raise RunError(f"{path} already exists; pass --overwrite to replace it")
    suffix = path.suffix.lower()
    frame = pd.DataFrame([{"text": t, **r} for t, r in zip(texts, rows, strict=True)])
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".csv":
        frame.to_csv(tmp, index=False)
    elif suffix in (".jsonl", ".json"):
        frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
    elif suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    else:
        raise DataError(f"--output must end in .csv, .jsonl or .parquet, got {path.name}")
    tmp.replace(path)


@app.command()
@handle_errors
def predict(
    texts: Annotated[list[str] | None, typer.Argument(
        help="Reviews to classify; '-' reads one review per line from stdin.")] = None,
    file: Annotated[Path | None, typer.Option(
        help="Reviews from a .txt (one per line), .csv, .jsonl or .parquet file.")] = None,
    model: Annotated[Path | None, typer.Option(
        help="Run directory or model folder [default: the latest run].")] = None,
    text_column: Annotated[str, typer.Option(help="Text column of --file.")] = "text",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    output: Annotated[Path | None, typer.Option(
        help="Write predictions to .csv, .jsonl or .parquet.")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing --output file.")] = False,
    batch_size: Annotated[int, typer.Option(help="Inference batch size.")] = 32,
    long_reviews: Annotated[str, typer.Option(
        help="truncate (cut as trained) or chunks (average overlapping windows over the whole "
             "review).")] = "truncate",
    uncertain_band: Annotated[str | None, typer.Option(
        help="LO:HI, e.g. 0.4:0.6: label reviews whose positive probability is in the band "
             "'uncertain' instead of guessing.")] = None,
    backend: Annotated[str, typer.Option(
        help="torch, onnx or onnx-int8 (the files `imdb-sentiment export` wrote).")] = "torch",
    precision: Annotated[str, typer.Option(
        help="torch backend: auto (bf16 on CPUs with native bf16), fp32 or bf16.")] = "auto",
) -> None:
    """Label and (calibrated) probability for each review."""
    from imdb_sentiment.inference.predictor import (
        Predictor,
        apply_uncertain_band,
        parse_uncertain_band,
    )
    from imdb_sentiment.runs import resolve_run

    reviews = _gather_texts(texts, file, text_column)
    if output is not None and output.exists() and not overwrite:
        raise RunError(f"{output} already exists; pass --overwrite to replace it")
    band = parse_uncertain_band(uncertain_band) if uncertain_band is not None else None
    predictor = Predictor.from_path(resolve_run(model), batch_size=batch_size,
                                    long_reviews=long_reviews, backend=backend,
                                    precision=precision)
    rows = [p.to_dict() for p in apply_uncertain_band(predictor.predict(reviews), band)]
    if output is not None:
        _write_predictions(output, reviews, rows, overwrite)
        say(f"wrote {len(rows):,} predictions to {output}")
        return
    if as_json:
        for text, row in zip(reviews, rows, strict=True):
            sys.stdout.write(json.dumps({"text": text, **row}, ensure_ascii=False) + "\n")
        return
    for text, row in zip(reviews, rows, strict=True):
        colour = {"positive": "green", "negative": "red"}.get(row["label"], "yellow")
        preview = escape(text if len(text) <= 70 else text[:67] + "...")
        console.print(
            f"[{colour}]{row['label']:<8}[/] {row['positive_probability']:.3f}  {preview}",
            highlight=False, markup=True, soft_wrap=True,
        )


# ----------------------------------------------------------------------------------------- export


@app.command()
@handle_errors
def export(
    run: Annotated[Path | None, typer.Argument(
        help="Run directory or model folder [default: the latest run].")] = None,
    format_: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    quantize: Annotated[str | None, typer.Option(
        help="Also write a dynamically quantized model: int8.")] = None,
    file: Annotated[Path | None, typer.Option(
        help="Check parity on reviews from this file instead of the validation split.")] = None,
    data: Annotated[Path | None, typer.Option(
        help="Prepared data folder [default: the one the run trained on].")] = None,
    text_column: Annotated[str, typer.Option(help="Text column of --file.")] = "text",
    max_samples: Annotated[int, typer.Option(help="Parity reviews to check.")] = 500,
    min_agreement: Annotated[float, typer.Option(
        help="Refuse the export below this label agreement with PyTorch.")] = 0.995,
    optimize: Annotated[bool, typer.Option(
        "--optimize/--no-optimize", help="Fuse attention and LayerNorm kernels.")] = True,
) -> None:
    """Export to ONNX (and int8) next to the run's model, refused unless parity holds.

    Writes <run>/model/onnx/model.onnx, model.int8.onnx and parity.json, only if each exported
    model gives the PyTorch model's label on at least --min-agreement of the parity reviews.
    """
    from imdb_sentiment.errors import ConfigError, MissingExtraError
    from imdb_sentiment.runs import resolve_run

    if format_ != "onnx":
        raise ConfigError(f"--format must be onnx, got {format_!r}")
    if max_samples < 1:
        raise DataError("--max-samples must be at least 1")
    try:
        from imdb_sentiment.export.onnx import export_onnx
    except ImportError:
        raise MissingExtraError("onnxruntime", "export") from None
    result = export_onnx(resolve_run(run), quantize=quantize, file=file, data_dir=data,
                         text_column=text_column, max_samples=max_samples,
                         min_agreement=min_agreement, optimize=optimize, log=say)
    table = Table(title=f"parity with PyTorch on {result.parity[0].n:,} reviews ({result.source})")
    for col in ("model", "label agreement", "max |Δp|", "mean |Δp|", "accuracy"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in result.parity:
        acc = "-" if r.accuracy is None else f"{r.accuracy:.4f} (torch {r.torch_accuracy:.4f})"
        table.add_row(r.file, f"{r.agreement:.2%}", f"{r.max_abs_diff:.4f}",
                      f"{r.mean_abs_diff:.5f}", acc)
    console.print(table)
    console.print(f"wrote {', '.join(str(f) for f in result.files)}")


# ------------------------------------------------------------------------------------------ serve


@app.command()
@handle_errors
def serve(
    run: Annotated[Path | None, typer.Argument(
        help="Run directory or model folder [default: the latest run].")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    backend: Annotated[str, typer.Option(help="torch, onnx or onnx-int8.")] = "torch",
    precision: Annotated[str, typer.Option(
        help="torch backend: auto (bf16 on CPUs with native bf16), fp32 or bf16.")] = "auto",
    max_batch_size: Annotated[int, typer.Option(
        help="Most reviews merged into one model call.")] = 32,
    batch_window_ms: Annotated[float, typer.Option(
        help="How long a request waits for others to share its model call.")] = 5.0,
    batching: Annotated[bool, typer.Option(
        "--batching/--no-batching", help="Merge concurrent requests into one model call.")
    ] = True,
    max_texts: Annotated[int, typer.Option(help="Most reviews per request (413 beyond).")] = 64,
    max_chars: Annotated[int, typer.Option(
        help="Most characters per review (413 beyond).")] = 50_000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the model over HTTP: POST /predict, /health, /ready, /metrics, a web page at /.

    Set IMDB_SENTIMENT_API_KEY to require that key (X-API-Key header or Bearer token) on
    /predict and /metrics. OpenAPI docs are at /docs.
    """
    from imdb_sentiment.errors import ConfigError, MissingExtraError
    from imdb_sentiment.inference.predictor import BACKENDS, PRECISIONS
    from imdb_sentiment.modeling.loading import find_model_dir
    from imdb_sentiment.runs import resolve_run

    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    for name, value in (("--max-batch-size", max_batch_size), ("--max-texts", max_texts),
                        ("--max-chars", max_chars)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if batch_window_ms < 0:
        raise ConfigError(f"--batch-window-ms must be >= 0, got {batch_window_ms}")
    run_path = resolve_run(run)
    model_dir = find_model_dir(run_path)  # fail here, in one line, not in the server's log
    if backend != "torch":
        from imdb_sentiment.export.onnx import OnnxModel

        OnnxModel.load(model_dir, quantized=backend == "onnx-int8")
    try:
        from imdb_sentiment.serving import app as server
    except ImportError:
        raise MissingExtraError("fastapi", "serve") from None
    options = server.ServeOptions(
        backend=backend, precision=precision, max_texts=max_texts, max_chars=max_chars,
        max_batch_size=max_batch_size, batch_window_ms=batch_window_ms, batching=batching)
    say(f"serving {run_path} on http://{host}:{port} (docs at /docs)")
    server.serve(run_path, host=host, port=port, options=options, log_level=log_level)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    main()
