"""Hyperparameter search with Optuna: each trial is one ordinary :func:`~.loop.train` run.

Trials call the library's own training (not ``Trainer.hyperparameter_search``), so each one is a
self-describing run under ``<output-dir>/<search>/trial-NNN`` with its calibration, metrics and
model, and its config comes from the normal precedence with the sampled values as flags. A
callback reports every validation accuracy to Optuna, which prunes trials that trail the median
of earlier ones at the same point of training. The study lives in ``<search>/study.db``
(SQLite): running the same command again resumes it, retrying a trial that was interrupted.
The best trial's settings are written to ``<search>/best.yaml`` for ``train --config``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imdb_sentiment.atomic import write_json, write_text
from imdb_sentiment.config import Config, parse_set, resolve
from imdb_sentiment.errors import ConfigError, RunError, TrainingFailedError
from imdb_sentiment.runs.status import process_alive, this_process, write_status
from imdb_sentiment.training import loop
from imdb_sentiment.training.signals import (
    SIGTERM_EXIT,
    TrainingInterrupted,
    exit_code_for,
    sigterm_interrupts,
)
from imdb_sentiment.training.study import (
    STUDY_FILE,
    SearchSettings,
    TrialRow,
    count_trials,
    import_optuna,
    open_study,
    pruning_callback,
    ranked,
    retry_interrupted,
)

Log = Callable[[str], None]

BEST_FILE = "best.yaml"
TRIALS_FILE = "trials.json"
LOCK_FILE = "search.lock"
_ENDED = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class ConfigSource:
    """Where every trial's config comes from: the same inputs ``train`` resolves."""

    config_file: str | Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    sets: list[str] = field(default_factory=list)
    device: str | None = None

    def resolve(self, sampled: dict[str, Any], run: dict[str, Any]) -> Config:
        """The config with the sampled values (and the trial's run folder) as explicit flags."""
        return resolve(
            self.config_file, {**self.overrides, **sampled, **run}, self.sets, device=self.device
        )

    def given(self) -> set[str]:
        """Keys the user fixed with a flag or ``--set``."""
        return {k for k, v in self.overrides.items() if v is not None} | set(parse_set(self.sets))


@dataclass
class SearchResult:
    search_dir: Path
    rows: list[TrialRow]
    """Best first: completed trials by accuracy, then pruned ones by their last accuracy."""
    best_config: Path | None
    ran: int
    """Trials this command ran."""


def search(source: ConfigSource, settings: SearchSettings, *, log: Log = print) -> SearchResult:
    """Run (or resume) the search ``settings.name`` until it holds ``settings.trials`` finished
    trials or ``settings.timeout`` runs out; rank the trials and write the best config."""
    optuna = import_optuna()
    base = source.resolve({}, {"run.name": settings.name})
    _check(source, settings, base)
    search_dir = Path(base.run.output_dir) / settings.name
    with _locked(search_dir), sigterm_interrupts():
        study, storage = open_study(optuna, search_dir, settings, base)
        retry_interrupted(optuna, study, storage, log)
        finished = count_trials(optuna, study, "COMPLETE", "PRUNED")
        todo = max(settings.trials - finished, 0)
        log(
            f"search {settings.name}: {finished} finished trial(s) in {search_dir / STUDY_FILE}, "
            f"running up to {todo} more"
            + (f" for at most {settings.timeout:g} s" if settings.timeout and todo else "")
        )
        for key, dim in settings.space.items():
            log(f"  {key}: {dim.describe()}")
        before = count_trials(optuna, study, *_ENDED)
        if todo:
            with _wandb_group(settings.name):
                study.optimize(
                    _objective(optuna, source, settings, search_dir, log),
                    n_trials=todo,
                    timeout=settings.timeout,
                    gc_after_trial=True,
                )
        rows = ranked(optuna, study)
        write_json(search_dir / TRIALS_FILE, [vars(r) for r in rows])
        best = _write_best(source, settings, search_dir, rows)
    return SearchResult(search_dir, rows, best, count_trials(optuna, study, *_ENDED) - before)


def _check(source: ConfigSource, settings: SearchSettings, base: Config) -> None:
    """Refuse what would fail mid-search: a searched key also fixed, a range the config
    rejects, or several processes per trial."""
    if settings.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {settings.trials}")
    if settings.timeout is not None and settings.timeout <= 0:
        raise ConfigError(f"--timeout must be positive, got {settings.timeout:g}")
    both = sorted(source.given() & set(settings.space))
    if both:
        raise ConfigError(
            f"{', '.join(both)} is both searched and fixed by a flag or --set; "
            "drop one (a --space file without the key fixes it)"
        )
    if (base.training.num_processes or 1) > 1:
        raise ConfigError("search trains each trial in one process; drop training.num_processes")
    for key, dim in settings.space.items():
        for value in dim.ends():
            try:
                source.resolve({key: value}, {"run.name": settings.name})
            except ConfigError as exc:
                raise ConfigError(f"search space: {exc}") from None


