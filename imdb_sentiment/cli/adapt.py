"""``imdb-sentiment adapt``: continued masked-LM training on unlabelled reviews.

Flags resolve as for ``train`` (``--set`` < ... < explicit flags), except that the learning
rate, epochs, batch size and warmup a user leaves out come from
:data:`imdb_sentiment.training.adaptation.ADAPT_DEFAULTS` (a masked-LM recipe), not the classifier
recipe. Several processes relaunch under accelerate as ``train`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imdb_sentiment.cli import render
from imdb_sentiment.cli.train import (
    OverwriteOption,
    SetOption,
    relaunch_with_config,
    resume_config,
)

if TYPE_CHECKING:
    from imdb_sentiment.config import Config
    from imdb_sentiment.training.adapt import AdaptResult, AdaptSettings

UnlabelledOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--unlabelled",
        help="A file of unlabelled reviews (.parquet/.csv/.tsv/.jsonl/.json with a "
        "text column, or .txt with one review a line); repeatable. Never validation or test texts.",
    ),
]
IncludeTrainOption = Annotated[
    bool,
    typer.Option(
        "--include-train", help="Also read the prepared training split's texts (labels unused)."
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
PackOption = Annotated[
    bool | None,
    typer.Option(
        "--pack/--no-pack",
        help="Pack reviews end to end into full --max-length blocks, or cut "
        "each review once as the classifier does [default: pack].",
    ),
]


TextColumnOption = Annotated[
    str, typer.Option(help="Column holding the review text in table files.")
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        help="Hub id, local folder, or alias (distilbert, minilm, ...) [default: "
        "distilbert-base-uncased]."
    ),
]
DataOption = Annotated[
    str | None,
    typer.Option(
        help="Prepared data folder, whose validation/test texts are refused and whose training "
        "split --include-train reads [default: data/imdb]."
    ),
]
LrOption = Annotated[
    float | None,
    typer.Option("--lr", "--learning-rate", help="Peak learning rate [default: 5e-5]."),
]
HoldoutOption = Annotated[
    int,
    typer.Option(
        help="Texts held out (at most a tenth) to measure the masked-LM loss before and after."
    ),
]
SaveStepsOption = Annotated[
    int | None,
    typer.Option(help="Checkpoint every N steps, for --resume (0: once per epoch) [default: 0]."),
]
OutputDirOption = Annotated[str | None, typer.Option(help="Folder holding runs [default: runs].")]
RunNameOption = Annotated[
    str | None, typer.Option(help="Run folder name [default: adapt-<model>-<timestamp>].")
]
EpochsOption = Annotated[float | None, typer.Option(help="Epochs over the corpus [default: 1].")]
BatchSizeOption = Annotated[
    int | None, typer.Option(help="Per-device batch size in blocks [default: 32].")
]
MaxLengthOption = Annotated[
    int | None, typer.Option(help="Tokens per block [default: the model's recipe, else 512].")
]
MaxTextsOption = Annotated[
    int | None, typer.Option(help="Use a seeded sample of this many texts of the corpus.")
]
MlmProbabilityOption = Annotated[float, typer.Option(help="Share of tokens masked for prediction.")]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML config file (sections data/model/training/run)."),
]
ResumeOption = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue the run named by --run-name from its latest checkpoint, on the same corpus.",
    ),
]


SeedOption = Annotated[int | None, typer.Option(help="Random seed [default: 42].")]
ReportToOption = Annotated[
    str | None, typer.Option(help="auto (W&B when installed), wandb or none [default: auto].")
]
PrecisionOption = Annotated[
    str | None, typer.Option(help="auto, fp32, bf16 or fp16 [default: auto].")
]
NumProcessesOption = Annotated[
    int | None, typer.Option(help="Data-parallel processes [default: one per GPU].")
]


def adapt(
    unlabelled: UnlabelledOption = None,
    include_train: IncludeTrainOption = False,
    drop_overlap: DropOverlapOption = False,
    text_column: TextColumnOption = "text",
    model: ModelOption = None,
    data: DataOption = None,
    output_dir: OutputDirOption = None,
    run_name: RunNameOption = None,
    lr: LrOption = None,
    epochs: EpochsOption = None,
    batch_size: BatchSizeOption = None,
    max_length: MaxLengthOption = None,
    pack: PackOption = None,
    mlm_probability: MlmProbabilityOption = 0.15,
    max_texts: MaxTextsOption = None,
    holdout: HoldoutOption = 500,
    save_steps: SaveStepsOption = None,
    seed: SeedOption = None,
    report_to: ReportToOption = None,
    precision: PrecisionOption = None,
    num_processes: NumProcessesOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    resume: ResumeOption = False,
    overwrite: OverwriteOption = False,
) -> None:
    """Adapt an encoder to movie reviews by masked-LM training on unlabelled text; the model
    folder it writes is what `train --model` fine-tunes."""
    from imdb_sentiment.runs import env_runs_dir
    from imdb_sentiment.training.adapt import AdaptSettings

    overrides = {
        "training.learning_rate": lr,
        "training.epochs": epochs,
        "training.batch_size": batch_size,
        "model.max_length": max_length,
        "model.name": model,
        "data.dir": data,
        "run.output_dir": output_dir or env_runs_dir(),
        "run.name": run_name,
        "training.seed": seed,
        "run.report_to": report_to,
        "training.precision": precision,
        "training.eval_steps": save_steps,
        "training.num_processes": num_processes,
        "run.overwrite": overwrite or None,
    }
    settings = AdaptSettings(
        unlabelled=[str(p) for p in unlabelled or []],
        include_train=include_train,
        drop_overlap=drop_overlap,
        pack=True if pack is None else pack,
        mlm_probability=mlm_probability,
        max_texts=max_texts,
        holdout=holdout,
        text_column=text_column,
    ).check()
    config, settings = resumed(resume, config, settings, output_dir, run_name)
    launch(resolve_adapt_config(config, overrides, set_), settings, resume)


def resumed(
    resume: bool,
    config: Path | None,
    settings: AdaptSettings,
    output_dir: str | None,
    run_name: str | None,
) -> tuple[Path | None, AdaptSettings]:
    """With ``--resume``: the config to resume with, and the run's saved corpus settings unless
    flags gave some. Without it, ``config`` and ``settings`` as they are."""
    if not resume:
        return config, settings
    config = resume_config(config, output_dir, run_name)
    if not settings.unlabelled and not settings.include_train:
        settings = type(settings).saved(config.parent)
    return config, settings


def launch(cfg: Config, settings: AdaptSettings, resume: bool) -> None:
    """Adapt here, or relaunch under accelerate when the config asks for several processes."""
    from imdb_sentiment.training import distributed

    if not distributed.already_distributed():
        n = distributed.wanted_processes(cfg.training.num_processes)
        if n > 1:
            raise typer.Exit(
                relaunch_with_config("adapt", cfg, n, resume, settings_flags(settings))
            )
    adapt_here(cfg, settings, resume)


def resolve_adapt_config(
    config: Path | None, overrides: dict[str, Any], sets: list[str] | None
) -> Config:
    """The config, with the masked-LM defaults for the keys no flag, ``--set`` or file gave."""
    from imdb_sentiment.config import load_yaml, parse_set, resolve
    from imdb_sentiment.training.adaptation import ADAPT_DEFAULTS

    given = set(load_yaml(config) if config else {}) | set(parse_set(sets))
    filled = [k for k in ADAPT_DEFAULTS if overrides.get(k) is None and k not in given]
    cfg = resolve(config, {**overrides, **{k: ADAPT_DEFAULTS[k] for k in filled}}, sets)
    for key in filled:
        cfg.sources[key] = "adapt default"
    return cfg


def settings_flags(settings: AdaptSettings) -> list[str]:
    """The command-line flags that give ``settings`` again (for the relaunched processes)."""
    flags = [arg for path in settings.unlabelled for arg in ("--unlabelled", path)]
    flags += ["--include-train"] if settings.include_train else []
    flags += ["--drop-overlap"] if settings.drop_overlap else []
    flags += [
        "--pack" if settings.pack else "--no-pack",
        "--mlm-probability",
        repr(settings.mlm_probability),
        "--holdout",
        str(settings.holdout),
        "--text-column",
        settings.text_column,
    ]
    return flags + (["--max-texts", str(settings.max_texts)] if settings.max_texts else [])


def adapt_here(cfg: Config, settings: AdaptSettings, resume: bool) -> None:
    """Adapt in this process; only the main process of a distributed run talks."""
    from imdb_sentiment.training.adapt import adapt as run_adaptation
    from imdb_sentiment.training.distributed import is_main_process

    main = is_main_process()
    if main:
        render.say("resolved config (# where each value came from):\n" + cfg.describe())
    result = run_adaptation(
        cfg, settings, resume=resume, log=render.say if main else (lambda _m: None)
    )
    if main:
        adapted(result)


def adapted(result: AdaptResult) -> None:
    """What the run read and how the masked-LM loss moved, and the command that uses it."""
    m = result.manifest
    r, used = m.get("result") or {}, m.get("used") or {}
    render.console.print(f"adapted encoder: {result.model_dir}")
    render.console.print(
        f"texts: {used.get('train_texts', 0):,} trained on, "
        f"{used.get('holdout_texts', 0):,} held out; corpus sha256 "
        f"{(m.get('corpus') or {}).get('corpus_sha256', '')[:16]}"
    )
    if r.get("mlm_loss_after") is not None and r.get("mlm_loss_before") is not None:
        render.console.print(
            f"held-out masked-LM loss: {r['mlm_loss_before']:.4f} -> {r['mlm_loss_after']:.4f}"
        )
    render.console.print(
        f"fine-tune it with: imdb-sentiment train --model {result.model_dir}", soft_wrap=True
    )  # one line, so the command can be copied whole
