"""A training run's life in its directory: claimed, started, stopped, or found finished.

The main process decides (:func:`claim`); the others follow its decision. Every stop is
recorded in ``status.json`` with a way to go on that works: a resume command only when a
complete checkpoint exists, else the command that starts the run again. A run that succeeded
drops its checkpoints (:func:`succeeded`) unless ``training.keep_checkpoints``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imdb_sentiment.atomic import write_json
from imdb_sentiment.config import Config
from imdb_sentiment.data.storage import check_free_space, check_writable
from imdb_sentiment.errors import RunError
from imdb_sentiment.model_card import read_json_object
from imdb_sentiment.runs import (
    Claim,
    claim_new_run,
    claim_run_dir,
    describe,
    latest_checkpoint,
    mark_latest,
    write_status,
)
from imdb_sentiment.training.distributed import is_main_process
from imdb_sentiment.training.signals import TrainingInterrupted, exit_code_for, signal_name

Log = Callable[[str], None]

OPTIMIZER_FACTOR = 3
"""A checkpoint holds the weights and Adam's two moments of each: about three times the
weights (the scheduler, RNG and trainer state are small)."""

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def pretrained_weights_bytes(model_name: str) -> int:
    """Size of the pretrained model's weights on disk (a local folder or the hub cache); 0 when
    they cannot be found without a download."""
    folder = Path(model_name)
    if folder.is_dir():
        for pattern in ("*.safetensors", "*.bin"):
            files = [p for p in folder.glob(pattern) if "training_args" not in p.name]
            if files:
                return sum(p.stat().st_size for p in files)
        return 0
    try:
        from huggingface_hub import try_to_load_from_cache

        for name in _WEIGHT_FILES:
            cached = try_to_load_from_cache(model_name, name)
            if isinstance(cached, str):
                return Path(cached).stat().st_size
    except (ImportError, OSError, ValueError):
        pass
    return 0


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def check_room(cfg: Config, model_name: str, *, already: int = 0) -> None:
    """Refuse, before anything is tokenized or trained, a runs folder that cannot be written or
    whose disk cannot hold the run: the final model plus the checkpoints on disk at once
    (``save_total_limit`` of them, and one more while a new one is written before the oldest
    goes), each about :data:`OPTIMIZER_FACTOR` times the weights. ``already``: bytes of the
    checkpoints a resumed run has on disk, which count among those kept."""
    root = Path(cfg.run.output_dir)
    check_writable(root, hint="choose another --output-dir")
    weights = pretrained_weights_bytes(model_name)
    if not weights:
        return  # size unknown: a disk that fills is still one line (exit 8) when it happens
    kept = cfg.training.save_total_limit + 1
    needed = max(
        weights * (1 + kept * OPTIMIZER_FACTOR) - already, weights * (1 + OPTIMIZER_FACTOR)
    )
    check_free_space(root, needed, f"the model and {kept} checkpoints of this training")


def claim(cfg: Config, model_name: str, *, resume: bool) -> Claim:
    """The main process's decision: which folder this training writes (and resumes from).

    The disk is checked (:func:`check_room`) before a new run's folder is created, so a disk
    too small leaves nothing behind; a resumed run is checked once it is known to need more
    training (a finished one changes nothing and needs no room).
    """
    root = Path(cfg.run.output_dir)
    if resume:
        if cfg.run.name is None:
            raise RunError("--resume needs --run-name to say which run to continue")
        claimed = claim_run_dir(
            root / cfg.run.name,
            overwrite=cfg.run.overwrite,
            resume=True,
            epochs=cfg.training.epochs,
        )
        if not claimed.finished:
            check_room(cfg, model_name, already=_bytes_under(claimed.work_dir / "checkpoints"))
        return claimed
    check_room(cfg, model_name)
    if cfg.run.name is None:
        return claim_new_run(root, model_name)
    return claim_run_dir(
        root / cfg.run.name, overwrite=cfg.run.overwrite, resume=False, epochs=cfg.training.epochs
    )


def start(claimed: Claim, cfg: Config, log: Log, *, resume: bool) -> None:
    """Save the config and record that the run started (resumed: from what, skipping what)."""
    if resume:
        if claimed.previous is not None:
            log(
                f"{claimed.run_dir}: its last training was "
                f"{describe(claimed.work_dir, claimed.previous)}"
            )
        for ckpt, why in claimed.skipped:
            log(f"skipping {ckpt.name}: {why} (set aside as incomplete-{ckpt.name})")
    if claimed.replacing:
        log(
            f"training in {claimed.work_dir}; it replaces {claimed.run_dir} only once it has "
            "succeeded"
        )
    cfg.save(claimed.work_dir / "config.yaml")
    write_status(
        claimed.work_dir,
        "running",
        started_at=time.time(),
        resumed_from=claimed.checkpoint.name if claimed.checkpoint else None,
    )


def succeeded(run_dir: Path, cfg: Config, log: Log) -> None:
    """Record the run (in place, its model and metrics saved) as succeeded, mark it latest and
    drop its checkpoints unless ``training.keep_checkpoints``: ``--resume`` of a finished run
    changes nothing, so they would only hold several times the model's size on disk."""
    write_status(run_dir, "succeeded")
    mark_latest(run_dir)
    if not cfg.training.keep_checkpoints:
        drop_checkpoints(run_dir, log)


