"""The single inference path: texts in, calibrated probabilities out.

The CLI, the server and export parity checks all go through :class:`Predictor`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment import LABELS
from imdb_sentiment.errors import DataError
from imdb_sentiment.modeling import Encoded, InferenceSettings, encode, load_trained

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


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
        return {
            "label": self.label,
            "positive_probability": round(self.positive_probability, 6),
            "confidence": round(self.confidence, 6),
            "n_tokens": self.n_tokens,
            "truncated": self.truncated,
            "read_fraction": round(self.read_fraction, 4),
        }


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def check_texts(texts: Sequence[str]) -> None:
    """Reject empty input and empty reviews with a message naming the first bad one."""
    if len(texts) == 0:
        raise DataError("no reviews to predict: the input is empty")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"review {i + 1} is not text")
        if not text.strip():
            raise DataError(f"review {i + 1} is empty")


class Predictor:
    """Batched, length-sorted inference with a fine-tuned classifier."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        settings: InferenceSettings,
        *,
        batch_size: int = 32,
        device: str | None = None,
        model_dir: Path | None = None,
    ) -> None:
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.batch_size = batch_size
        self.model_dir = model_dir
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)
        self.model.eval()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> Predictor:
        """Load from a run directory or a model folder."""
        model, tokenizer, settings, model_dir = load_trained(path)
        return cls(model, tokenizer, settings, model_dir=model_dir, **kwargs)

    def encode(self, texts: Sequence[str]) -> Encoded:
        s = self.settings
        return encode(self.tokenizer, list(texts), s.max_length, s.truncation, s.head_tokens)

    def _batches(self, enc: Encoded) -> Iterable[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        import torch

        # Sorting by length means each batch pads only to its own longest review.
        order = np.argsort([len(ids) for ids in enc.input_ids], kind="stable")
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = max(len(enc.input_ids[i]) for i in idx)
            ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                n = len(enc.input_ids[i])
                ids[row, :n] = torch.tensor(enc.input_ids[i])
                mask[row, :n] = 1
            yield idx, ids, mask

    def logits(self, enc: Encoded) -> np.ndarray:
        """Raw logits for encoded reviews, in input order."""
        import torch

        out = np.zeros((len(enc.input_ids), 2), dtype=np.float32)
        with torch.inference_mode():
            for idx, ids, mask in self._batches(enc):
                result = self.model(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                )
                out[idx] = result.logits.float().cpu().numpy()
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, shape ``(n, 2)``: column 0 negative, column 1 positive."""
        check_texts(texts)
        return softmax(self.logits(self.encode(texts)), self.settings.temperature)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Label, probability and how much was read, for each review."""
        check_texts(texts)
        enc = self.encode(texts)
        probs = softmax(self.logits(enc), self.settings.temperature)
        out = []
        for i, p in enumerate(probs):
            label = int(p[1] >= 0.5)
            out.append(
                Prediction(
                    label=LABELS[label],
                    positive_probability=float(p[1]),
                    confidence=float(p[label]),
                    n_tokens=enc.n_tokens[i],
                    truncated=enc.truncated[i],
                    read_fraction=enc.read_fraction(i, self.settings.max_length),
                )
            )
        return out
