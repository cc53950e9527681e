"""Weights & Biases reporting: on when wandb is installed, offline when nobody is logged in.

Never prompts and never blocks: without credentials the run is written to disk in offline mode
and we say how to sync it.
"""

from __future__ import annotations

import importlib.util
import netrc
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from imdb_sentiment.errors import MissingExtraError


def wandb_installed() -> bool:
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


def configure_wandb(run_dir: Path, project: str, run_name: str,
                    log: Callable[[str], None]) -> None:
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
    if not wandb_installed():
        return None
    import wandb

    return wandb.run


def log_config(config: dict[str, Any]) -> None:
    run = active_run()
    if run is not None:
        run.config.update({"imdb_sentiment": config}, allow_val_change=True)


def log_final(metrics: dict[str, Any], labels: Any, predictions: Any,
              extra: dict[str, Any] | None = None) -> None:
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
        class_names=["negative", "positive"],
    )
    payload.update(extra or {})
    run.log(payload)


def finish() -> None:
    run = active_run()
    if run is not None:
        run.finish()
