"""``imdb-sentiment predict``: label reviews from arguments, a file or stdin."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from imdb_sentiment.cli import checks, render
from imdb_sentiment.errors import ConfigError, DataError, RunError

OUTPUT_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")


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
    runs_dir: Annotated[Path | None, typer.Option(
        help="Runs folder whose LATEST run is used when no run is named "
             "[default: $IMDB_SENTIMENT_RUNS_DIR, else runs].")] = None,
) -> None:
    """Label and (calibrated) probability for each review."""
    from imdb_sentiment.inference.backends import check_backend, check_precision
    from imdb_sentiment.inference.predictor import (
        Predictor,
        apply_uncertain_band,
        parse_uncertain_band,
    )
    from imdb_sentiment.modeling.tokenization import check_mode
    from imdb_sentiment.runs import resolve_run

    check_precision(precision, check_backend(backend))
    check_mode(long_reviews)
    checks.at_least("--batch-size", batch_size)
    band = parse_uncertain_band(uncertain_band) if uncertain_band is not None else None
    if output is not None:
        check_output(output, overwrite)
    reviews = gather_texts(texts, file, text_column)
    predictor = Predictor.from_path(resolve_run(model, runs_dir), batch_size=batch_size,
                                    long_reviews=long_reviews, backend=backend,
                                    precision=precision)
    rows = [p.to_dict() for p in apply_uncertain_band(predictor.predict(reviews), band)]
    if output is not None:
        write_predictions(output, reviews, rows)
        render.say(f"wrote {len(rows):,} predictions to {output}")
        return
    render.predictions(reviews, rows, as_json=as_json)


def gather_texts(texts: list[str] | None, file: Path | None, text_column: str) -> list[str]:
    """The reviews of the arguments (``-`` reads stdin, one per line), then of ``--file``."""
    from imdb_sentiment.data.files import read_texts_file

    out: list[str] = []
    for text in texts or []:
        if text == "-":
            out.extend(_stdin_reviews())
        else:
            out.append(text)
    if file is not None:
        out.extend(read_texts_file(file, text_column=text_column))
    if not out:
        raise DataError('nothing to predict: give texts, --file PATH, or - for stdin')
    return out


def _stdin_reviews() -> list[str]:
    raw = sys.stdin.buffer.read()
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError("standard input is not valid UTF-8") from None
    from imdb_sentiment.text import clean_text

    reviews = [line for line in decoded.splitlines() if clean_text(line)]
    if not reviews:
        raise DataError("standard input holds no reviews")
    return reviews


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse an ``--output`` of an unknown kind, one that exists without ``--overwrite``, or
    one that cannot be written (before any model is loaded)."""
    from imdb_sentiment.data.storage import check_writable

    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--output must end in .csv, .jsonl or .parquet, got {path.name}")
    if path.is_dir():
        raise ConfigError(f"--output {path} is a folder; name a file in it, e.g. {path}/out.csv")
    if path.exists() and not overwrite:
        raise RunError(f"{path} already exists; pass --overwrite to replace it")
    check_writable(path.parent, hint="choose another --output")


def write_predictions(path: Path, texts: list[str], rows: list[dict[str, Any]]) -> None:
    """Write texts and their predictions as csv, jsonl or parquet, in one rename (creating
    missing folders)."""
    import pandas as pd

    frame = pd.DataFrame([{"text": t, **r} for t, r in zip(texts, rows, strict=True)])
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed over it: a full disk leaves the old file whole.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        elif suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        tmp.replace(path)
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:
            raise
        # pandas' writers drop the path from the error; the one-line message needs it.
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        tmp.unlink(missing_ok=True)
