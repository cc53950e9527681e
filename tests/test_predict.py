"""Predictor: length-sorted batches keep input order, precision choice, bf16 parity, errors."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_review
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from imdb_sentiment.errors import ConfigError, DataError, ModelError
from imdb_sentiment.inference import backends
from imdb_sentiment.inference import predictor as predictor_module
from imdb_sentiment.inference.backends import OnnxModel, TorchModel, inference_precision
from imdb_sentiment.inference.predictor import Predictor
from imdb_sentiment.text import DECISION_THRESHOLD, LABELS


@pytest.fixture(scope="module")
def predictor(trained_run: Path) -> Predictor:
    return Predictor.from_path(trained_run, batch_size=4, precision="fp32")


@pytest.fixture(scope="module")
def reviews() -> list[str]:
    rng = random.Random(7)
    # Lengths from a few words to past the tiny model's 64-token window, in shuffled order.
    return [synthetic_review(i % 2, rng, length=rng.choice([2, 5, 20, 40, 90])) for i in range(23)]


def test_batches_are_sorted_and_padded_per_batch(predictor: Predictor, reviews: list[str]) -> None:
    enc = predictor.encode(reviews)
    lengths = [len(ids) for ids in enc.input_ids]
    seen: list[int] = []
    previous_width = 0
    for idx, ids, mask in predictor._batches(enc):
        assert len(idx) <= predictor.batch_size
        width = max(lengths[i] for i in idx)
        assert ids.shape == mask.shape == (len(idx), width)  # padded to this batch only
        assert width >= previous_width
        previous_width = width
        for row, i in enumerate(idx):
            assert mask[row].sum() == lengths[i]
            assert ids[row, : lengths[i]].tolist() == enc.input_ids[i]
            assert (ids[row, lengths[i] :] == predictor.pad_id).all()
        seen.extend(int(i) for i in idx)
    assert sorted(seen) == list(range(len(reviews)))
    assert previous_width < max(lengths) or max(lengths) == previous_width


def test_batched_predictions_match_one_at_a_time_in_input_order(
    predictor: Predictor, reviews: list[str]
) -> None:
    batched = predictor.predict_proba(reviews)
    single = np.vstack([predictor.predict_proba([r]) for r in reviews])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    preds = predictor.predict(reviews)
    assert [p.positive_probability for p in preds] == pytest.approx(batched[:, 1].tolist())
    assert any(p.truncated and p.read_fraction < 1 for p in preds)
    assert all(p.read_fraction == 1.0 for p in preds if not p.truncated)


def test_bf16_matches_fp32_within_tolerance(
    trained_run: Path, reviews: list[str], predictor: Predictor
) -> None:
    bf16 = Predictor.from_path(trained_run, batch_size=8, precision="bf16")
    assert bf16.precision == "bf16"
    assert next(bf16.model.parameters()).dtype.is_floating_point  # type: ignore[union-attr]
    p32 = predictor.predict_proba(reviews)[:, 1]
    p16 = bf16.predict_proba(reviews)[:, 1]
    assert np.mean((p32 >= 0.5) == (p16 >= 0.5)) >= backends.BF16_MIN_AGREEMENT
    assert np.abs(p32 - p16).max() <= backends.BF16_MAX_ABS_DIFF


def test_torch_batches_hold_a_token_budget_and_keep_every_review(
    trained_run: Path, reviews: list[str], predictor: Predictor
) -> None:
    bf16 = Predictor.from_path(trained_run, batch_size=8, precision="bf16")
    assert bf16.max_batch_tokens == predictor_module.BF16_BATCH_TOKENS
    assert predictor.max_batch_tokens == predictor_module.FP32_BATCH_TOKENS  # fp32: tighter
    bf16.max_batch_tokens = 40  # the tiny model reads at most 64 tokens: force the cap to bite
    enc = bf16.encode(reviews)
    batches = list(bf16._batches(enc))
    assert all(ids.size <= 40 or len(idx) == 1 for idx, ids, _ in batches)
    assert any(len(idx) < bf16.batch_size for idx, _, _ in batches[:-1])  # long batches shrank
    assert sorted(int(i) for idx, _, _ in batches for i in idx) == list(range(len(reviews)))
    capped = bf16.predict_proba(reviews)
    bf16.max_batch_tokens = None
    np.testing.assert_allclose(capped, bf16.predict_proba(reviews), atol=backends.BF16_MAX_ABS_DIFF)


def test_auto_precision_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: True)
    assert inference_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: False)
    assert inference_precision("auto", "cpu") == "fp32"
    assert inference_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ConfigError, match="precision must be one of"):
        inference_precision("fp8", "cpu")
    # fp16 is a training precision only: inference never silently accepts it.
    with pytest.raises(ConfigError, match="auto, fp32, bf16"):
        inference_precision("fp16", "cpu")


def test_cpu_flag_probe_returns_a_bool() -> None:
    assert isinstance(backends.cpu_has_native_bf16(), bool)


def test_errors_are_one_line_and_specific(predictor: Predictor, trained_run: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        predictor.predict([])
    with pytest.raises(DataError, match="review 2 is empty"):
        predictor.predict(["fine", "   "])
    # Only HTML line breaks: nothing is left once the text is cleaned as in training.
    with pytest.raises(DataError, match="review 1 is empty"):
        predictor.predict(["<br /><br/> <BR>", "fine"])
    with pytest.raises(ConfigError, match="backend must be one of"):
        Predictor.from_path(trained_run, backend="tensorrt")
    with pytest.raises(ModelError, match="imdb-sentiment export"):
        Predictor.from_path(trained_run / "model", backend="onnx-int8")


def test_bad_backend_and_precision_are_config_errors_before_loading(
    predictor: Predictor, tmp_path: Path
) -> None:
    """Bad flag values exit 2 even when the path is wrong too: they are checked first."""
    missing = tmp_path / "no-such-run"
    with pytest.raises(ConfigError, match="--backend must be one of torch, onnx, onnx-int8"):
        Predictor.from_path(missing, backend="nope")
    with pytest.raises(ConfigError, match="--precision must be one of"):
        Predictor.from_path(missing, precision="fp8")
    with pytest.raises(ConfigError, match="torch backend only"):
        Predictor.from_path(missing, backend="onnx", precision="bf16")
    with pytest.raises(ConfigError, match="onnx or onnx-int8"):
        OnnxModel(missing / "model.onnx", "tensorrt")
    with pytest.raises(ConfigError, match="--precision must be one of"):
        TorchModel(predictor.model, precision="fp16")  # type: ignore[arg-type]


class _FixedLogits:
    """A runtime that scores every review the same: the Predictor works on any backend."""

    name, precision = "fixed", "fp32"

    def __init__(self, logits: tuple[float, float]) -> None:
        self.logits = np.asarray(logits, dtype=np.float32)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return np.tile(self.logits, (len(input_ids), 1))


def test_predictor_labels_at_the_shared_decision_threshold(predictor: Predictor) -> None:
    settings = dataclasses.replace(predictor.settings, temperature=1.0)
    even = Predictor(_FixedLogits((0.0, 0.0)), predictor.tokenizer, settings)
    assert even.backend == "fixed" and even.model is None
    [p] = even.predict(["a film"])
    assert p.positive_probability == DECISION_THRESHOLD
    assert p.label == LABELS[1] and p.confidence == DECISION_THRESHOLD
    [n] = Predictor(_FixedLogits((1.0, 0.0)), predictor.tokenizer, settings).predict(["a film"])
    assert n.label == LABELS[0] and n.confidence > DECISION_THRESHOLD


def test_cli_predict_precision_and_missing_onnx(trained_run: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "predict",
            "--model",
            str(trained_run),
            "--precision",
            "bf16",
            "--json",
            "wonderful brilliant film",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert '"label"' in ok.stdout
    missing = runner.invoke(
        app, ["predict", "--model", str(trained_run), "--backend", "onnx", "great"]
    )
    assert missing.exit_code == ModelError.exit_code
    assert "imdb-sentiment export" in missing.output
    assert "Traceback" not in missing.output
    bad = runner.invoke(app, ["predict", "--model", str(trained_run), "--precision", "fp8", "x"])
    assert bad.exit_code == ConfigError.exit_code
    for verb in (["predict", "--model", str(trained_run), "x"], ["serve", str(trained_run)]):
        bad_backend = runner.invoke(app, [*verb, "--backend", "nope"])
        assert bad_backend.exit_code == ConfigError.exit_code, bad_backend.output
        assert "--backend must be one of" in bad_backend.output
