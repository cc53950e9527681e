"""``imdb-sentiment download``: get IMDB, clean it, carve validation, write splits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imdb_sentiment.cli import checks, render


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
    from imdb_sentiment.data.files import Columns
    from imdb_sentiment.data.prepare import prepare

    checks.seed("--seed", seed)
    manifest = prepare(
        source, output, columns=Columns(text_column, label_column),
        validation_fraction=validation_fraction, seed=seed, revision=revision, force=force,
        log=render.say,
    )
    render.manifest(manifest, output)
