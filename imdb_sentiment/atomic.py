"""Writes that never leave a half-written file: write beside the target, then rename over it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename; readers see the old or the new file, whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON (non-JSON values as strings), atomically."""
    write_text(path, json.dumps(payload, indent=2, default=str) + "\n")
