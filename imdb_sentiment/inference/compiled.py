"""bf16 compiled with ``torch.compile``: ``--precision bf16-compiled``.

On an Intel Xeon with AMX, inductor with ``freezing`` (LayerNorm, residual adds and GELU fused)
ran the MiniLM demo 1.2-1.3x faster than eager bf16 at 128 and 512 tokens, with the same labels
(docs/INFERENCE.md, "What we tried for AMX"). Since eager bf16 fuses bias and GELU into oneDNN
matmuls (:mod:`.fused`), it is as fast as this path or faster (5.39x vs 5.22x the pipeline at
128 tokens, 3.99x vs 3.47x at 512, docs/INFERENCE.md, "Fused bias and GELU in bf16").
Compiling costs 10-35 s per process, paid once when the model is loaded (:func:`compile_bf16`
warms it up), which is why ``auto`` never picks it.

Shapes are dynamic (one compilation serves every batch size and width), except that a batch of
one review is padded to two rows: torch specializes size-1 dimensions and would compile again.
Where sdpa attention runs, the padding mask is passed as ``[B, 1, 1, L]`` booleans instead of the
``[B, 1, L, L]`` mask transformers builds: 10% faster compiled at 512 tokens, the same result.
Anything that goes wrong (no C++ compiler, an unsupported model, logits that differ from eager
bf16 on the warm-up batch) falls back to eager bf16 with a warning, never an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from imdb_sentiment.data.files import one_line

if TYPE_CHECKING:
    import torch

COMPILED = "bf16-compiled"
"""The inference precision this module provides."""
WARM_UP_WIDTH = 16

Forward = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
"""Padded ids and mask in, logits out (torch tensors)."""


def _wrapped(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` as a two-tensor-in, logits-out module, with the small mask under sdpa."""
    import torch

    small_mask = getattr(getattr(module, "config", None), "_attn_implementation", None) == "sdpa"

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = module

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            # transformers passes a 4-D mask through unchanged; True means "attend".
            attention = mask[:, None, None, :].bool() if small_mask else mask
            return self.model(input_ids=ids, attention_mask=attention).logits

    return Logits().eval()


def eager_forward(module: torch.nn.Module) -> Forward:
    """The uncompiled forward pass: padded ids and mask in, logits out."""

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return module(input_ids=ids, attention_mask=mask).logits

    return forward


def pad_single(forward: Forward) -> Forward:
    """``forward`` with one-row batches run as two rows (no recompilation for size 1)."""
    import torch

    def padded(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if ids.shape[0] != 1:
            return forward(ids, mask)
        return forward(torch.cat([ids, ids]), torch.cat([mask, mask]))[:1]

    return padded


def warm_up_batch(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of distinct ids, the second half padded, so the mask path is compiled too."""
    import torch

    ids = torch.arange(2 * WARM_UP_WIDTH, dtype=torch.int64).reshape(2, -1) % max(vocab_size, 2)
    mask = torch.ones_like(ids)
    mask[1, WARM_UP_WIDTH // 2 :] = 0
    return ids, mask


def probabilities(logits: torch.Tensor) -> np.ndarray:
    """Softmax of logits of any dtype, as float numpy."""
    return np.asarray(logits.float().softmax(-1).cpu().numpy())


def compile_bf16(
    module: torch.nn.Module, max_diff: float, compiler: Callable[..., Forward] | None = None
) -> Forward | None:
    """Compile a bf16 ``module`` and warm it up; None (with a warning) when that fails.

    ``compiler`` is ``torch.compile`` unless given (tests pass a failing one). The compiled pass
    must match eager bf16 on the warm-up batch within ``max_diff`` (|Δp|; the Predictor passes
    the tolerance bf16 itself is held to).
    """
    import torch

    compile_fn = compiler or torch.compile
    vocab = int(getattr(getattr(module, "config", None), "vocab_size", 2) or 2)
    try:
        compiled = compile_fn(_wrapped(module), dynamic=True, options={"freezing": True})
        # Built inside inference_mode like the real batches (TorchModel.__call__): a tensor
        # made outside it fails a compile guard, and the first real batch compiled again.
        with torch.inference_mode():
            ids, mask = warm_up_batch(vocab)
            expected = probabilities(eager_forward(module)(ids, mask))
            got = probabilities(compiled(ids, mask))
    except Exception as exc:  # inductor raises many kinds (no compiler, unsupported op, ...)
        warnings.warn(
            f"torch.compile failed, running eager bf16 instead ({one_line(exc)})", stacklevel=2
        )
        return None
    diff = float(np.abs(got - expected).max())
    if not diff <= max_diff:
        warnings.warn(
            f"compiled bf16 differs from eager bf16 by |Δp| {diff:.3f} on the warm-up batch; "
            "running eager bf16 instead",
            stacklevel=2,
        )
        return None
    return pad_single(compiled)
