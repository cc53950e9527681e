"""Where each config value came from: the labels, the annotated YAML and the saved record.

A run saves ``config.yaml`` (values, each with its source as a trailing comment, loadable by
``train --config``) and ``config_sources.yaml`` beside it (the sources as data, with the hash of
the ``config.yaml`` they describe, so that a hand-edited file is never credited to a recipe).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from imdb_sentiment.atomic import write_text

# Lowest precedence first; a recipe's label is recipe:<name>, its device section's
# recipe:<name>/<device>.
DEFAULT, CONFIG_FILE, SET, FLAG = "default", "config file", "--set", "flag"
PRECEDENCE = f"{DEFAULT} < recipe:<name>[/cpu|/gpu] < {CONFIG_FILE} < {SET} < {FLAG}"


def annotated_yaml(
    values: dict[str, dict[str, Any]], sources: dict[str, str], recipe: str | None
) -> str:
    """``{section: {name: value}}`` as YAML with each value's source as a trailing comment."""
    lines = [f"# recipe: {recipe or 'none'}; sources: {PRECEDENCE}"]
    for section, items in values.items():
        lines.append(f"{section}:")
        for name, value in items.items():
            item = yaml.safe_dump({name: value}, width=float("inf")).strip()
            source = sources.get(f"{section}.{name}")
            lines.append(f"  {item:<38} # {source}" if source else f"  {item}")
    return "\n".join(lines) + "\n"


def sources_path(config_path: str | Path) -> Path:
    """Where the sources of ``config_path`` are recorded: ``config_sources.yaml`` beside
    ``config.yaml``."""
    p = Path(config_path)
    return p.with_name(f"{p.stem}_sources.yaml")


def write_sources(config_path: str | Path, sources: dict[str, str], recipe: str | None) -> None:
    """Record ``sources`` for the config file just written at ``config_path``."""
    p = Path(config_path)
    record = {
        "config_sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
        "recipe": recipe,
        "sources": sources,
    }
    write_text(
        sources_path(p),
        f"# Where each value of {p.name} came from: {PRECEDENCE}.\n"
        + yaml.safe_dump(record, sort_keys=False),
    )


def saved_record(config_path: str | Path) -> dict[str, Any]:
    """What :func:`write_sources` recorded for ``config_path`` (``sources`` and ``recipe``), or
    nothing when there is no record or the file was edited since it was saved."""
    p, record = Path(config_path), sources_path(config_path)
    try:
        raw = yaml.safe_load(record.read_text(encoding="utf-8")) if record.is_file() else None
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    if not isinstance(raw, dict) or raw.get("config_sha256") != digest:
        return {}  # edited since it was saved: its values are the file's own
    sources = raw.get("sources")
    sources = sources if isinstance(sources, dict) else {}
    return {"sources": {str(k): str(v) for k, v in sources.items()}, "recipe": raw.get("recipe")}


def saved_sources(config_path: str | Path) -> dict[str, str]:
    """The sources recorded when ``config_path`` was saved, if the file is unchanged since."""
    return dict(saved_record(config_path).get("sources", {}))
