"""``imdb-sentiment predict``: label reviews from arguments, a file or stdin."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imdb_sentiment.cli import checks, render
from imdb_sentiment.cli.checks import PRECISION_HELP
from imdb_sentiment.errors import ConfigError, DataError, RunError

if TYPE_CHECKING:
    from imdb_sentiment.inference.predictor import Predictor

OUTPUT_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")


TextsArgument = Annotated[
    list[str] | None,
    typer.Argument(help="Reviews to classify; '-' reads one review per line from stdin."),
]
FileOption = Annotated[
    Path | None,
    typer.Option(help="Reviews from a .txt (one per line), .csv, .jsonl or .parquet file."),
]
ModelOption = Annotated[
    Path | None, typer.Option(help="Run directory or model folder [default: the latest run].")
]
TextColumnOption = Annotated[str, typer.Option(help="Text column of --file.")]
AsJsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
OutputOption = Annotated[
    Path | None, typer.Option(help="Write predictions to .csv, .jsonl or .parquet.")
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing --output file.")
]
BatchSizeOption = Annotated[int, typer.Option(help="Inference batch size.")]
LongReviewsOption = Annotated[
    str,
    typer.Option(
        help="truncate (cut as trained) or chunks (average overlapping windows over the whole "
        "review)."
    ),
]
UncertainBandOption = Annotated[
    str | None,
    typer.Option(
        help="LO:HI, e.g. 0.4:0.6: label reviews whose positive probability is in the band "
        "'uncertain' instead of guessing."
    ),
]
BackendOption = Annotated[
    str, typer.Option(help="torch, onnx or onnx-int8 (the files `imdb-sentiment export` wrote).")
]
PrecisionOption = Annotated[str, typer.Option(help=PRECISION_HELP)]
RunsDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Runs folder whose LATEST run is used when no run is named "
        "[default: $IMDB_SENTIMENT_RUNS_DIR, else runs]."
    ),
]
ProfileOption = Annotated[
    bool,
    typer.Option(
        "--profile",
        help="Record tokenizing and the first model batches with torch.profiler "
        "and print the top operators (see docs/PROFILING.md).",
    ),
]
ProfileDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Folder for --profile's trace.json and top_ops.json/.txt "
        "[default: profiles/predict-<time>]."
    ),
]
ProfileStepsOption = Annotated[
    int | None, typer.Option(help="Model batches --profile records [default: 5].")
]


def predict(
    texts: TextsArgument = None,
    file: FileOption = None,
    model: ModelOption = None,
    text_column: TextColumnOption = "text",
    as_json: AsJsonOption = False,
    output: OutputOption = None,
    overwrite: OverwriteOption = False,
    batch_size: BatchSizeOption = 32,
    long_reviews: LongReviewsOption = "truncate",
    uncertain_band: UncertainBandOption = None,
    backend: BackendOption = "torch",
    precision: PrecisionOption = "auto",
    runs_dir: RunsDirOption = None,
    profile: ProfileOption = False,
    profile_dir: ProfileDirOption = None,
    profile_steps: ProfileStepsOption = None,
) -> None:
    """Label and (calibrated) probability for each review."""
    from imdb_sentiment.cli import profiling
    from imdb_sentiment.inference.backends import check_backend, check_precision
    from imdb_sentiment.inference.cpu_student import describe
    from imdb_sentiment.inference.predictor import Predictor, parse_uncertain_band
    from imdb_sentiment.modeling.tokenization import check_mode
    from imdb_sentiment.runs import resolve_run

    check_precision(precision, check_backend(backend))
    check_mode(long_reviews)
    checks.at_least("--batch-size", batch_size)
    band = parse_uncertain_band(uncertain_band) if uncertain_band is not None else None
    if output is not None:
        check_output(output, overwrite)
    profiled = profiling.check_steps(profile, profile_steps)
    profile_folder = profiling.predict_folder(profile_dir) if profiled else None
    # Every input check runs before the model loads; the reviews are then read again, a chunk
    # at a time, so a file of any length is predicted in bounded memory.
    reviews = gather_reviews(texts, file, text_column)
    predictor = Predictor.from_path(
        resolve_run(model, runs_dir),
        batch_size=batch_size,
        long_reviews=long_reviews,
        backend=backend,
        precision=precision,
        cpu_student=True,
    )
    if predictor.student is not None:
        render.say(describe(predictor.student))
    with profiling.predicting(predictor, profile_folder, profiled):
        deliver(
            predicted_chunks(predictor, reviews.chunks(), band),
            output,
            overwrite=overwrite,
            as_json=as_json,
        )


def deliver(
    results: Iterable[tuple[list[str], list[dict[str, Any]]]],
    output: Path | None,
    *,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Print each chunk's predictions as it comes, or write them all to ``output``."""
    if output is None:
        for chunk, rows in results:
            render.predictions(chunk, rows, as_json=as_json)
        return
    written = write_predictions(output, results, overwrite=overwrite)
    render.say(f"wrote {written:,} predictions to {output}")


