"""bf16 Linear layers with bias and GELU fused into oneDNN matmuls: same model, fewer passes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)
from transformers.activations import GELUActivation, NewGELUActivation

from imdb_sentiment.inference import backends, fused
from imdb_sentiment.inference.predictor import Predictor

needs_kernel = pytest.mark.skipif(
    not fused.available(), reason="this CPU or torch build has no oneDNN bf16 linear kernel"
)


def _bert(act: str = "gelu") -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_act=act,
    )
    return BertForSequenceClassification(cfg).eval()


def _distilbert(tiny_model: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_pretrained(tiny_model).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 90, (3, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def _probs(model: torch.nn.Module) -> np.ndarray:
    ids, mask = _batch()
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask).logits.float().softmax(-1).numpy()


def _linears(model: torch.nn.Module) -> int:
    return sum(type(m) is torch.nn.Linear for m in model.modules())


@pytest.mark.parametrize(
    ("activation", "algorithm"),
    [
        (GELUActivation(), "none"),
        (NewGELUActivation(), "tanh"),
        (torch.nn.GELU(approximate="tanh"), "tanh"),
        (torch.nn.GELU(), "none"),
        (torch.nn.ReLU(), None),
    ],
)
def test_gelu_modules_map_to_the_same_onednn_algorithm(activation: Any, algorithm: str) -> None:
    assert fused._gelu_algorithm(activation) == algorithm


@needs_kernel
def test_fused_models_match_unfused_bf16_and_unfuse_restores_them(tiny_model: Path) -> None:
    for model in (_distilbert(tiny_model), _bert()):
        model.to(torch.bfloat16)
        want = _probs(model)
        fast = copy.deepcopy(model)
        assert fused.fuse_linears(fast) == _linears(fast)
        assert fused.fuse_linears(fast) == 0  # idempotent: nothing left to fuse
        patched = [m for m in fast.modules() if vars(m).get("_imdb_fused")]
        assert len(patched) == _linears(fast) + 2  # and one GELU per layer
        assert np.abs(_probs(fast) - want).max() <= backends.BF16_MAX_ABS_DIFF
        fused.unfuse(fast)
        assert not any("forward" in vars(m) or "ff_chunk" in vars(m) for m in fast.modules())
        np.testing.assert_array_equal(_probs(fast), want)


@needs_kernel
def test_an_unknown_activation_keeps_its_own_pass_and_fp32_is_left_alone() -> None:
    relu = _bert("relu").to(torch.bfloat16)
    want = _probs(relu)
    assert fused.fuse_linears(relu) == _linears(relu)
    assert not any(
        "forward" in vars(m) for m in relu.modules() if hasattr(m, "intermediate_act_fn")
    )
    assert np.abs(_probs(relu) - want).max() <= backends.BF16_MAX_ABS_DIFF
    assert fused.fuse_linears(_bert()) == 0  # fp32


def test_a_kernel_that_fails_or_differs_falls_back_to_unfused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _bert().to(torch.bfloat16)
    want = _probs(model)
    monkeypatch.setattr(fused, "available", lambda: True)

    def broken(*_a: Any, **_k: Any) -> torch.Tensor:
        raise RuntimeError("could not create a primitive descriptor\nmore")

    monkeypatch.setattr(fused, "_linear", broken)
    with pytest.warns(UserWarning, match="fused bf16 linears failed, running unfused"):
        assert fused.fuse_checked(model, backends.BF16_MAX_ABS_DIFF) == 0
    np.testing.assert_array_equal(_probs(model), want)

    def zeros(linear: Any, x: torch.Tensor, *_a: Any) -> torch.Tensor:
        return torch.zeros(*x.shape[:-1], linear.out_features, dtype=x.dtype)

    monkeypatch.setattr(fused, "_linear", zeros)
    with pytest.warns(UserWarning, match="differ from unfused"):
        assert fused.fuse_checked(model, 1e-9) == 0
    np.testing.assert_array_equal(_probs(model), want)


@needs_kernel
def test_the_predictor_fuses_in_bf16_only(trained_run: Path) -> None:
    reviews = ["a fine film", "dull, long and badly acted " * 20, "ok"]
    fp32 = Predictor.from_path(trained_run, precision="fp32")
    assert fp32.runtime.fused_linears == 0
    bf16 = Predictor.from_path(trained_run, precision="bf16")
    assert bf16.runtime.fused_linears == _linears(bf16.model)
    got, want = bf16.predict_proba(reviews), fp32.predict_proba(reviews)
    assert np.abs(got - want).max() <= backends.BF16_MAX_ABS_DIFF
