"""``imdb-sentiment drift``: build a run's reference profile, or test new texts against it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from imdb_sentiment.cli import checks, render
from imdb_sentiment.errors import ConfigError, RunError

RunArgument = Annotated[
    Path | None, typer.Argument(help="Run directory [default: the latest run].")
]
FileOption = Annotated[
    Path | None, typer.Option(help="Texts to test: .txt (one per line), .csv, .jsonl or .parquet.")
]
BuildReferenceOption = Annotated[
    bool,
    typer.Option(
        "--build-reference",
        help="(Re)build the run's reference profile from its validation "
        "reviews, into RUN/reference/.",
    ),
]
TextColumnOption = Annotated[str, typer.Option(help="Text column of --file.")]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        help="Folder for drift.json, report.md and the plots [default: RUN/drift/<UTC time>]."
    ),
]
AlphaOption = Annotated[
    float, typer.Option(help="Family-wise false-alarm rate over the tests (Bonferroni).")
]
ReferenceSizeOption = Annotated[
    int, typer.Option(help="Validation reviews the reference profiles, at most.")
]
NoPlotsOption = Annotated[
    bool, typer.Option("--no-plots", help="Write drift.json and report.md without the PNG plots.")
]
AsJsonOption = Annotated[bool, typer.Option("--json", help="Print drift.json to stdout.")]
RunsDirOption = Annotated[
    Path | None, typer.Option(help="Runs folder whose LATEST run is used when no run is named.")
]


def drift(
    run: RunArgument = None,
    file: FileOption = None,
    build_reference: BuildReferenceOption = False,
    text_column: TextColumnOption = "text",
    output: OutputOption = None,
    alpha: AlphaOption = 0.05,
    reference_size: ReferenceSizeOption = 2000,
    no_plots: NoPlotsOption = False,
    as_json: AsJsonOption = False,
    runs_dir: RunsDirOption = None,
) -> None:
    """Test whether new texts drift from what the model was validated on.

    Exits 0 when no signal drifts, 1 when one does (for CI and cron jobs).
    """
    from imdb_sentiment.runs import resolve_run

    if file is None and not build_reference:
        raise ConfigError("give --file PATH to test a batch, or --build-reference")
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be between 0 and 1, got {alpha}")
    checks.at_least("--reference-size", reference_size, 50)
    path = resolve_run(run, runs_dir)
    if not (path / "model").is_dir():
        raise RunError(f"{path} is not a run directory with a model/ folder; name a run")
    if build_reference:
        from imdb_sentiment.monitoring.reference import build_reference as build

        folder = build(path, limit=reference_size, log=render.say)
        render.say(f"wrote the drift reference to {folder}")
    if file is None:
        return
    from imdb_sentiment.data.files import read_texts_file
    from imdb_sentiment.monitoring.drift import check_batch

    texts = read_texts_file(file, text_column=text_column)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    out = output if output is not None else path / "drift" / stamp
    if (out / "drift.json").exists():
        raise RunError(f"{out} already holds a drift report; choose another --output")
    report, pngs = check_batch(
        path, texts, source=str(file), output=out, alpha=alpha, plots=not no_plots, log=render.say
    )
    _show(report, out, pngs, as_json)
    if report["drifted"]:
        raise typer.Exit(1)


def reference_after_training(run_dir: Path) -> None:
    """Build the reference of a run ``train`` has just finished; a failure only warns.

    The model is saved by then: nothing here may cost it, so every error becomes one line
    saying how to build the reference later.
    """
    import time

    from imdb_sentiment.monitoring.reference import TRAIN_REFERENCE_SIZE, build_reference

    start = time.perf_counter()
    try:
        folder = build_reference(run_dir, limit=TRAIN_REFERENCE_SIZE)
    except Exception as exc:  # any failure: the trained model must stay
        from imdb_sentiment.data.files import one_line

        render.say(
            f"warning: the model is saved, but its drift reference was not built "
            f"({one_line(exc)}); build it with "
            f"`imdb-sentiment drift {run_dir} --build-reference`"
        )
        return
    render.say(
        f"wrote the drift reference to {folder} ({time.perf_counter() - start:.1f} s; "
        "--no-reference skips it)"
    )


def _show(report: dict[str, Any], out: Path, pngs: list[Path], as_json: bool) -> None:
    """The report as JSON on stdout, or one line per signal on stderr."""
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for s in report["signals"]:
        render.say(
            f"{s['name']:<24} {'DRIFT' if s['drifted'] else 'ok':<5} "
            f"statistic {s['statistic']:.4g}"
            + ("" if s["p_value"] is None else f"  p {s['p_value']:.3g}")
        )
    render.say(
        f"wrote {out / 'drift.json'} and {out / 'report.md'}"
        + (f" with {len(pngs)} plots ({', '.join(p.name for p in pngs)})" if pngs else "")
    )