@dataclass
class Reviews:
    """The reviews to predict: those given as arguments or on stdin (held; they are few), then
    those of ``--file`` (read a chunk at a time, already checked whole)."""

    given: list[str]
    file: Path | None = None
    text_column: str = "text"
    count: int = 0

    def chunks(self, size: int | None = None) -> Iterator[list[str]]:
        """Every review in order, at most ``size`` (default ``CHUNK_SIZE``) at a time."""
        from imdb_sentiment.data.stream import CHUNK_SIZE, batched, iter_texts

        size = size or CHUNK_SIZE
        from_file = (
            ()
            if self.file is None
            else (
                text
                for chunk in iter_texts(self.file, text_column=self.text_column, chunk_size=size)
                for text in chunk
            )
        )
        # One stream, so the chunk where the given reviews end is filled from the file.
        yield from batched(itertools.chain(self.given, from_file), size)


def gather_reviews(texts: list[str] | None, file: Path | None, text_column: str) -> Reviews:
    """The reviews of the arguments (``-`` reads stdin, one per line), then of ``--file``,
    checked (empty input, an empty review, a bad file) without holding the file's reviews."""
    from imdb_sentiment.data.stream import count_texts
    from imdb_sentiment.inference.predictor import check_texts

    given: list[str] = []
    for text in texts or []:
        if text == "-":
            given.extend(_stdin_reviews())
        else:
            given.append(text)
    reviews = Reviews(given, file, text_column, len(given))
    if file is not None:
        reviews.count += count_texts(file, text_column=text_column)
    if not reviews.count:
        raise DataError("nothing to predict: give texts, --file PATH, or - for stdin")
    if given:
        check_texts(given)  # "review N is empty", numbered as the reviews come
    return reviews


def predicted_chunks(
    predictor: Predictor,
    chunks: Iterable[list[str]],
    band: tuple[float, float] | None,
) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
    """Each chunk of reviews with its prediction rows, as ``predict --json`` prints them."""
    from imdb_sentiment.inference.predictor import apply_uncertain_band

    for chunk in chunks:
        yield chunk, [p.to_dict() for p in apply_uncertain_band(predictor.predict(chunk), band)]


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


def write_predictions(
    path: Path, results: Iterable[tuple[list[str], list[dict[str, Any]]]], *, overwrite: bool = True
) -> int:
    """Append texts and their predictions to a csv, jsonl or parquet file chunk by chunk, moved
    into place (creating missing folders) only once all are written; how many rows."""
    import pandas as pd

    from imdb_sentiment.data.stream import TableWriter
    from imdb_sentiment.training.signals import (
        Terminated,
        TrainingInterrupted,
        exit_code_for,
        sigterm_interrupts,
    )

    try:
        # SIGTERM unwinds like Ctrl-C, so the file being written is deleted, not left half.
        with sigterm_interrupts(), TableWriter(path, overwrite=overwrite) as writer:
            for texts, rows in results:
                writer.write(
                    pd.DataFrame([{"text": t, **r} for t, r in zip(texts, rows, strict=True)])
                )
    except FileExistsError as exc:
        if exc.filename != str(path):
            raise
        raise RunError(
            f"{path} appeared while predicting; pass --overwrite to replace it, "
            "or choose another --output"
        ) from None
    except Terminated as exc:
        raise TrainingInterrupted(
            f"predict stopped by SIGTERM; {path} was not written", exit_code_for(exc)
        ) from None
    return writer.rows
