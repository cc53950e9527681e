"""The teacher of ``train --distill-from RUN``: finding it, reading as it read, its logits.

The teacher's logits over the training rows are computed once, before fitting, in eval mode,
on length-sorted batches (bf16 where the GPU or CPU computes it natively, else fp32), and kept
in ``<run>/teacher_logits.npz`` under a key: the teacher's weights, the exact token ids of the
rows (which covers the reviews, the extra rows, max length and truncation) and the precision.
``--resume`` reads them back; with several processes the main process computes them first and
the others read its file.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment.atomic import write_bytes
from imdb_sentiment.config import Config
from imdb_sentiment.data.files import file_sha256
from imdb_sentiment.errors import ConfigError, ModelError, RunError
from imdb_sentiment.modeling.loading import (
    WEIGHT_FILES,
    InferenceSettings,
    find_model_dir,
    is_masked_lm,
    load_tokenizer,
    resolve_model_name,
)
from imdb_sentiment.provenance import DEFAULT

if TYPE_CHECKING:
    from imdb_sentiment.training.dataset import EncodedReviews

TEACHER = "teacher"
"""The source a value taken from the teacher's saved settings is recorded with."""
TEACHER_LOGITS = "teacher_logits.npz"
CACHE_FORMAT = 1
Log = Any


@dataclass
class Teacher:
    """A fine-tuned run that a student learns from."""

    run: Path
    model_dir: Path
    settings: InferenceSettings


def find_teacher(run: str | Path) -> Teacher:
    """The teacher run's model and reading settings; RunError for a missing run, ModelError
    for one without a readable classifier."""
    path = Path(run).expanduser()
    if not path.exists():
        raise RunError(f"--distill-from: no such teacher run: {path}")
    model_dir = find_model_dir(path)
    if is_masked_lm(model_dir):
        raise ModelError(f"--distill-from: {model_dir} is a masked-LM encoder, not a classifier")
    return Teacher(path, model_dir, InferenceSettings.load(model_dir))


def _defaulted(cfg: Config, key: str) -> bool:
    source = cfg.sources.get(key, DEFAULT)
    return source == DEFAULT or source.startswith("recipe:")


def read_as_teacher(cfg: Config, teacher: Teacher) -> None:
    """Take max length, truncation and head tokens from the teacher's saved settings where the
    user gave none, so the student reads what the teacher read (recorded as ``teacher``)."""
    s, m = teacher.settings, cfg.model
    length_taken = _defaulted(cfg, "model.max_length")
    if length_taken:
        m.max_length, cfg.sources["model.max_length"] = s.max_length, TEACHER
    if _defaulted(cfg, "model.truncation"):
        m.truncation, cfg.sources["model.truncation"] = s.truncation, TEACHER
    if length_taken and _defaulted(cfg, "model.head_tokens"):
        m.head_tokens = None if s.head_tokens == m.max_length // 4 else s.head_tokens
        cfg.sources["model.head_tokens"] = TEACHER


def check_tokenizer(teacher: Teacher, tokenizer: Any, model_name: str) -> None:
    """ConfigError unless the student's tokenizer gives the teacher's ids (the teacher's
    logits are computed on the student's token ids)."""
    from imdb_sentiment.training.dataset import tokenizer_identity

    if Path(resolve_model_name(model_name)).resolve() == teacher.model_dir.resolve():
        return
    same = ("sha256", "special")
    mine, theirs = (
        tokenizer_identity(tokenizer),
        tokenizer_identity(load_tokenizer(str(teacher.model_dir))),
    )
    if any(mine[k] != theirs[k] for k in same):
        raise ConfigError(
            f"--model {model_name} tokenizes differently from the teacher "
            f"{teacher.model_dir}; a student needs the teacher's tokenizer (leave out --model "
            "to start from the teacher)"
        )


def _precision() -> str:
    import torch

    from imdb_sentiment.hardware import cpu_has_native_bf16

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def cache_key(teacher: Teacher, reviews: EncodedReviews, precision: str) -> dict[str, Any]:
    """What the cached logits depend on: teacher weights, the rows' exact ids, precision."""
    ids = hashlib.sha256(reviews.flat.tobytes())
    ids.update(reviews.offsets.tobytes())
    weights = [teacher.model_dir / n for n in WEIGHT_FILES if (teacher.model_dir / n).is_file()]
    return {
        "format": CACHE_FORMAT,
        "teacher": [file_sha256(path) for path in weights],
        "rows": len(reviews),
        "ids_sha256": ids.hexdigest(),
        "precision": precision,
    }


def _read(path: Path, key: str, rows: int) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                return None
            logits = np.asarray(stored["logits"])
    except Exception:  # absent, truncated or foreign: computed again, never trusted
        return None
    return logits if logits.shape == (rows, 2) and np.isfinite(logits).all() else None


def compute_logits(
    model_dir: Path, reviews: EncodedReviews, precision: str, batch_size: int
) -> np.ndarray:
    """The teacher's raw logits for every row, in eval mode, longest rows first."""
    import torch

    from imdb_sentiment.modeling.loading import load_trained

    loaded: Any = load_trained(model_dir)
    model, tokenizer = loaded[0], loaded[1]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    pad = tokenizer.pad_token_id or 0
    order = np.argsort(-np.diff(reviews.offsets), kind="stable")
    out = np.zeros((len(reviews), 2), dtype=np.float32)
    with (
        torch.inference_mode(),
        torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"),
    ):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids = [reviews.ids(int(i)) for i in rows]
            width = max(len(x) for x in ids)
            batch = torch.full((len(ids), width), pad, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for j, x in enumerate(ids):
                batch[j, : len(x)], mask[j, : len(x)] = torch.tensor(x), 1
            logits = model(input_ids=batch.to(device), attention_mask=mask.to(device)).logits
            out[rows] = logits.float().cpu().numpy()
    return out


def teacher_logits(
    teacher: Teacher, reviews: EncodedReviews, work_dir: Path, batch_size: int, log: Log
) -> np.ndarray:
    """The teacher's logits for ``reviews``: from the run's cache when its key matches, else
    computed and stored there (the main process first when there are several)."""
    from imdb_sentiment.training.distributed import world_size

    if world_size() == 1:
        return _cached_or_computed(teacher, reviews, work_dir, batch_size, log)
    from accelerate import PartialState

    with PartialState().main_process_first():
        return _cached_or_computed(teacher, reviews, work_dir, batch_size, log)


def _cached_or_computed(
    teacher: Teacher, reviews: EncodedReviews, work_dir: Path, batch_size: int, log: Log
) -> np.ndarray:
    precision = _precision()
    key = json.dumps(cache_key(teacher, reviews, precision), sort_keys=True)
    path = work_dir / TEACHER_LOGITS
    cached = _read(path, key, len(reviews))
    if cached is not None:
        log(f"teacher logits: read {len(reviews):,} rows from {path}")
        return cached
    log(f"teacher logits: computing {len(reviews):,} rows with {teacher.model_dir} ({precision})")
    logits = compute_logits(teacher.model_dir, reviews, precision, batch_size)
    stored = io.BytesIO()
    np.savez(stored, key=np.array(key), logits=logits)
    # An unwritable run folder only costs a recomputation on --resume.
    with contextlib.suppress(OSError):
        write_bytes(path, stored.getvalue())
    return logits
