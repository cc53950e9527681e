"""PyTorch int8: which Linear layers run in int8, and applying that plan to a loaded model.

On CPUs without native bf16 the fast path is dynamic int8 quantization of the Linear layers
(weights int8 with one scale per output channel, activations quantized per batch at run time,
torch's ``x86`` engine, FBGEMM). A few layers lose too much in int8 (on the MiniLM demo, the
feed-forward matmuls of the first encoder layers flipped labels on their own), so the layers
kept in fp32 are chosen by measurement at export time (``imdb-sentiment export --format
torch-int8``, :mod:`imdb_sentiment.export.torch_int8`) and recorded with the parity report in
``<model>/int8.json``. Only a plan that passed the parity check is ever loaded, and ``auto``
picks int8 only where such a plan exists.

The numbers depend on FBGEMM's kernels: on 500 reviews the MiniLM plan agreed with fp32 on
99.6% with AVX512-VNNI kernels and on 99.2% with the AVX2 ones, so ``auto`` only uses a plan
checked on the kernels the CPU runs (``checked_on.int8_kernel``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imdb_sentiment.errors import ModelError

if TYPE_CHECKING:
    import torch

PLAN_FILE = "int8.json"
"""File, inside a saved model, naming the Linear layers that stay fp32 and the parity verdict."""
PLAN_VERSION = 1
ENGINE = "x86"


def linear_names(module: torch.nn.Module) -> list[str]:
    """Names of every ``torch.nn.Linear`` in ``module``, in model order."""
    import torch

    return [n for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]


def quantize_linears(
    module: torch.nn.Module, keep_fp32: list[str] | tuple[str, ...] = ()
) -> torch.nn.Module:
    """Dynamic int8 (per-channel weights) for every Linear not named in ``keep_fp32``, in place.

    Returns the quantized module (the same object); a model with no Linear left to quantize
    comes back unchanged.
    """
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    keep = set(keep_fp32)
    spec = {n: per_channel_dynamic_qconfig for n in linear_names(module) if n not in keep}
    if not spec:
        return module
    if ENGINE in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = ENGINE
    with warnings.catch_warnings():
        # torch.ao points users at torchao, which this package does not depend on.
        warnings.simplefilter("ignore")
        return quantize_dynamic(module.eval(), spec, dtype=torch.qint8, inplace=True)


def plan_path(model_dir: str | Path) -> Path:
    """Where a saved model's int8 plan lives."""
    return Path(model_dir) / PLAN_FILE


def read_plan(model_dir: str | Path | None) -> dict[str, Any] | None:
    """The passed int8 plan of a saved model, or None (no plan, unreadable, or refused)."""
    if model_dir is None:
        return None
    path = plan_path(model_dir)
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(plan, dict) or plan.get("format_version") != PLAN_VERSION:
        return None
    if not plan.get("passed") or not isinstance(plan.get("keep_fp32"), list):
        return None
    return plan


def require_plan(model_dir: str | Path | None) -> dict[str, Any]:
    """The passed int8 plan, or :class:`ModelError` saying how to create it."""
    plan = read_plan(model_dir)
    if plan is None:
        from imdb_sentiment.runs import run_of

        where = Path(model_dir) if model_dir is not None else Path("MODEL")
        run = run_of(where)
        raise ModelError(
            f"no int8 plan that passed the parity check in {where}; create it with: "
            f"imdb-sentiment export {run} --format torch-int8"
        )
    return plan
