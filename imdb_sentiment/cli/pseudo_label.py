"""``imdb-sentiment pseudo-label``: label unlabelled reviews with trained runs for self-training.

The file it writes is what ``imdb-sentiment train --extra-train`` adds to the training split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imdb_sentiment.cli import render
from imdb_sentiment.cli.checks import PRECISION_HELP
from imdb_sentiment.errors import ConfigError, RunError

RunsArgument = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Teacher runs (or model folders); their calibrated probabilities are averaged "
        "[default: the latest run].",
        show_default=False,
        metavar="RUN",
    ),
]
UnlabelledOption = Annotated[
    Path | None,
    typer.Option(
        "--unlabelled",
        "--unsup",
        help="Unlabelled reviews: .parquet/.csv/.tsv/.jsonl/.json with a "
        "text column, or .txt with one review a line [default: <data>/unsup.parquet].",
    ),
]
DataOption = Annotated[
    str | None,
    typer.Option(
        help="Prepared data folder whose training, validation and test texts are never labelled "
        "[default: the first teacher's data]."
    ),
]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        help="Where to write text,label,confidence (.parquet); the manifest goes beside it as "
        "<stem>.manifest.json.",
        show_default=False,
    ),
]
MinConfidenceOption = Annotated[
    float,
    typer.Option(
        help="Keep reviews whose (averaged) probability of the given label is at least this, "
        "in (0.5, 1]."
    ),
]
MaxReviewsOption = Annotated[
    int | None, typer.Option(help="Label a seeded sample of this many reviews of the file.")
]
BalanceOption = Annotated[
    bool,
    typer.Option(
        "--balance",
        help="Keep as many negative as positive reviews (the most confident of each), "
        "so the teacher's lean does not shift the label mix.",
    ),
]
DropOverlapOption = Annotated[
    bool,
    typer.Option(
        "--drop-overlap",
        help="Leave out texts that also occur in the prepared validation/test "
        "splits instead of refusing the file (IMDB's unsup file holds a few).",
    ),
]


TextColumnOption = Annotated[str, typer.Option(help="Text column of table files.")]
SeedOption = Annotated[int, typer.Option(help="Seed of the --max-reviews sample.")]
BatchSizeOption = Annotated[int, typer.Option(help="Inference batch size.")]
PrecisionOption = Annotated[str, typer.Option(help=PRECISION_HELP)]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing --output file and its manifest.")
]
RunsDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Runs folder whose LATEST run teaches when no run is named "
        "[default: $IMDB_SENTIMENT_RUNS_DIR, else runs]."
    ),
]


def pseudo_label(
    runs: RunsArgument = None,
    unlabelled: UnlabelledOption = None,
    output: OutputOption = None,
    min_confidence: MinConfidenceOption = 0.9,
    max_reviews: MaxReviewsOption = None,
    balance: BalanceOption = False,
    drop_overlap: DropOverlapOption = False,
    data: DataOption = None,
    text_column: TextColumnOption = "text",
    seed: SeedOption = 42,
    batch_size: BatchSizeOption = 64,
    precision: PrecisionOption = "auto",
    overwrite: OverwriteOption = False,
    runs_dir: RunsDirOption = None,
) -> None:
    """Label unlabelled reviews with trained runs and keep the confident ones, for
    `train --extra-train` (self-training)."""
    from imdb_sentiment.cli import checks
    from imdb_sentiment.data.pseudo import default_unlabelled
    from imdb_sentiment.inference.backends import check_precision
    from imdb_sentiment.inference.pseudo_label import PseudoLabelSettings
    from imdb_sentiment.inference.pseudo_label import pseudo_label as run_labelling
    from imdb_sentiment.runs import resolve_run, run_data_dir

    checks.seed("--seed", seed)
    check_precision(precision)
    settings = PseudoLabelSettings(
        min_confidence=min_confidence,
        max_reviews=max_reviews,
        balance=balance,
        seed=seed,
        batch_size=batch_size,
        precision=precision,
        text_column=text_column,
        drop_overlap=drop_overlap,
    ).check()
    check_output(output, overwrite)
    assert output is not None  # check_output refuses None
    teachers = [resolve_run(r, runs_dir) for r in runs] if runs else [resolve_run(None, runs_dir)]
    data_dir = data or str(run_data_dir(teachers[0]))
    source = unlabelled if unlabelled is not None else default_unlabelled(data_dir)
    result = run_labelling(teachers, source, output, settings, data_dir=data_dir, log=render.say)
    m = result.manifest
    kept, confident = m["labels"]["kept"], m["labels"]["confident"]
    render.console.print(
        f"kept {m['counts']['kept']:,} of {m['counts']['labelled']:,} labelled reviews "
        f"(confidence >= {min_confidence}): {kept['negative']:,} negative, "
        f"{kept['positive']:,} positive (confident: {confidence_counts(confident)})",
        soft_wrap=True,
    )
    render.console.print(f"wrote {result.output} and {result.manifest_path}", soft_wrap=True)
    render.console.print(
        f"train on them with: imdb-sentiment train --extra-train {result.output}", soft_wrap=True
    )  # one line, so the command can be copied whole


def confidence_counts(counts: dict[str, int]) -> str:
    """``"1,200 negative, 1,500 positive"``."""
    return ", ".join(f"{n:,} {name}" for name, n in counts.items())


def check_output(path: Path | None, overwrite: bool) -> None:
    """Refuse a missing or non-parquet ``--output``, one that exists without ``--overwrite``, or
    one that cannot be written (before any model is loaded)."""
    from imdb_sentiment.data.pseudo import manifest_path
    from imdb_sentiment.data.storage import check_writable

    if path is None:
        raise ConfigError("--output PATH.parquet is required: where to write the labelled reviews")
    if path.suffix.lower() != ".parquet":
        raise ConfigError(f"--output must end in .parquet, got {path.name}")
    if path.is_dir():
        raise ConfigError(
            f"--output {path} is a folder; name a file in it, e.g. {path}/pseudo.parquet"
        )
    for existing in (path, manifest_path(path)):
        if existing.exists() and not overwrite:
            raise RunError(f"{existing} already exists; pass --overwrite to replace it")
    check_writable(path.parent, hint="choose another --output")
