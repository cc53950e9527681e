"""Writes that never leave a half-written file: write beside the target, then rename over it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one rename; readers see the old or the new
    file, whole."""
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename; readers see the old or the new file, whole.

    The temporary file gets a unique name (``mkstemp``), so concurrent writers, threads or
    processes on other hosts sharing the folder, never write into each other's file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp creates 0600; the result should be readable as any other file the user writes.
        tmp.chmod(0o666 & ~current_umask())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # set and put back: the only portable way to read it
    os.umask(mask)
    return mask


def write_json(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON (non-JSON values as strings), atomically."""
    write_text(path, json.dumps(payload, indent=2, default=str) + "\n")
