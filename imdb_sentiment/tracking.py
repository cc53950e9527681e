"""Weights & Biases reporting: on when wandb is installed, offline when nobody is logged in.

Never prompts and never blocks: without credentials the run is written to disk in offline mode
and we say how to sync it. Training logs through the Trainer's callback and :func:`log_final`;
``eval`` opens its own run with :func:`wandb_eval_run` and logs the report with
:func:`log_eval_report`.
"""

from __future__ import annotations

import importlib.util
import netrc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from imdb_sentiment.config import RunConfig
from imdb_sentiment.errors import MissingExtraError
from imdb_sentiment.text import LABELS

if TYPE_CHECKING:
    import pandas as pd

EVAL_PREFIX = "eval"


def wandb_installed() -> bool:
    """True when the ``wandb`` extra is installed (nothing is imported)."""
    return importlib.util.find_spec("wandb") is not None


def resolve_report_to(report_to: str) -> str:
    """``auto`` -> ``wandb`` when installed, else ``none``; ``wandb`` without it is an error."""
    if report_to == "auto":
        return "wandb" if wandb_installed() else "none"
    if report_to == "wandb" and not wandb_installed():
        raise MissingExtraError("wandb", "wandb")
    return report_to


def has_wandb_credentials() -> bool:
    """True when an API key is in the environment or in ~/.netrc for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or ""
    try:
        auth = netrc.netrc(os.environ.get("NETRC")).authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(auth and auth[2])


def configure_wandb(run_dir: Path, project: str, run_name: str, log: Callable[[str], None]) -> None:
    """Set the environment the Trainer's W&B callback reads, choosing offline mode if needed."""
    os.environ.setdefault("WANDB_PROJECT", project)
    os.environ.setdefault("WANDB_NAME", run_name)
    os.environ["WANDB_DIR"] = str(run_dir)
    # Checkpoints can be large; uploading them is opt-in.
    os.environ.setdefault("WANDB_LOG_MODEL", "false")
    os.environ.setdefault("WANDB_SILENT", "true")
    mode = os.environ.get("WANDB_MODE")
    if mode is None and not has_wandb_credentials():
        os.environ["WANDB_MODE"] = "offline"
        log(
            "W&B: no login found, logging offline to "
            f"{run_dir}/wandb; upload later with `wandb sync {run_dir}/wandb/offline-run-*` "
            "(or `wandb login` first; --report-to none turns W&B off)"
        )


def active_run() -> Any | None:
    """The current W&B run, or None when there is none or wandb is not installed."""
    if not wandb_installed():
        return None
    import wandb

    return wandb.run


def log_config(config: dict[str, Any]) -> None:
    """Record the resolved config on the active run, if any."""
    run = active_run()
    if run is not None:
        run.config.update({"imdb_sentiment": config}, allow_val_change=True)


def log_final(
    metrics: dict[str, Any], labels: Any, predictions: Any, extra: dict[str, Any] | None = None
) -> None:
    """Final metrics into the run summary, plus a confusion matrix chart."""
    run = active_run()
    if run is None:
        return
    import wandb

    scalars = {f"final/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
    for key, value in scalars.items():
        run.summary[key] = value
    payload: dict[str, Any] = dict(scalars)
    payload["final/confusion_matrix"] = wandb.plot.confusion_matrix(
        y_true=[int(x) for x in labels],
        preds=[int(x) for x in predictions],
        class_names=list(LABELS),
    )
    payload.update(extra or {})
    run.log(payload)


def finish() -> None:
    """Close the active run, if any (offline runs are then complete on disk)."""
    run = active_run()
    if run is not None:
        run.finish()


@contextmanager
def wandb_eval_run(
    out_dir: Path, title: str, report_to: str, log: Callable[[str], None]
) -> Iterator[None]:
    """Start a W&B run (``job_type="eval"``) around the report when asked to report.

    ``report_to`` is ``none`` (nothing), ``wandb`` or ``auto`` (W&B when installed). An already
    active run is reused. Without a login the run is written offline, as training does.
    """
    mode = "none" if report_to == "none" else resolve_report_to(report_to)
    if mode != "wandb" or active_run() is not None:
        yield
        return
    import wandb

    project = os.environ.get("WANDB_PROJECT", RunConfig().wandb_project)
    configure_wandb(out_dir, project, title, log)
    run = wandb.init(project=project, name=title, job_type="eval", dir=str(out_dir))
    try:
        yield
    finally:
        run.finish()


def _eval_scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """Interval bounds and the calibration record as ``eval/...`` keys."""
    payload: dict[str, Any] = {}
    for name, iv in metrics["intervals"].items():
        if not name.startswith("_"):
            payload.update(
                {
                    f"{EVAL_PREFIX}/{name}": iv["value"],
                    f"{EVAL_PREFIX}/{name}_low": iv["low"],
                    f"{EVAL_PREFIX}/{name}_high": iv["high"],
                }
            )
    for key, value in metrics["calibration"].items():
        payload[f"{EVAL_PREFIX}/calibration/{key}"] = value
    return payload


def log_eval_report(
    title: str, metrics: dict[str, Any], errors: pd.DataFrame, plots: list[Path]
) -> bool:
    """Log intervals, slices, the error table and the plots to the active W&B run, if any.

    ``metrics`` holds the report's ``intervals``, ``calibration`` and ``slices``. Returns whether
    a run was there to log to.
    """
    run = active_run()
    if run is None:
        return False
    import wandb

    payload = _eval_scalars(metrics)
    slices: list[Any] = [
        [kind, r["slice"], r["n"], r["accuracy"], r["accuracy_low"], r["accuracy_high"]]
        for kind, rows in metrics["slices"].items()
        for r in rows
    ]
    payload[f"{EVAL_PREFIX}/slices"] = wandb.Table(
        columns=["kind", "slice", "n", "accuracy", "low", "high"], data=slices
    )
    payload[f"{EVAL_PREFIX}/misclassified"] = wandb.Table(dataframe=errors)
    for p in plots:
        payload[f"{EVAL_PREFIX}/plots/{p.stem}"] = wandb.Image(str(p), caption=title)
    run.log(payload)
    for key, value in payload.items():
        if isinstance(value, float):
            run.summary[key] = value
    return True
