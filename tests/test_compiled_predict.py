"""``--precision bf16-compiled``: selection, fallback to eager bf16, parity with fp32."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import synthetic_review

from imdb_sentiment.errors import ConfigError
from imdb_sentiment.inference import backends, compiled
from imdb_sentiment.inference import predictor as predictor_module
from imdb_sentiment.inference.backends import inference_precision
from imdb_sentiment.inference.predictor import Predictor


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    rng = random.Random(11)
    return [synthetic_review(i % 2, rng, length=rng.choice([1, 5, 30, 90])) for i in range(17)]


@pytest.fixture(scope="module")
def fp32_probs(trained_run: Path, reviews: list[str]) -> np.ndarray:
    return Predictor.from_path(trained_run, batch_size=4, precision="fp32").predict_proba(reviews)


def test_auto_never_compiles_and_only_torch_compiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: True)
    assert inference_precision("auto", "cpu") == "bf16"  # compiling costs 10-35 s at load
    assert inference_precision("bf16-compiled", "cpu") == "bf16-compiled"
    with pytest.raises(ConfigError, match="torch backend only"):
        backends.check_precision("bf16-compiled", "onnx")


@pytest.mark.skipif(shutil.which("c++") is None, reason="inductor needs a C++ compiler")
def test_compiled_bf16_matches_fp32_on_the_tiny_model(
    trained_run: Path, reviews: list[str], fp32_probs: np.ndarray
) -> None:
    fast = Predictor.from_path(trained_run, batch_size=4, precision="bf16-compiled")
    assert fast.precision == "bf16-compiled"
    assert fast.max_batch_tokens == predictor_module.BF16_BATCH_TOKENS
    probs = fast.predict_proba(reviews)  # batches of 4 and a last one of 1 review
    assert np.mean((probs[:, 1] >= 0.5) == (fp32_probs[:, 1] >= 0.5)) >= (
        backends.BF16_MIN_AGREEMENT
    )
    assert np.abs(probs - fp32_probs).max() <= backends.BF16_MAX_ABS_DIFF


def test_a_failing_compiler_falls_back_to_eager_bf16(
    trained_run: Path, reviews: list[str], fp32_probs: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="No working C\\+\\+ compiler found"):
        fallback = Predictor.from_path(trained_run, batch_size=4, precision="bf16-compiled")
    assert fallback.precision == "bf16"
    probs = fallback.predict_proba(reviews)
    assert np.abs(probs - fp32_probs).max() <= backends.BF16_MAX_ABS_DIFF


def test_a_compiled_model_that_disagrees_with_eager_is_not_used(trained_run: Path) -> None:
    module = Predictor.from_path(trained_run, precision="bf16").model
    assert module is not None

    def wrong(model: torch.nn.Module, **kwargs: Any) -> Any:
        return lambda ids, mask: torch.stack([ids[:, 0] * 0.0 + 9.0, ids[:, 0] * 0.0], dim=1)

    with pytest.warns(UserWarning, match="differs from eager bf16"):
        assert compiled.compile_bf16(module, backends.BF16_MAX_ABS_DIFF, compiler=wrong) is None


def test_one_review_batches_run_as_two_rows() -> None:
    seen: list[tuple[int, ...]] = []

    def forward(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(ids.shape))
        return ids.float()

    padded = compiled.pad_single(forward)
    one = torch.tensor([[5, 6, 7]])
    assert padded(one, torch.ones_like(one)).tolist() == [[5.0, 6.0, 7.0]]
    three = torch.ones(3, 4, dtype=torch.int64)
    assert padded(three, three).shape == (3, 4)
    assert seen == [(2, 3), (3, 4)]
