"""The last layer computed for the first token only: same logits, parameters untouched."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from imdb_sentiment.inference.cls_only import all_positions, read_first_token, reads_first_token
from imdb_sentiment.inference.predictor import Predictor

SMALL = {
    "vocab_size": 100,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
}


def _bert() -> torch.nn.Module:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**SMALL)).eval()


def _roberta() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = RobertaConfig(**SMALL, max_position_embeddings=40, pad_token_id=1)
    return RobertaForSequenceClassification(cfg).eval()


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows, two of them padded, so the mask matters."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 90, (3, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    return ids, mask


def _models(tiny_model: Path) -> list[tuple[str, torch.nn.Module]]:
    torch.manual_seed(0)
    distil = AutoModelForSequenceClassification.from_pretrained(tiny_model).eval()
    return [("distilbert", distil), ("bert", _bert()), ("roberta", _roberta())]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_first_token_logits_match_the_full_model(tiny_model: Path, attention: str) -> None:
    ids, mask = _batch()
    for name, model in _models(tiny_model):
        model.set_attn_implementation(attention)
        fast = copy.deepcopy(model)
        assert read_first_token(fast), name
        assert reads_first_token(fast) and not reads_first_token(model)
        with torch.inference_mode():
            for m in (mask, None):  # padded, and no mask at all
                want = model(input_ids=ids, attention_mask=m).logits
                got = fast(input_ids=ids, attention_mask=m).logits
                assert torch.allclose(got, want, atol=1e-5), (name, attention)
            # A padded row must not read its padding: changing it changes nothing.
            other = ids.clone()
            other[2, 3:] = 7
            moved = fast(input_ids=other, attention_mask=mask).logits
            assert torch.allclose(moved[2], fast(input_ids=ids, attention_mask=mask).logits[2])


def test_parameters_and_state_dict_are_untouched(tiny_model: Path) -> None:
    for _, model in _models(tiny_model):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        assert read_first_token(model)
        assert read_first_token(model)  # idempotent
        after = model.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)


def test_all_positions_gives_every_hidden_state_back(tiny_model: Path) -> None:
    ids, mask = _batch()
    for _, model in _models(tiny_model):
        want = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        read_first_token(model)
        with torch.inference_mode():
            with all_positions(model):
                assert not reads_first_token(model)
                full = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            assert reads_first_token(model)  # switched back on after the block
            short = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        assert full.hidden_states[-1].shape == want.hidden_states[-1].shape
        assert torch.allclose(full.hidden_states[-1], want.hidden_states[-1], atol=1e-6)
        assert short.hidden_states[-1].shape[1] == 1


def test_other_model_families_are_left_alone() -> None:
    cfg = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=32)
    gpt2 = GPT2ForSequenceClassification(cfg).eval()  # reads the last token, not the first
    assert not read_first_token(gpt2)
    assert not reads_first_token(gpt2)
    with all_positions(gpt2):  # a no-op, not an error
        pass


def test_int8_quantized_layers_still_read_the_first_token(tiny_model: Path) -> None:
    """Dynamic int8 scales activations per tensor, so the first row alone rounds differently;
    it must stay as close to fp32 as the full int8 model is."""
    from imdb_sentiment.inference.quantize import quantize_linears

    ids, mask = _batch()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model).eval()
    with torch.inference_mode():
        fp32 = model(input_ids=ids, attention_mask=mask).logits
        quantize_linears(model, [])
        full = model(input_ids=ids, attention_mask=mask).logits
        assert read_first_token(model)
        first = model(input_ids=ids, attention_mask=mask).logits
    assert (first - fp32).abs().max() <= 2 * (full - fp32).abs().max() + 1e-6
    assert torch.equal(first.argmax(-1), fp32.argmax(-1))


def test_the_predictor_reads_the_first_token_with_the_same_probabilities(
    trained_run: Path,
) -> None:
    reviews = ["a fine film", "dull, long and badly acted " * 20, "ok"]
    fast = Predictor.from_path(trained_run, precision="fp32")
    assert fast.runtime.first_token_only
    got = fast.predict_proba(reviews)
    with all_positions(fast.model):
        want = fast.predict_proba(reviews)
    assert np.abs(got - want).max() < 1e-5
