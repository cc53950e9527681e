"""The single inference path: texts in, calibrated probabilities out.

The CLI, the server and export parity checks all go through :class:`Predictor`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment.errors import ConfigError, DataError
from imdb_sentiment.inference.backends import BF16_PRECISIONS, Runtime, TorchModel, load_backend
from imdb_sentiment.metrics.classification import softmax
from imdb_sentiment.modeling.tokenization import (
    Encoded,
    Windows,
    check_mode,
    chunk_windows,
    chunked_probabilities,
    encode,
)
from imdb_sentiment.text import clean_text, label_name, predicted_labels

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from imdb_sentiment.modeling.loading import InferenceSettings

BF16_BATCH_TOKENS = 8192
"""Most padded tokens in one bf16 torch batch. On an Intel Xeon with AMX, bf16 batches of 16
reviews ran 13-29% faster than batches of 32 at 512 tokens (three side-by-side runs) and the same
at 128 tokens, where 32 x 128 fits anyway (docs/INFERENCE.md, "What we tried for AMX")."""
FP32_BATCH_TOKENS = 4096
"""Most padded tokens in one fp32 (or int8) torch batch. At 512 tokens fp32 batches of 32 ran at
less than half the speed of batches of 8 (7.8-8.6 vs 19.9 reviews/s under AVX2 kernels, 23.3 vs
31.4 with 4 on AVX-512): their attention scores no longer fit in cache. At 128 tokens batch sizes
8 to 32 ran within 6% of each other (docs/INFERENCE.md)."""

UNCERTAIN = "uncertain"
"""The label ``--uncertain-band`` gives reviews whose probability lies in the band."""


@dataclass
class Prediction:
    """One review's verdict."""

    label: str
    positive_probability: float
    confidence: float
    n_tokens: int
    truncated: bool
    read_fraction: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON row of ``predict --json`` and ``POST /predict``, rounded."""
        return {
            "label": self.label,
            "positive_probability": round(self.positive_probability, 6),
            "confidence": round(self.confidence, 6),
            "n_tokens": self.n_tokens,
            "truncated": self.truncated,
            "read_fraction": round(self.read_fraction, 4),
        }


def check_texts(texts: Sequence[str]) -> None:
    """Reject empty input and empty reviews with a message naming the first bad one."""
    if len(texts) == 0:
        raise DataError("no reviews to predict: the input is empty")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"review {i + 1} is not text")
        if not clean_text(text):  # what the model would read: "<br />" alone is empty too
            raise DataError(f"review {i + 1} is empty")


class Predictor:
    """Batched, length-sorted inference with a fine-tuned classifier on any backend."""

    def __init__(
        self,
        runtime: Runtime,
        tokenizer: PreTrainedTokenizerBase,
        settings: InferenceSettings,
        *,
        batch_size: int = 32,
        model_dir: Path | None = None,
        long_reviews: str = "truncate",
    ) -> None:
        """Read reviews with ``tokenizer`` as ``settings`` say, and score them on ``runtime``.

        ``runtime`` is a :class:`~imdb_sentiment.inference.backends.TorchModel` or an
        :class:`~imdb_sentiment.inference.backends.OnnxModel`; :meth:`from_path` builds one.
        ``long_reviews``: ``truncate`` cuts with the trained strategy, ``chunks`` averages
        overlapping windows over the whole review.
        """
        self.runtime = runtime
        self.tokenizer = tokenizer
        self.settings = settings
        self.batch_size = batch_size
        self.model_dir = model_dir
        self.long_reviews = check_mode(long_reviews)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # Measured for PyTorch only; ONNX Runtime keeps batch_size.
        self.max_batch_tokens: int | None = None
        if isinstance(runtime, TorchModel):
            self.max_batch_tokens = (
                BF16_BATCH_TOKENS if runtime.precision in BF16_PRECISIONS else FP32_BATCH_TOKENS
            )

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        backend: str = "torch",
        precision: str = "auto",
        device: str | None = None,
        cpu_student: bool = False,
        **kwargs: Any,
    ) -> Predictor:
        """Load from a run directory or a model folder.

        ``backend``: ``torch`` (the saved weights), ``onnx`` or ``onnx-int8`` (the files
        ``imdb-sentiment export`` wrote next to them). ``precision`` (torch only): ``fp32``,
        ``bf16`` or ``auto`` (bf16 where the hardware does it natively). ``kwargs`` go to
        :class:`Predictor`. Bad ``backend`` or ``precision`` values raise :class:`ConfigError`
        before anything is loaded. ``cpu_student``: with ``auto`` on a CPU without native bf16,
        run the model's attached student (:mod:`imdb_sentiment.inference.cpu_student`) instead.
        """
        runtime, tokenizer, settings, model_dir = load_backend(
            path, backend, precision=precision, device=device, cpu_student=cpu_student
        )
        return cls(runtime, tokenizer, settings, model_dir=model_dir, **kwargs)

    @property
    def backend(self) -> str:
        """``torch``, ``onnx`` or ``onnx-int8``."""
        return self.runtime.name

    @property
    def precision(self) -> str:
        """``fp32``, ``bf16`` (torch) or ``int8`` (onnx-int8)."""
        return self.runtime.precision

    @property
    def student(self) -> dict[str, Any] | None:
        """The record of the attached student running instead of the model, else None."""
        return self.runtime.student if isinstance(self.runtime, TorchModel) else None

    @property
    def model(self) -> PreTrainedModel | None:
        """The PyTorch model on the torch backend; ``None`` on ONNX Runtime."""
        return self.runtime.module if isinstance(self.runtime, TorchModel) else None

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Clean and tokenize reviews as the model was trained, cut to its length."""
        s = self.settings
        return encode(self.tokenizer, list(texts), s.max_length, s.truncation, s.head_tokens)

    def _batches(self, enc: Encoded) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Index, padded ids and mask (int64 arrays) of each batch, shortest reviews first."""
        # Sorting by length means each batch pads only to its own longest review.
        order = np.argsort([len(ids) for ids in enc.input_ids], kind="stable")
        start = 0
        while start < len(order):
            size = self.batch_size
            if self.max_batch_tokens:  # sorted: a batch's last review is its longest
                last = order[min(start + size, len(order)) - 1]
                size = max(1, min(size, self.max_batch_tokens // len(enc.input_ids[last])))
            idx = order[start : start + size]
            start += size
            width = max(len(enc.input_ids[i]) for i in idx)
            ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(enc.input_ids[i])
                ids[row, :n] = enc.input_ids[i]
                mask[row, :n] = 1
            yield idx, ids, mask

    def logits(self, enc: Encoded) -> np.ndarray:
        """Raw logits for encoded reviews, in input order."""
        out = np.zeros((len(enc.input_ids), 2), dtype=np.float32)
        for idx, ids, mask in self._batches(enc):
            out[idx] = self.runtime(ids, mask)
        return out

    def window_logits(self, texts: Sequence[str]) -> tuple[Windows, np.ndarray]:
        """Logits of every overlapping full-length window of each review (``chunks`` mode)."""
        windows = chunk_windows(self.tokenizer, list(texts), self.settings.max_length)
        ids = windows.input_ids
        enc = Encoded(ids, [[1] * len(x) for x in ids], [len(x) for x in ids], [False] * len(ids))
        return windows, self.logits(enc)

    def scores(self, texts: Sequence[str]) -> tuple[Callable[[float], np.ndarray], Encoded]:
        """One model pass in the configured long-review mode.

        Returns a function from temperature to probabilities (so calibrated and raw
        probabilities need no second pass) and the reviews' truncating encoding.
        """
        enc = self.encode(texts)
        if self.long_reviews == "chunks":
            windows, window_logits = self.window_logits(texts)
            return (lambda t: chunked_probabilities(windows, window_logits, t)), enc
        logits = self.logits(enc)
        return (lambda t: softmax(logits, t)), enc

    def _probabilities(self, texts: Sequence[str]) -> tuple[np.ndarray, Encoded]:
        """Calibrated probabilities in the configured long-review mode, and the encoding."""
        probs_at, enc = self.scores(texts)
        if self.long_reviews == "chunks":
            # Every token was read: report the review as whole.
            enc = Encoded(
                enc.input_ids, enc.attention_mask, enc.n_tokens, [False] * len(enc.n_tokens)
            )
        return probs_at(self.settings.temperature), enc

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape ``(n, 2)``: column 0 negative, column 1 positive."""
        check_texts(texts)
        return self._probabilities(texts)[0]

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Label, probability and how much was read, for each review."""
        check_texts(texts)
        probs, enc = self._probabilities(texts)
        out = []
        for i, (p, label) in enumerate(zip(probs, predicted_labels(probs[:, 1]), strict=True)):
            out.append(
                Prediction(
                    label=label_name(label),
                    positive_probability=float(p[1]),
                    confidence=float(p[label]),
                    n_tokens=enc.n_tokens[i],
                    truncated=enc.truncated[i],
                    read_fraction=enc.read_fraction(i, self.settings.max_length),
                )
            )
        return out


# ------------------------------------------------------------------------ abstaining in a band


def parse_uncertain_band(text: str) -> tuple[float, float]:
    """Parse ``--uncertain-band LO:HI`` (for example ``0.4:0.6``); 0 <= LO < HI <= 1."""
    usage = f"--uncertain-band expects LO:HI with 0 <= LO < HI <= 1, e.g. 0.4:0.6; got {text!r}"
    parts = text.split(":")
    if len(parts) != 2:
        raise ConfigError(usage)
    try:
        lo, hi = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(usage) from None
    if not (0.0 <= lo < hi <= 1.0):
        raise ConfigError(usage)
    return lo, hi


def apply_uncertain_band(
    predictions: list[Prediction], band: tuple[float, float] | None
) -> list[Prediction]:
    """Relabel predictions whose positive probability lies in ``[LO, HI]`` as ``uncertain``.

    The probability is left as it is, so a caller can still see how close the call was.
    """
    if band is None:
        return predictions
    lo, hi = band
    for p in predictions:
        if lo <= p.positive_probability <= hi:
            p.label = UNCERTAIN
    return predictions
