"""``imdb-sentiment eval``: metrics, intervals, slices, calibration and a report for a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imdb_sentiment.cli import checks, render
from imdb_sentiment.errors import ConfigError

REPORT_TO = ("none", "wandb", "auto")


RunArgument = Annotated[
    Path | None, typer.Argument(help="Run directory or model folder [default: the latest run].")
]
SplitOption = Annotated[str, typer.Option(help="Prepared split: test, validation or train.")]
FileOption = Annotated[
    Path | None,
    typer.Option(help="A labelled .parquet/.csv/.jsonl file instead of a prepared split."),
]
DataOption = Annotated[
    Path | None, typer.Option(help="Prepared data folder [default: the one the run trained on].")
]
TextColumnOption = Annotated[str, typer.Option(help="Text column of --file.")]
LabelColumnOption = Annotated[str, typer.Option(help="Label column of --file.")]
MaxSamplesOption = Annotated[
    int | None, typer.Option(help="Evaluate a seeded random subset of this many reviews.")
]
BatchSizeOption = Annotated[int, typer.Option(help="Inference batch size.")]
LongReviewsOption = Annotated[
    str,
    typer.Option(
        help="truncate (cut as trained) or chunks (average overlapping windows over the whole "
        "review)."
    ),
]
RobustnessOption = Annotated[
    bool, typer.Option("--robustness", help="Also run typo, neutral-sentence and negation checks.")
]
RobustnessSamplesOption = Annotated[
    int, typer.Option(help="Reviews the robustness checks are generated from.")
]
NoReportOption = Annotated[
    bool,
    typer.Option(
        "--no-report", help="Skip intervals, slices, plots, report.md and the model card."
    ),
]
ReportToOption = Annotated[
    str, typer.Option(help="Also log the report to W&B: none, wandb or auto (W&B when installed).")
]
OutputDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Write the results here instead of <run>/eval/<split>/ (needed when the run is "
        "read-only, e.g. a :ro mount; the model card is then left as it is)."
    ),
]
RunsDirOption = Annotated[
    Path | None,
    typer.Option(
        help="Runs folder whose LATEST run is used when no run is named "
        "[default: $IMDB_SENTIMENT_RUNS_DIR, else runs]."
    ),
]


def eval_(
    run: RunArgument = None,
    split: SplitOption = "test",
    file: FileOption = None,
    data: DataOption = None,
    text_column: TextColumnOption = "text",
    label_column: LabelColumnOption = "label",
    max_samples: MaxSamplesOption = None,
    batch_size: BatchSizeOption = 64,
    long_reviews: LongReviewsOption = "truncate",
    robustness: RobustnessOption = False,
    robustness_samples: RobustnessSamplesOption = 200,
    no_report: NoReportOption = False,
    report_to: ReportToOption = "none",
    output_dir: OutputDirOption = None,
    runs_dir: RunsDirOption = None,
) -> None:
    """Metrics with 95% intervals, slices by length and rating, calibration, worst errors, plots.

    Writes metrics.json, predictions.parquet, misclassified.csv, plots/*.png and report.md to
    <run>/eval/<split>/ (or --output-dir) and refreshes the model card (model/README.md).
    """
    from imdb_sentiment.evaluation.evaluate import EvalOptions, evaluate
    from imdb_sentiment.modeling.tokenization import check_mode
    from imdb_sentiment.runs import resolve_run

    checks.at_least("--max-samples", max_samples)
    checks.at_least("--batch-size", batch_size)
    check_mode(long_reviews)
    if report_to not in REPORT_TO:
        raise ConfigError(f"--report-to must be none, wandb or auto, got {report_to!r}")
    run_path = resolve_run(run, runs_dir)
    options = EvalOptions(
        split=split,
        file=file,
        data_dir=data,
        text_column=text_column,
        label_column=label_column,
        max_samples=max_samples,
        batch_size=batch_size,
        long_reviews=long_reviews,
        report=not no_report,
        robustness=robustness,
        robustness_samples=robustness_samples,
        report_to=report_to,
        output_dir=output_dir,
    )
    result = evaluate(run_path, options, log=render.say)
    render.evaluation(run_path, result)