@contextmanager
def _locked(search_dir: Path) -> Iterator[None]:
    """One command at a time per search: a second would take the first's trial for dead."""
    lock = search_dir / LOCK_FILE
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        holder = None
    # Alive, or on another host where it cannot be told: only a lock known dead is taken over.
    if isinstance(holder, dict) and process_alive(holder) is not False:
        raise RunError(
            f"{search_dir} is being searched by pid {holder.get('pid')} on "
            f"{holder.get('host')}; wait for it, or delete {lock} if it no longer runs"
        )
    search_dir.mkdir(parents=True, exist_ok=True)
    write_json(lock, this_process())
    try:
        yield
    except KeyboardInterrupt as exc:
        raise _stopped(search_dir, exc) from None
    except TrainingInterrupted as exc:
        raise _stopped(search_dir, exc) from None
    finally:
        lock.unlink(missing_ok=True)


def _stopped(search_dir: Path, exc: BaseException) -> TrainingInterrupted:
    code = exc.exit_code if isinstance(exc, TrainingInterrupted) else exit_code_for(exc)
    how = "SIGTERM" if code == SIGTERM_EXIT else "Ctrl-C (SIGINT)"
    return TrainingInterrupted(
        f"search in {search_dir} stopped by {how}; run the same command "
        "to resume it (the interrupted trial is tried again)",
        code,
    )


@contextmanager
def _wandb_group(name: str) -> Iterator[None]:
    """Every trial's W&B run goes into one group named after the search."""
    saved = {k: os.environ.get(k) for k in ("WANDB_RUN_GROUP", "WANDB_JOB_TYPE")}
    os.environ.update({"WANDB_RUN_GROUP": name, "WANDB_JOB_TYPE": "search"})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _objective(
    optuna: Any, source: ConfigSource, settings: SearchSettings, search_dir: Path, log: Log
) -> Callable[[Any], float]:
    def objective(trial: Any) -> float:
        sampled = {key: dim.sample(trial) for key, dim in settings.space.items()}
        name = f"trial-{trial.number:03d}"
        run = {"run.output_dir": str(search_dir), "run.name": name}
        # Training drops a finished run's checkpoints unless told to keep them.
        cfg = source.resolve(sampled, {**run, "training.keep_checkpoints": _keep(settings)})
        run_dir = search_dir / name
        trial.set_user_attr("run_dir", str(run_dir))
        log(f"trial {trial.number}: " + ", ".join(f"{k}={v}" for k, v in sampled.items()))
        try:
            result = loop.train(cfg, log=log, callbacks=[pruning_callback(optuna, trial)])
        except TrainingFailedError:
            trial.set_user_attr("outcome", "at chance")
            _tidy(run_dir, settings)
            log(f"trial {trial.number}: validation accuracy at chance; counted as pruned")
            raise optuna.TrialPruned("validation accuracy at chance") from None
        except optuna.TrialPruned as exc:
            _pruned(run_dir, str(exc), settings)
            log(f"trial {trial.number}: {exc}")
            raise
        except (KeyboardInterrupt, TrainingInterrupted):
            trial.set_user_attr("interrupted", True)
            if run_dir.is_dir():
                write_status(
                    run_dir,
                    "interrupted",
                    reason="the search was stopped",
                    resume_with="the same search command, which tries these "
                    "settings again as a new trial",
                )
            raise
        finally:
            _end_wandb()
        m = result.metrics
        for key in ("f1", "roc_auc", "log_loss", "train_runtime_s", "epochs_completed"):
            if isinstance(m.get(key), (int, float)):
                trial.set_user_attr(key, m[key])
        _tidy(run_dir, settings)
        log(f"trial {trial.number}: validation accuracy {m['accuracy']:.4f}")
        return float(m["accuracy"])

    return objective


def _pruned(run_dir: Path, reason: str, settings: SearchSettings) -> None:
    """Record a pruned trial as such (training recorded the stop as a failure)."""
    if run_dir.is_dir():
        write_status(run_dir, "pruned", reason=reason)
    _tidy(run_dir, settings)


def _end_wandb() -> None:
    """Close the trial's W&B run (a pruned Trainer leaves it open) and forget wandb's
    settings: it keeps those of its first run, ``WANDB_DIR`` included, for the whole process,
    so every later trial would log into the first trial's folder."""
    from imdb_sentiment import tracking

    tracking.finish()
    wandb = sys.modules.get("wandb")
    if wandb is not None and hasattr(wandb, "teardown"):
        wandb.teardown()


def _keep(settings: SearchSettings) -> bool | None:
    """``--keep-checkpoints`` as a trial's flag; None leaves the config's value."""
    return True if settings.keep_checkpoints else None


def _tidy(run_dir: Path, settings: SearchSettings) -> None:
    """A finished trial is never resumed, so its checkpoints only take space (its model, if it
    earned one, is saved apart from them)."""
    if not settings.keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


def _write_best(
    source: ConfigSource, settings: SearchSettings, search_dir: Path, rows: list[TrialRow]
) -> Path | None:
    """The best completed trial's config (without its run folder and name) as YAML that
    ``train --config`` takes; None while no trial has completed."""
    best = next((r for r in rows if r.state == "complete"), None)
    if best is None:
        return None
    cfg = source.resolve(best.params, {"run.name": settings.name})
    values = {k: v for k, v in cfg.to_dict().items() if k != "run"}
    path = search_dir / BEST_FILE
    accuracy = f"{best.accuracy:.4f}" if best.accuracy is not None else "n/a"
    write_text(
        path,
        f"# Best trial of search {settings.name!r}: trial {best.number} "
        f"({best.run_dir}), validation accuracy {accuracy}.\n"
        f"# Train with it: imdb-sentiment train --config {path}\n"
        + yaml.safe_dump(values, sort_keys=False),
    )
    return path
