"""``imdb-sentiment download``: get IMDB, clean it, carve validation, write splits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imdb_sentiment.cli import checks, render

SourceOption = Annotated[
    str,
    typer.Option(
        help="Hub dataset id, a folder of parquet/csv/jsonl files, an aclImdb/ folder, or a file."
    ),
]
OutputOption = Annotated[Path, typer.Option(help="Where to write the prepared splits.")]
TextColumnOption = Annotated[str, typer.Option(help="Column holding the review text.")]
LabelColumnOption = Annotated[str, typer.Option(help="Column holding the label.")]
ValidationFractionOption = Annotated[
    float, typer.Option(help="Share of train carved out (stratified) as validation.")
]
SeedOption = Annotated[int, typer.Option(help="Seed of the validation split.")]
RevisionOption = Annotated[str | None, typer.Option(help="Hub dataset revision.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace existing prepared data.")]


def download(
    source: SourceOption = "stanfordnlp/imdb",
    output: OutputOption = Path("data/imdb"),
    text_column: TextColumnOption = "text",
    label_column: LabelColumnOption = "label",
    validation_fraction: ValidationFractionOption = 0.1,
    seed: SeedOption = 42,
    revision: RevisionOption = None,
    force: ForceOption = False,
) -> None:
    """Get IMDB (hub or local copy), clean it, carve validation, write splits and a manifest."""
    from imdb_sentiment.data.files import Columns
    from imdb_sentiment.data.prepare import prepare

    checks.seed("--seed", seed)
    manifest = prepare(
        source,
        output,
        columns=Columns(text_column, label_column),
        validation_fraction=validation_fraction,
        seed=seed,
        revision=revision,
        force=force,
        log=render.say,
    )
    render.manifest(manifest, output)
