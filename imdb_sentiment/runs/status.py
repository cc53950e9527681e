"""``status.json``: what state a run is in, and whether a "running" run is really alive.

A running run records its process id, host and the process's start time, so a run whose
process died without a word (``kill -9``, a lost machine, a container stopped hard) can be told
apart from one still training: on the same host the process is gone, or the id now belongs to
another process that started later.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from imdb_sentiment.atomic import write_json

STATUS_FILE = "status.json"


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), which a reused pid does not share."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so count from its closing paren.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def this_process() -> dict[str, Any]:
    """The identity a running run records: pid, host and process start time."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process_started": _process_start(os.getpid()),
    }


def running_payload(**extra: Any) -> dict[str, Any]:
    return {
        "state": "running",
        "updated_at": datetime.now(timezone.utc).isoformat(),
        **this_process(),
        **extra,
    }


def write_status(run_dir: Path, state: str, **extra: Any) -> None:
    """Record the run's state (``running``, ``interrupted``, ``failed``, ``succeeded``).

    A running state also records this process (pid, host, start time)."""
    if state == "running":
        payload = running_payload(**extra)
    else:
        payload = {"state": state, "updated_at": datetime.now(timezone.utc).isoformat(), **extra}
    write_json(run_dir / STATUS_FILE, payload)


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The run's status, None when it has none; an unreadable file reads as state "unknown"."""
    path = run_dir / STATUS_FILE
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {"state": "unknown", "reason": f"{path} is unreadable"}
    return status if isinstance(status, dict) else {"state": "unknown"}


def process_alive(status: dict[str, Any]) -> bool | None:
    """Whether the process a running status names still runs: None when it cannot be told
    (another host, or no pid recorded)."""
    pid, host = status.get("pid"), status.get("host")
    if not isinstance(pid, int) or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    recorded = status.get("process_started")
    now = _process_start(pid)
    return not (recorded and now and recorded != now)


def effective_state(status: dict[str, Any] | None) -> str:
    """The state to report: a "running" run whose process is gone on this host is "dead"."""
    if status is None:
        return "none"
    state = str(status.get("state", "unknown"))
    if state == "running" and process_alive(status) is False:
        return "dead"
    return state


def describe(run_dir: Path, status: dict[str, Any] | None = None) -> str:
    """One phrase for messages: ``running (pid 12, host h)`` or ``dead (was pid 12 ...)``."""
    status = read_status(run_dir) if status is None else status
    state = effective_state(status)
    if status and state in ("running", "dead"):
        who = f"pid {status.get('pid')} on {status.get('host')}"
        return (
            f"running ({who})"
            if state == "running"
            else f"interrupted: its process ({who}) is gone"
        )
    return state