def drop_checkpoints(run_dir: Path, log: Log) -> None:
    """Remove ``run_dir/checkpoints``; a failure is one warning, never an error: the run and
    its model are complete without them."""
    folder = run_dir / "checkpoints"
    if not folder.exists():
        return
    try:
        shutil.rmtree(folder)
    except OSError as exc:
        log(
            f"warning: could not remove {folder} ({exc.strerror or exc}); the run is complete "
            "without it, delete it to free the space"
        )
        return
    _forget_best_checkpoint(run_dir, log)


def _forget_best_checkpoint(run_dir: Path, log: Log) -> None:
    """``metrics.json`` names no removed checkpoint: ``best_checkpoint`` becomes null
    (``best_step`` still says which step was best)."""
    path = run_dir / "metrics.json"
    payload = read_json_object(path)
    metrics = payload.get("metrics")
    if not isinstance(metrics, dict) or not metrics.get("best_checkpoint"):
        return
    metrics["best_checkpoint"] = None
    try:
        write_json(path, payload)
    except OSError as exc:
        log(
            f"warning: could not update {path} ({exc.strerror or exc}); its best_checkpoint "
            "names a removed checkpoint"
        )


def saved_results(claimed: Claim, log: Log) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``--resume`` of a run that succeeded: say so, and return its saved metrics and
    processes."""

    def read(name: str) -> Any:
        try:
            return json.loads((claimed.work_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    longer = (
        "To train it longer, resume with a larger --epochs than it was trained for."
        if latest_checkpoint(claimed.work_dir) is not None
        else "Its checkpoints were removed when it finished (train with --keep-checkpoints "
        "to keep them)."
    )
    log(
        f"{claimed.run_dir} already finished (succeeded); nothing to resume and nothing was "
        f"changed. {longer}"
    )
    metrics = (read("metrics.json") or {}).get("metrics") or {}
    return metrics, read("processes.json") or []


def how_to_go_on(claimed: Claim, cfg: Config) -> dict[str, str]:
    """How to continue a stopped run: resume when a complete checkpoint exists, else restart."""
    if latest_checkpoint(claimed.work_dir) is not None:
        return {
            "resume_with": f"imdb-sentiment train --resume --run-name "
            f"{claimed.run_dir.name} --output-dir {cfg.run.output_dir}"
        }
    return {
        "restart_with": f"imdb-sentiment train --config {claimed.work_dir / 'config.yaml'}"
        " --overwrite"
    }


def record_stop(claimed: Claim, cfg: Config, exc: BaseException) -> TrainingInterrupted | None:
    """Record in ``status.json`` why the run stopped and how to go on. An interruption (SIGTERM,
    Ctrl-C) becomes a one-line error to raise; for anything else (None) the caller re-raises
    what it caught."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    if not is_main_process():
        return (
            TrainingInterrupted(f"training stopped by {signal_name(exc)}", exit_code_for(exc))
            if interrupted
            else None
        )
    hint = how_to_go_on(claimed, cfg)
    reason = (
        f"stopped by {signal_name(exc)}"
        if interrupted
        else (str(exc).splitlines() or [type(exc).__name__])[0]
    )
    # On a full or vanished disk the error that stopped the run is the one to report.
    with contextlib.suppress(OSError):
        write_status(
            claimed.work_dir, "interrupted" if interrupted else "failed", reason=reason, **hint
        )
    if not interrupted:
        return None
    how = (
        f"resume with: {hint['resume_with']}"
        if "resume_with" in hint
        else f"no complete checkpoint was saved; start again with: {hint['restart_with']}"
    )
    return TrainingInterrupted(f"training stopped by {signal_name(exc)}; {how}", exit_code_for(exc))
