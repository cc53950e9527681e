"""``imdb-sentiment train``: resolve the config, relaunch under accelerate when asked, train.

A flag left out takes its value from ``--set``, then ``--config``, then the recipe for the model
family (``imdb_sentiment/recipes/*.yaml``, with its ``cpu:``/``gpu:`` section for the device
training runs on), then the dataclass defaults; the printed and saved config says which.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imdb_sentiment.cli import render
from imdb_sentiment.errors import RunError

if TYPE_CHECKING:
    from imdb_sentiment.config import Config


# Defaults marked "recipe" depend on the model: its recipe (imdb_sentiment/recipes/) may set
# them, else the dataclass default shown applies; the resolved config says which did.
RECIPE = "the model's recipe, else"  # e.g. [default: the model's recipe, else 2e-5]

# The longest flag declarations, named so that the command reads as its list of flags.
TruncationOption = Annotated[
    str | None,
    typer.Option(
        help="Which tokens of a long review to keep: head, tail or head+tail (the first "
        f"quarter and the end; see docs/QUALITY.md) [default: {RECIPE} head+tail]."
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        help="Hub id, local folder, or alias (distilbert, minilm, bert, roberta); picks the "
        "recipe for the flags you leave out [default: distilbert-base-uncased]."
    ),
]
LrOption = Annotated[
    float | None,
    typer.Option("--lr", "--learning-rate", help=f"Peak learning rate [default: {RECIPE} 2e-5]."),
]
EpochsOption = Annotated[float | None, typer.Option(help=f"Training epochs [default: {RECIPE} 2].")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any config key, e.g. --set training.warmup_ratio=0.1."),
]
ResumeOption = Annotated[
    bool,
    typer.Option(
        "--resume", help="Continue the run named by --run-name from its latest checkpoint."
    ),
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing run of the same name.")
]
KeepCheckpointsOption = Annotated[
    bool,
    typer.Option(
        "--keep-checkpoints",
        help="Keep RUN/checkpoints/ once the run has succeeded (to resume it later with a "
        "larger --epochs); by default they are removed, the model is kept.",
    ),
]
ExtraTrainOption = Annotated[
    str | None,
    typer.Option(
        help="Also train on this labelled table (text,label; e.g. from `imdb-sentiment "
        "pseudo-label`); validation/test, training and repeated texts are dropped."
    ),
]
NoReferenceOption = Annotated[
    bool,
    typer.Option(
        "--no-reference",
        help="Skip the drift reference (RUN/reference/) written after training; "
        "`imdb-sentiment drift RUN --build-reference` writes it later.",
    ),
]
ProfileOption = Annotated[
    bool,
    typer.Option(
        "--profile",
        help="Record a few training steps with torch.profiler into RUN/profile/ "
        "(trace.json for Perfetto, top_ops.json/.txt) and print the top operators "
        "(main process only; see docs/PROFILING.md).",
    ),
]
ProfileStepsOption = Annotated[
    int | None,
    typer.Option(
        help="Optimizer steps --profile records, after skipping one and warming up on one "
        "[default: 5]."
    ),
]


BatchSizeOption = Annotated[
    int | None, typer.Option(help=f"Per-device training batch size [default: {RECIPE} 16].")
]
MaxLengthOption = Annotated[
    int | None, typer.Option(help=f"Tokens per review after truncation [default: {RECIPE} 512].")
]
DataOption = Annotated[str | None, typer.Option(help="Prepared data folder [default: data/imdb].")]
OutputDirOption = Annotated[str | None, typer.Option(help="Folder holding runs [default: runs].")]
RunNameOption = Annotated[
    str | None, typer.Option(help="Run folder name [default: <model>-<timestamp>].")
]
SeedOption = Annotated[int | None, typer.Option(help=f"Random seed [default: {RECIPE} 42].")]
ReportToOption = Annotated[
    str | None, typer.Option(help="auto (W&B when installed), wandb or none [default: auto].")
]
PrecisionOption = Annotated[
    str | None, typer.Option(help=f"auto, fp32, bf16 or fp16 [default: {RECIPE} auto].")
]
MaxTrainSamplesOption = Annotated[
    int | None, typer.Option(help="Train on a stratified subset of this many reviews.")
]
MaxEvalSamplesOption = Annotated[
    int | None, typer.Option(help="Validate on a stratified subset of this many reviews.")
]
NumProcessesOption = Annotated[
    int | None, typer.Option(help="Data-parallel processes [default: one per GPU].")
]
LayersOption = Annotated[
    int | None,
    typer.Option(
        help="Student with fewer encoder layers: keep this many, evenly spaced from the first "
        "(6 -> 3 keeps 0, 2, 4; docs/STUDENTS.md)."
    ),
]
DistillFromOption = Annotated[
    str | None,
    typer.Option(
        help="Distil from this run's model: train on its soft targets too; the student starts "
        "from it (unless --model) and reads reviews as it did (unless given)."
    ),
]
DistillAlphaOption = Annotated[
    float | None,
    typer.Option(help="Weight of the labels' loss; the rest is the teacher's [default: 0.5]."),
]
DistillTemperatureOption = Annotated[
    float | None, typer.Option(help="Softmax temperature of the soft targets [default: 2.0].")
]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML config file (sections data/model/training/run)."),
]


def train(
    lr: LrOption = None,
    epochs: EpochsOption = None,
    batch_size: BatchSizeOption = None,
    max_length: MaxLengthOption = None,
    truncation: TruncationOption = None,
    model: ModelOption = None,
    data: DataOption = None,
    output_dir: OutputDirOption = None,
    run_name: RunNameOption = None,
    seed: SeedOption = None,
    report_to: ReportToOption = None,
    precision: PrecisionOption = None,
    max_train_samples: MaxTrainSamplesOption = None,
    max_eval_samples: MaxEvalSamplesOption = None,
    extra_train: ExtraTrainOption = None,
    num_processes: NumProcessesOption = None,
    layers: LayersOption = None,
    distill_from: DistillFromOption = None,
    distill_alpha: DistillAlphaOption = None,
    distill_temperature: DistillTemperatureOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
    resume: ResumeOption = False,
    overwrite: OverwriteOption = False,
    keep_checkpoints: KeepCheckpointsOption = False,
    no_reference: NoReferenceOption = False,
    profile: ProfileOption = False,
    profile_steps: ProfileStepsOption = None,
) -> None:
    """Fine-tune a classifier with transformers.Trainer and write a self-describing run."""
    from imdb_sentiment.cli.profiling import check_steps
    from imdb_sentiment.runs import env_runs_dir

    # Flags are config overrides: None leaves what --set, the file, recipe or default say.
    overrides = {
        "training.learning_rate": lr,
        "training.epochs": epochs,
        "training.batch_size": batch_size,
        "model.max_length": max_length,
        "model.truncation": truncation,
        "model.name": model,
        "data.dir": data,
        "run.output_dir": output_dir or env_runs_dir(),
        "run.name": run_name,
        "training.seed": seed,
        "run.report_to": report_to,
        "training.precision": precision,
        "data.max_train_samples": max_train_samples,
        "data.max_eval_samples": max_eval_samples,
        "data.extra_train": extra_train,
        "training.num_processes": num_processes,
        **student_overrides(layers, distill_from, distill_alpha, distill_temperature),
        **switch_overrides(overwrite, keep_checkpoints),
    }
    profiled = check_steps(profile, profile_steps)
    if resume:
        config = resume_config(config, output_dir, run_name)
    cfg = resolve_config(config, overrides, set_)
    launch(cfg, resume, reference=not no_reference, profile_steps=profiled)


def switch_overrides(overwrite: bool, keep_checkpoints: bool) -> dict[str, Any]:
    """The on/off flags as config overrides: off (None) leaves the value of the layers below."""
    return {
        "run.overwrite": overwrite or None,
        "training.keep_checkpoints": keep_checkpoints or None,
    }


def student_overrides(
    layers: int | None, teacher: str | None, alpha: float | None, temperature: float | None
) -> dict[str, Any]:
    """The student flags (``--layers``, ``--distill-*``) as config overrides."""
    return {
        "model.layers": layers,
        "training.distill_from": teacher,
        "training.distill_alpha": alpha,
        "training.distill_temperature": temperature,
    }


def resolve_config(
    config: Path | None, overrides: dict[str, Any], sets: list[str] | None
) -> Config:
    """The run's config for this machine's device; a distilled student's as
    :func:`student_config` settles it."""
    from imdb_sentiment.config import resolve

    device = training_device()
    cfg = resolve(config, overrides, sets, device=device)
    if not cfg.training.distill_from:
        return cfg
    return student_config(
        cfg, lambda name: resolve(config, {**overrides, "model.name": name}, sets, device=device)
    )


def student_config(cfg: Config, resolve_with: Callable[[str], Config]) -> Config:
    """A distilled student's config: it starts from the teacher's model when no model was
    given (resolved again, so the teacher's recipe applies) and reads reviews as the teacher
    did where the user said nothing."""
    from imdb_sentiment.provenance import DEFAULT
    from imdb_sentiment.training.teacher import TEACHER, find_teacher, read_as_teacher

    teacher = find_teacher(str(cfg.training.distill_from))
    if cfg.sources.get("model.name") == DEFAULT:
        cfg = resolve_with(str(teacher.model_dir))
        cfg.sources["model.name"] = TEACHER
    read_as_teacher(cfg, teacher)
    return cfg


def launch(cfg: Config, resume: bool, *, reference: bool, profile_steps: int | None) -> None:
    """Train here, or relaunch under accelerate when several processes are wanted."""
    from imdb_sentiment.training import distributed

    if not distributed.already_distributed():
        n = distributed.wanted_processes(cfg.training.num_processes)
        if n > 1:
            raise typer.Exit(
                relaunch_with_config(
                    "train",
                    cfg,
                    n,
                    resume,
                    [
                        *([] if reference else ["--no-reference"]),
                        *(
                            ["--profile", "--profile-steps", str(profile_steps)]
                            if profile_steps
                            else []
                        ),
                    ],
                )
            )
    train_here(cfg, resume, reference=reference, profile_steps=profile_steps)


def training_device() -> str:
    """``gpu`` or ``cpu``: which device section of a recipe applies to this machine."""
    import torch

    mps: Any = getattr(torch.backends, "mps", None)
    gpu = torch.cuda.is_available() or bool(mps is not None and mps.is_available())
    return "gpu" if gpu else "cpu"


def resume_config(config: Path | None, output_dir: str | None, run_name: str | None) -> Path:
    """The config to resume with: ``--config`` when given, else the one the run saved (every
    key set, so no recipe or changed default moves a resumed run; its sources are kept)."""
    if run_name is None:
        raise RunError("--resume needs --run-name to say which run to continue")
    from imdb_sentiment.runs import resume_target, runs_root

    saved = resume_target(runs_root(output_dir) / run_name) / "config.yaml"
    if config is None:
        if not saved.is_file():
            raise RunError(f"nothing to resume: {saved.parent} holds no run")
        return saved
    return config


def relaunch_with_config(
    verb: str, cfg: Config, n: int, resume: bool, extra: Sequence[str] = ()
) -> int:
    """Re-run ``verb`` under accelerate with the resolved config, so every process agrees."""
    from imdb_sentiment.provenance import sources_path
    from imdb_sentiment.training import distributed

    cfg.training.num_processes = n
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        pass
    # Saved with its sources, so that every process records where each value came from.
    cfg.save(fh.name)
    try:
        work = {"train": "training", "adapt": "adaptation"}.get(verb, verb)
        render.say(f"launching {n} {work} processes with accelerate")
        # Without --run-name the main process picks a new, unique name and the others follow.
        args = [
            verb,
            "--config",
            fh.name,
            "--output-dir",
            cfg.run.output_dir,
            *(["--run-name", cfg.run.name] if cfg.run.name else []),
            *extra,
            *(["--resume"] if resume else []),
        ]
        return distributed.relaunch(n, args)
    finally:
        for path in (Path(fh.name), sources_path(fh.name)):
            path.unlink(missing_ok=True)


def train_here(
    cfg: Config, resume: bool, *, reference: bool = True, profile_steps: int | None = None
) -> None:
    """Train in this process; only the main process of a distributed run talks, and writes
    the drift reference (``reference``) once the model is saved. ``profile_steps``: profile
    that many optimizer steps of the main process."""
    from imdb_sentiment.training.distributed import is_main_process
    from imdb_sentiment.training.loop import train as run_training

    main = is_main_process()
    if main:
        render.say("resolved config:\n" + cfg.describe())
    log = render.say if main else (lambda _m: None)
    profiler, callbacks = None, []
    if profile_steps is not None:
        from imdb_sentiment.profiling import StepProfiler, trainer_callback

        profiler = StepProfiler(Path("profile"), active=profile_steps)
        callbacks.append(trainer_callback(profiler, log))
    result = run_training(cfg, resume=resume, log=log, callbacks=callbacks)
    if main and not result.already_finished:
        render.training(result)
        if profiler is not None:
            from imdb_sentiment.cli.profiling import show

            show(profiler, result.run_dir / "profile")
        if reference:
            from imdb_sentiment.cli.drift import reference_after_training

            reference_after_training(result.run_dir)
        from imdb_sentiment.runs import RUNS_DIR_ENV, runs_root

        root = result.run_dir.parent
        if root.resolve() != runs_root().resolve():
            render.say(
                f"eval, predict, serve and export read the latest run from {runs_root()}; "
                f"pass --runs-dir {root} or set {RUNS_DIR_ENV}={root} to use this one"
            )
