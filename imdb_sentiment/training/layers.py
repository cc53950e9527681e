"""Students with fewer encoder layers: which layers to keep, and cutting a model down to them.

``train --layers N`` keeps N of the starting model's encoder layers, evenly spaced and always
including the first: layer ``i * L // N`` of ``L`` for ``i = 0 .. N-1`` (6 -> 3 keeps 0, 2, 4,
DistilBERT's initialisation; 6 -> 2 keeps 0, 3; 12 -> 6 keeps 0, 2, ..., 10). The layer list
is found by shape, not by architecture, and the model's config is updated so the saved model
reloads with N layers through ``from_pretrained``.
"""

from __future__ import annotations

from typing import Any

from imdb_sentiment.errors import ConfigError, ModelError

LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layers", "num_layers")
"""Config attributes that hold an encoder's layer count (BERT-like, DistilBERT, others)."""


def kept_layers(total: int, n: int) -> list[int]:
    """The ``n`` of ``total`` layers a student keeps: evenly spaced, starting at the first."""
    if not 1 <= n < total:
        raise ConfigError(
            f"--layers must be between 1 and {total - 1} (the model has {total} encoder "
            f"layers), got {n}"
        )
    return [i * total // n for i in range(n)]


def layer_count(model_config: Any) -> int | None:
    """The encoder's layer count from a transformers config; None when it names none."""
    for key in LAYER_COUNT_KEYS:
        value = getattr(model_config, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def check_layers(model_name: str, n: int) -> tuple[list[int], int]:
    """The layers ``model_name`` keeps for ``--layers n`` and its layer count; ConfigError
    (naming the count) when ``n`` is out of range, ModelError when the model cannot be read."""
    from transformers import AutoConfig

    from imdb_sentiment.data.files import one_line

    try:
        model_config = AutoConfig.from_pretrained(model_name)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"cannot read the configuration of {model_name}: {one_line(exc, 200)}"
        ) from None
    total = layer_count(model_config)
    if total is None:
        raise ModelError(f"{model_name}: its configuration names no encoder layer count")
    return kept_layers(total, n), total


def _layer_list(model: Any, total: int) -> tuple[Any, str, str]:
    """The ModuleList holding the encoder's ``total`` layers: its parent, attribute, path."""
    import torch

    for path, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == total:
            parent_path, _, attr = path.rpartition(".")
            parent = model.get_submodule(parent_path) if parent_path else model
            return parent, attr, path
    raise ModelError(f"no list of {total} encoder layers found in {type(model).__name__}")


def keep_layers(model: Any, n: int) -> list[int]:
    """Cut ``model`` down to :func:`kept_layers` of its encoder in place; return their indices."""
    import torch

    total = layer_count(model.config)
    if total is None:
        raise ModelError(f"{type(model).__name__}: its configuration names no layer count")
    keep = kept_layers(total, n)
    parent, attr, _ = _layer_list(model, total)
    layers = getattr(parent, attr)
    setattr(parent, attr, torch.nn.ModuleList([layers[i] for i in keep]))
    for new_index, layer in enumerate(getattr(parent, attr)):
        for module in layer.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index  # caches and masks index layers by position
    for key in LAYER_COUNT_KEYS:
        if isinstance(getattr(model.config, key, None), int):
            setattr(model.config, key, n)
    return keep
