"""The Optuna study behind a search: opening or resuming it, retrying the trials an earlier
command left unfinished, pruning trials as they train, and ranking them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imdb_sentiment.config import Config
from imdb_sentiment.errors import MissingExtraError, RunError
from imdb_sentiment.training.search_space import Space, default_space, space_to_dict

Log = Callable[[str], None]

STUDY_FILE = "study.db"


def import_optuna() -> Any:
    """The ``optuna`` module, or a one-line error saying which extra installs it."""
    try:
        import optuna
    except ImportError:
        raise MissingExtraError("optuna", "search") from None
    return optuna


@dataclass
class SearchSettings:
    """What to search and for how long."""

    name: str = "search"
    trials: int = 20
    """Finished trials (complete or pruned) the study should hold, counting earlier sessions."""
    timeout: float | None = None
    """Seconds this command may start new trials for."""
    space: Space = field(default_factory=default_space)
    prune: bool = True
    keep_checkpoints: bool = False


@dataclass
class TrialRow:
    """One trial as the ranked table shows it."""

    number: int
    state: str  # complete, pruned, at chance, failed, interrupted, running, waiting
    accuracy: float | None
    params: dict[str, Any]
    run_dir: str | None
    seconds: float | None


def open_study(
    optuna: Any, search_dir: Path, settings: SearchSettings, base: Config
) -> tuple[Any, Any]:
    """Create the study, or load it and check it searches the same space from the same base;
    return it with its storage."""
    path = search_dir / STUDY_FILE
    if not path.exists() and any(search_dir.glob("trial-*")):
        raise RunError(f"{search_dir} holds trial runs but no {STUDY_FILE}; choose another --name")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2)
        if settings.prune
        else optuna.pruners.NopPruner()
    )
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(
        study_name=settings.name,
        storage=storage,
        load_if_exists=True,
        direction="maximize",
        pruner=pruner,
    )
    # A fixed seed would make a resumed search draw again what its first command drew; the
    # trials so far move it on, so each command gets new draws and a rerun the same ones.
    study.sampler = optuna.samplers.TPESampler(
        seed=(base.training.seed + len(study.trials)) % 2**32
    )
    identity = json.loads(
        json.dumps(
            {  # as the study stores it
                "space": space_to_dict(settings.space),
                "base": {k: v for k, v in base.to_dict().items() if k != "run"},
            }
        )
    )
    saved = study.user_attrs.get("search")
    if saved is None:
        study.set_user_attr("search", identity)
    elif saved != identity:
        differs = [k for k in ("space", "base") if saved.get(k) != identity[k]]
        what = (
            "a different search space"
            if "space" in differs
            else "different settings (model, data or training)"
        )
        raise RunError(
            f"{path} was started with {what}; run it with the same flags to "
            "resume, or choose another --name"
        )
    return study, storage


def count_trials(optuna: Any, study: Any, *states: str) -> int:
    wanted = tuple(getattr(optuna.trial.TrialState, s) for s in states)
    return len(study.get_trials(deepcopy=False, states=wanted))


def retry_interrupted(optuna: Any, study: Any, storage: Any, log: Log) -> None:
    """Trials an earlier command left unfinished are marked failed and queued again, once."""
    state = optuna.trial.TrialState
    for trial in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        # Only one command searches at a time (the lock), so a running trial here was killed.
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        storage.set_trial_state_values(trial._trial_id, state.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if (
            trial.state == state.FAIL
            and trial.user_attrs.get("interrupted")
            and trial.number not in retried
            and trial.params
        ):
            log(f"trial {trial.number} was interrupted; it will be tried again")
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def pruning_callback(optuna: Any, trial: Any) -> Any:
    """A ``TrainerCallback`` that reports each validation accuracy to ``trial`` and stops the
    run when the pruner says so. Steps are hundredths of an epoch, so trials with different
    batch sizes line up at the same share of the data."""
    from transformers import TrainerCallback

    class _Report(TrainerCallback):
        def on_evaluate(
            self,
            args: Any,
            state: Any,
            control: Any,
            metrics: dict[str, float] | None = None,
            **kwargs: Any,
        ) -> None:
            accuracy = (metrics or {}).get("eval_accuracy")
            if accuracy is None or not state.is_world_process_zero:
                return
            trial.report(float(accuracy), round((state.epoch or 0) * 100))
            trial.set_user_attr("last_epoch", state.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"pruned at epoch {state.epoch:g} with validation accuracy {accuracy:.4f}"
                )

    return _Report()


def _row(optuna: Any, trial: Any) -> TrialRow:
    state = optuna.trial.TrialState
    label = trial.state.name.lower()
    accuracy = trial.value
    if trial.state == state.PRUNED:
        label = trial.user_attrs.get("outcome", "pruned")
        accuracy = (
            trial.intermediate_values.get(trial.last_step) if trial.last_step is not None else None
        )
    elif trial.state == state.FAIL and trial.user_attrs.get("interrupted"):
        label = "interrupted"
    seconds = trial.duration.total_seconds() if trial.duration is not None else None
    return TrialRow(
        trial.number, label, accuracy, dict(trial.params), trial.user_attrs.get("run_dir"), seconds
    )


def ranked(optuna: Any, study: Any) -> list[TrialRow]:
    """Every trial, best first: completed ones by accuracy, then pruned, then the rest."""
    order = {"complete": 0, "pruned": 1, "at chance": 2}
    rows = [_row(optuna, t) for t in study.get_trials(deepcopy=False)]
    return sorted(
        rows,
        key=lambda r: (
            order.get(r.state, 3),
            -(r.accuracy if r.accuracy is not None else -1.0),
            r.number,
        ),
    )
