"""``adapt``: masked-LM training on unlabelled text, never on validation or test texts.

The tiny DistilBERT of conftest (saved without a masked-LM head, as all-MiniLM-L6-v2 is) is
adapted on a few dozen synthetic reviews; each adaptation takes a few optimiser steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import synthetic_frame, tiny_train_overrides
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from imdb_sentiment.config import resolve
from imdb_sentiment.data.corpus import build_corpus, corpus_hash
from imdb_sentiment.errors import DataError, ModelError, RunError
from imdb_sentiment.training.adapt import AdaptResult, AdaptSettings, adapt

runner = CliRunner()


def _cfg(model: Path, data: Path, runs: Path, name: str, **extra: Any) -> Any:
    return resolve(
        overrides={
            "model.name": str(model),
            "model.max_length": 32,
            "data.dir": str(data),
            "run.output_dir": str(runs),
            "run.name": name,
            "run.report_to": "none",
            "training.learning_rate": 1e-3,
            "training.epochs": 1,
            "training.batch_size": 16,
            "training.logging_steps": 1,
            "training.warmup_ratio": 0.0,
            **extra,
        }
    )


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("unlabelled") / "unsup.parquet"
    synthetic_frame(40, seed=7)[["text"]].to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def adapted(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model: Path,
    prepared_data: Path,
    unlabelled: Path,
) -> AdaptResult:
    runs = tmp_path_factory.mktemp("adapt-runs")
    settings = AdaptSettings(
        unlabelled=[str(unlabelled)], include_train=True, max_texts=60, holdout=6
    )
    return adapt(_cfg(tiny_model, prepared_data, runs, "adapted"), settings, log=lambda _m: None)


def _with_text(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mixed.parquet"
    frame = synthetic_frame(10, seed=9)[["text"]]
    # Uncleaned on purpose: the check compares cleaned texts, as the tokenizer reads them.
    pd.concat(
        [frame, pd.DataFrame({"text": ["  " + text.replace(" ", "  ") + " <br />"]})]
    ).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("split", ["validation", "test"])
def test_a_file_holding_a_held_out_text_is_refused(
    tmp_path: Path, prepared_data: Path, tiny_model: Path, split: str
) -> None:
    text = pd.read_parquet(prepared_data / f"{split}.parquet")["text"].iloc[3]
    path = _with_text(tmp_path, text)
    cfg = _cfg(tiny_model, prepared_data, tmp_path / "runs", "refused")
    with pytest.raises(
        DataError,
        match=r"1 of its texts also occur in the prepared "
        r"validation/test split.*--drop-overlap",
    ):
        adapt(cfg, AdaptSettings(unlabelled=[str(path)]), log=lambda _m: None)
    assert not (tmp_path / "runs").exists()  # refused before anything was written

    corpus = build_corpus(
        prepared_data, [path], include_train=False, drop_overlap=True, log=lambda _m: None
    )
    assert corpus.sources[0].dropped_overlap == 1 and len(corpus.texts) == 10
    assert text not in corpus.texts


def test_a_prepared_validation_or_test_split_is_refused_even_as_a_copy(
    tmp_path: Path, prepared_data: Path
) -> None:
    with pytest.raises(DataError, match="is the prepared validation split"):
        build_corpus(
            prepared_data,
            [prepared_data / "validation.parquet"],
            include_train=False,
            drop_overlap=True,
            log=lambda _m: None,
        )
    copy = tmp_path / "renamed.parquet"
    copy.write_bytes((prepared_data / "test.parquet").read_bytes())
    with pytest.raises(DataError, match="is the prepared test split"):
        build_corpus(
            prepared_data, [copy], include_train=True, drop_overlap=True, log=lambda _m: None
        )


def test_the_manifest_says_what_text_was_read(
    adapted: AdaptResult, unlabelled: Path, prepared_data: Path
) -> None:
    m = json.loads((adapted.run_dir / "adapt_manifest.json").read_text())
    sources = {Path(s["path"]).name: s for s in m["corpus"]["sources"]}
    assert sources["unsup.parquet"]["rows"] == 40
    assert sources["train.parquet"]["rows"] == len(pd.read_parquet(prepared_data / "train.parquet"))
    from imdb_sentiment.data.files import file_sha256

    assert sources["unsup.parquet"]["sha256"] == file_sha256(unlabelled)
    corpus = build_corpus(prepared_data, [unlabelled], include_train=True, log=lambda _m: None)
    assert m["corpus"]["corpus_sha256"] == corpus_hash(corpus.texts)
    assert m["corpus"]["held_out_splits_checked"] == ["validation", "test"]
    assert m["used"]["train_texts"] == 54 and m["used"]["holdout_texts"] == 6
    assert m["settings"]["mlm_probability"] == 0.15 and m["settings"]["include_train"] is True
    assert m["fresh_mlm_head"] is True  # the tiny encoder, like MiniLM, ships none
    assert m["kept_from_base"] == []  # DistilBERT has no pooler to keep
    r = m["result"]
    assert r["mlm_loss_after"] < r["mlm_loss_before"]
    assert (adapted.model_dir / "adaptation.json").is_file()
    status = json.loads((adapted.run_dir / "status.json").read_text())
    assert status["state"] == "succeeded"
    assert not (adapted.run_dir.parent / "LATEST").exists()  # no classifier for eval/predict


def test_train_fine_tunes_the_adapted_encoder(
    adapted: AdaptResult, prepared_data: Path, tmp_path: Path
) -> None:
    import torch

    from imdb_sentiment.modeling.loading import load_model_for_training, load_trained
    from imdb_sentiment.training.loop import train

    config = json.loads((adapted.model_dir / "config.json").read_text())
    assert config["architectures"] == ["DistilBertForMaskedLM"]
    model = load_model_for_training(str(adapted.model_dir))
    assert type(model).__name__ == "DistilBertForSequenceClassification"
    from safetensors.torch import load_file

    saved = load_file(str(adapted.model_dir / "model.safetensors"))
    key = "distilbert.embeddings.word_embeddings.weight"
    assert torch.equal(model.state_dict()[key], saved[key])  # the adapted encoder, kept
    with pytest.raises(ModelError, match=r"masked-LM encoder.*train --model"):
        load_trained(adapted.run_dir)  # never served as a classifier with a random head

    overrides = tiny_train_overrides(adapted.model_dir, prepared_data, tmp_path, "fine-tuned")
    cfg = resolve(overrides={**overrides, "data.max_eval_samples": 40})
    result = train(cfg, log=lambda _m: None)
    assert result.metrics["accuracy"] > 0.5
    assert (result.run_dir / "model" / "config.json").is_file()


def test_resume_continues_on_the_same_corpus_only(
    tmp_path: Path, tiny_model: Path, prepared_data: Path, unlabelled: Path
) -> None:
    settings = AdaptSettings(unlabelled=[str(unlabelled)], max_texts=32, holdout=0, pack=False)
    first = adapt(_cfg(tiny_model, prepared_data, tmp_path, "r"), settings, log=lambda _m: None)
    steps = first.manifest["processes"][0]["optimizer_steps"]
    assert first.manifest["result"]["mlm_loss_before"] is None  # nothing held out

    other = AdaptSettings(unlabelled=[str(unlabelled)], max_texts=30, holdout=0, pack=False)
    with pytest.raises(RunError, match="corpus or settings differ"):
        adapt(
            _cfg(tiny_model, prepared_data, tmp_path, "r", **{"training.epochs": 2}),
            other,
            resume=True,
            log=lambda _m: None,
        )

    logs: list[str] = []
    again = adapt(
        _cfg(tiny_model, prepared_data, tmp_path, "r", **{"training.epochs": 2}),
        settings,
        resume=True,
        log=logs.append,
    )
    assert any(line.startswith("resuming from") and "checkpoint-" in line for line in logs)
    assert again.manifest["result"]["epochs_completed"] == 2
    assert again.manifest["processes"][0]["optimizer_steps"] == 2 * steps


def test_packed_blocks_hold_every_token_once(tiny_model: Path) -> None:
    from imdb_sentiment.modeling.loading import load_tokenizer
    from imdb_sentiment.modeling.tokenization import whole_token_ids
    from imdb_sentiment.training.blocks import blocks

    tokenizer = load_tokenizer(str(tiny_model))
    texts = synthetic_frame(12, seed=3)["text"].tolist()
    cfg = resolve(overrides={"model.name": str(tiny_model), "model.max_length": 16})
    rows = [list(map(int, r)) for r in blocks(tokenizer, texts, cfg, pack=True).rows]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert all(len(r) <= 16 and r[0] == cls and r[-1] == sep for r in rows)
    assert all(len(r) == 16 for r in rows[:-1])  # full blocks, no padding
    inner = [t for r in rows for t in r[1:-1]]
    assert inner == [t for ids in whole_token_ids(tokenizer, texts) for t in [*ids, sep]]


# ------------------------------------------------------------------------------------ CLI


def test_cli_flags_reach_adapt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = _patched(monkeypatch, tmp_path)
    result = runner.invoke(
        app,
        [
            "adapt",
            "--unlabelled",
            "a.parquet",
            "--unlabelled",
            "b.txt",
            "--include-train",
            "--drop-overlap",
            "--no-pack",
            "--mlm-probability",
            "0.2",
            "--max-texts",
            "100",
            "--holdout",
            "7",
            "--model",
            "m",
            "--data",
            "d",
            "--output-dir",
            str(tmp_path),
            "--run-name",
            "x",
            "--epochs",
            "3",
            "--save-steps",
            "25",
            "--report-to",
            "none",
            "--num-processes",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "fine-tune it with: imdb-sentiment train --model" in result.output
    s, cfg = seen["settings"], seen["cfg"]
    assert s == AdaptSettings(
        unlabelled=["a.parquet", "b.txt"],
        include_train=True,
        drop_overlap=True,
        pack=False,
        mlm_probability=0.2,
        max_texts=100,
        holdout=7,
    )
    assert (cfg.model.name, cfg.data.dir, cfg.run.name, cfg.training.epochs) == ("m", "d", "x", 3)
    assert cfg.training.eval_steps == 25
    # The masked-LM defaults fill what no flag gave; a flag still wins.
    assert cfg.training.learning_rate == 5e-5 and cfg.training.batch_size == 32
    assert cfg.sources["training.learning_rate"] == "adapt default"
    assert cfg.sources["training.epochs"] == "flag"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "nothing to adapt on"),
        (["--include-train", "--mlm-probability", "1.5"], 2, "--mlm-probability must be in"),
        (["--unlabelled", "{data}/validation.parquet"], 3, "is the prepared validation split"),
    ],
)
def test_cli_refusals_are_one_line(
    prepared_data: Path, tiny_model: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    args = [a.replace("{data}", str(prepared_data)) for a in args]
    result = runner.invoke(
        app,
        [
            "adapt",
            "--model",
            str(tiny_model),
            "--data",
            str(prepared_data),
            "--output-dir",
            str(tmp_path),
            "--report-to",
            "none",
            *args,
        ],
    )
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())


def _patched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake(cfg: Any, settings: AdaptSettings, *, resume: bool, log: Any) -> AdaptResult:
        seen.update(cfg=cfg, settings=settings, resume=resume)
        return AdaptResult(tmp_path / "run", tmp_path / "run" / "model", {}, 1)

    monkeypatch.setattr("imdb_sentiment.training.adapt.adapt", fake)
    for var in ("LOCAL_RANK", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)
    return seen


def test_relaunched_processes_get_the_same_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from imdb_sentiment.cli.adapt import settings_flags

    seen = _patched(monkeypatch, tmp_path)
    settings = AdaptSettings(
        unlabelled=["u.parquet"],
        include_train=True,
        drop_overlap=True,
        pack=False,
        mlm_probability=0.3,
        max_texts=9,
        holdout=4,
        text_column="review",
    )
    result = runner.invoke(
        app,
        ["adapt", *settings_flags(settings), "--num-processes", "1", "--output-dir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert seen["settings"] == settings


def test_resume_without_sources_reuses_the_saved_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen = _patched(monkeypatch, tmp_path)
    run = tmp_path / "r"
    run.mkdir()
    resolve(overrides={"run.name": "r", "training.epochs": 4}).save(run / "config.yaml")
    saved = AdaptSettings(unlabelled=["u.parquet"], include_train=True, holdout=3)
    from dataclasses import asdict

    (run / "adapt_manifest.json").write_text(json.dumps({"settings": asdict(saved)}))
    result = runner.invoke(
        app,
        [
            "adapt",
            "--resume",
            "--run-name",
            "r",
            "--output-dir",
            str(tmp_path),
            "--num-processes",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["resume"] is True and seen["settings"] == saved
    assert seen["cfg"].training.epochs == 4  # the saved config, not the adapt defaults


def test_the_adapted_model_keeps_the_pretrained_pooler(tmp_path: Path, tiny_model: Path) -> None:
    """BERT's masked-LM model has no pooler; fine-tuning the adapted model must still start
    from the base model's pretrained one, or adapted and plain runs differ in more than the
    adaptation (a fresh pooler)."""
    import torch
    from transformers import BertConfig, BertModel

    from imdb_sentiment.modeling.loading import (
        load_model_for_masked_lm,
        load_model_for_training,
        load_tokenizer,
    )
    from imdb_sentiment.training.adapt import keep_base_weights

    base = tmp_path / "tiny-bert"
    tokenizer = load_tokenizer(str(tiny_model))
    BertModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(base)
    tokenizer.save_pretrained(base)
    mlm, missing = load_model_for_masked_lm(str(base))
    assert any(name.startswith("cls.") for name in missing)  # a fresh head, as for MiniLM
    mlm.save_pretrained(tmp_path / "adapted")
    assert keep_base_weights(str(base), tmp_path / "adapted") == [
        "bert.pooler.dense.bias",
        "bert.pooler.dense.weight",
    ]
    adapted, plain = (load_model_for_training(str(p)) for p in (tmp_path / "adapted", base))
    assert torch.equal(adapted.bert.pooler.dense.weight, plain.bert.pooler.dense.weight)
