"""``imdb-sentiment search``: hyperparameter search with Optuna, resumable, with a ranked table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imdb_sentiment.cli import render
from imdb_sentiment.cli.train import ModelOption, SetOption, TruncationOption, training_device

if TYPE_CHECKING:
    from imdb_sentiment.training.search import SearchResult

SpaceOption = Annotated[
    Path | None,
    typer.Option(
        "--space",
        help="YAML file of config keys to search, each a range {low, high, log, step} or "
        "a list of choices; it replaces the default space (learning rate, batch "
        "size, warmup ratio, weight decay).",
    ),
]


NameOption = Annotated[
    str, typer.Option(help="Search folder under --output-dir; the same name resumes the study.")
]
TrialsOption = Annotated[
    int, typer.Option(help="Finished trials the study should hold, counting earlier runs of it.")
]
TimeoutOption = Annotated[
    float | None, typer.Option(help="Seconds to keep starting trials (a started trial finishes).")
]
PruneOption = Annotated[
    bool,
    typer.Option("--prune/--no-prune", help="Stop trials that trail the median at an evaluation."),
]
KeepCheckpointsOption = Annotated[
    bool, typer.Option("--keep-checkpoints", help="Keep each finished trial's checkpoints.")
]
EpochsOption = Annotated[float | None, typer.Option(help="Training epochs per trial.")]
MaxLengthOption = Annotated[int | None, typer.Option(help="Tokens per review after truncation.")]
DataOption = Annotated[str | None, typer.Option(help="Prepared data folder [default: data/imdb].")]
OutputDirOption = Annotated[
    str | None, typer.Option(help="Folder holding the search folder [default: runs].")
]
SeedOption = Annotated[
    int | None, typer.Option(help="Random seed of every trial and of the sampler [default: 42].")
]
ReportToOption = Annotated[
    str | None, typer.Option(help="auto (W&B when installed), wandb or none [default: auto].")
]
PrecisionOption = Annotated[str | None, typer.Option(help="auto, fp32, bf16 or fp16.")]
MaxTrainSamplesOption = Annotated[
    int | None, typer.Option(help="Train each trial on a stratified subset of this many reviews.")
]
MaxEvalSamplesOption = Annotated[
    int | None,
    typer.Option(help="Validate each trial on a stratified subset of this many reviews."),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML config file every trial starts from.")
]


def search(
    name: NameOption = "search",
    trials: TrialsOption = 20,
    timeout: TimeoutOption = None,
    space: SpaceOption = None,
    prune: PruneOption = True,
    keep_checkpoints: KeepCheckpointsOption = False,
    epochs: EpochsOption = None,
    max_length: MaxLengthOption = None,
    truncation: TruncationOption = None,
    model: ModelOption = None,
    data: DataOption = None,
    output_dir: OutputDirOption = None,
    seed: SeedOption = None,
    report_to: ReportToOption = None,
    precision: PrecisionOption = None,
    max_train_samples: MaxTrainSamplesOption = None,
    max_eval_samples: MaxEvalSamplesOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Search hyperparameters with Optuna; write the best settings for train --config."""
    from imdb_sentiment.runs import env_runs_dir
    from imdb_sentiment.training.search import (
        ConfigSource,
        SearchSettings,
        import_optuna,
    )
    from imdb_sentiment.training.search import search as run_search
    from imdb_sentiment.training.search_space import default_space, load_space

    import_optuna()  # a missing extra is reported before anything is read
    overrides = {
        "training.epochs": epochs,
        "model.max_length": max_length,
        "model.truncation": truncation,
        "model.name": model,
        "data.dir": data,
        "run.output_dir": output_dir or env_runs_dir(),
        "training.seed": seed,
        "run.report_to": report_to,
        "training.precision": precision,
        "data.max_train_samples": max_train_samples,
        "data.max_eval_samples": max_eval_samples,
    }
    source = ConfigSource(config, overrides, set_ or [], device=training_device())
    settings = SearchSettings(
        name=name,
        trials=trials,
        timeout=timeout,
        space=load_space(space) if space else default_space(),
        prune=prune,
        keep_checkpoints=keep_checkpoints,
    )
    show(run_search(source, settings, log=render.say))


def show(result: SearchResult) -> None:
    """The ranked trials, then where the best settings went."""
    from rich import box
    from rich.table import Table

    keys = sorted({k for r in result.rows for k in r.params})
    table = Table(
        title=f"search {result.search_dir}: {len(result.rows)} trials, {result.ran} run now",
        box=box.SIMPLE_HEAD,
    )
    for col in ("#", "trial", "state", "accuracy", *keys, "min"):
        table.add_column(
            col.rsplit(".", 1)[-1], justify="left" if col == "state" else "right", no_wrap=True
        )
    for rank, r in enumerate(result.rows, start=1):
        params = [_value(r.params.get(k)) for k in keys]
        accuracy = "-" if r.accuracy is None else f"{r.accuracy:.4f}"
        minutes = "-" if r.seconds is None else f"{r.seconds / 60:.1f}"
        table.add_row(str(rank), str(r.number), r.state, accuracy, *params, minutes)
    render.console.print(table)
    if result.best_config is None:
        render.console.print("no trial has completed yet, so no best settings were written")
    else:
        best = next(r for r in result.rows if r.state == "complete")
        render.console.print(
            f"best: trial {best.number} ({best.run_dir}); its settings are in "
            f"{result.best_config}; train with them: imdb-sentiment train "
            f"--config {result.best_config}",
            highlight=False,
            soft_wrap=True,
        )


def _value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
