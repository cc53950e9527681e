"""Model recipes: the training settings a model family gets for the flags a user leaves out.

Each ``*.yaml`` file in this folder is one recipe. Its ``match`` section says which models it is
for; its ``data``/``model``/``training``/``run`` sections hold config values (checked by
:mod:`imdb_sentiment.config` like any config file); an optional ``cpu:`` or ``gpu:`` section
holds values that replace those when training runs on that kind of device. A model is matched
by alias, by a part of its hub id or folder name, or by the ``config.json`` of a local folder
(its ``model_type`` and size), in that order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imdb_sentiment.errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parent
DEVICES = ("cpu", "gpu")
SETTING_SECTIONS = ("data", "model", "training", "run")
MATCH_KEYS = ("aliases", "name_contains", "config")


@dataclass
class Recipe:
    """One recipe file: which models it matches and the values it sets."""

    name: str
    path: Path
    settings: dict[str, Any] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    name_contains: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def matches_name(self, name: str) -> bool:
        low = name.lower()
        return low in self.aliases or any(part in low for part in self.name_contains)

    def matches_config(self, model_config: dict[str, Any]) -> bool:
        return bool(self.config) and all(model_config.get(k) == v for k, v in self.config.items())


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return [v.lower() for v in value]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping")
    return value


def _parse_match(recipe: Recipe, raw: Any) -> None:
    match = _mapping(raw, f"{recipe.path}: match")
    for key, value in match.items():
        where = f"{recipe.path}: match.{key}"
        if key == "config":
            recipe.config = _mapping(value, where)
        elif key in ("aliases", "name_contains"):
            setattr(recipe, key, _strings(value, where))
        else:
            raise ConfigError(
                f"{recipe.path}: unknown match key '{key}'; valid keys: {', '.join(MATCH_KEYS)}"
            )


def load_recipe(path: str | Path) -> Recipe:
    """Read one recipe file; a key it does not know is a :class:`ConfigError` naming the file."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{p}: not a readable YAML recipe ({first})") from None
    recipe = Recipe(name=p.stem, path=p)
    for key, value in _mapping(raw, f"{p}: the top level").items():
        if key == "match":
            _parse_match(recipe, value)
        elif key in SETTING_SECTIONS:
            recipe.settings[key] = value
        elif key in DEVICES:
            recipe.devices[key] = _mapping(value, f"{p}: {key}")
        else:
            raise ConfigError(
                f"{p}: unknown recipe section '{key}'; valid sections: "
                f"{', '.join(('match', *SETTING_SECTIONS, *DEVICES))}"
            )
    return recipe


def all_recipes(folder: str | Path = RECIPES_DIR) -> list[Recipe]:
    """Every recipe in ``folder``, by file name."""
    return [load_recipe(p) for p in sorted(Path(folder).glob("*.yaml"))]


def _model_config(name: str) -> dict[str, Any]:
    """A local model folder's ``config.json``, or nothing for hub ids and unreadable files."""
    path = Path(name).expanduser() / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return raw if isinstance(raw, dict) else {}


def select_recipe(model_name: str, folder: str | Path = RECIPES_DIR) -> Recipe | None:
    """The recipe for ``model_name`` (alias, hub id or local folder), or None when none fits.

    Names are tried before ``config.json`` so that a folder named after its family (or one whose
    config records the hub id it came from) wins over a recipe matching its shape alone.
    """
    recipes = all_recipes(folder)
    model_config = _model_config(model_name)
    names = [model_name, str(model_config.get("_name_or_path") or "")]
    for candidate in filter(None, names):
        for recipe in recipes:
            if recipe.matches_name(candidate):
                return recipe
    for recipe in recipes:
        if recipe.matches_config(model_config):
            return recipe
    return None
