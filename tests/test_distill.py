"""Students: `train --layers N` keeps evenly spaced encoder layers, `train --distill-from RUN`
learns from a teacher's soft targets (cached, read back on --resume), and both record what
they are in metrics.json and the model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import build_tiny_model
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from imdb_sentiment.errors import ConfigError
from imdb_sentiment.training.layers import keep_layers, kept_layers

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def student_args(teacher: Path, data: Path, out: Path, name: str, *extra: str) -> list[str]:
    """`train` flags for a tiny student of ``teacher`` (no --model: it starts from the teacher)."""
    return [
        "train",
        "--distill-from",
        str(teacher),
        "--data",
        str(data),
        "--output-dir",
        str(out),
        "--run-name",
        name,
        "--lr",
        "5e-3",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--report-to",
        "none",
        "--precision",
        "fp32",
        "--no-reference",
        "--max-train-samples",
        "96",
        *extra,
    ]


def last_line(result) -> str:
    text = result.output.strip()
    assert "Traceback" not in text
    line = text.splitlines()[-1]
    assert line.startswith("error:"), text
    return line


@pytest.mark.parametrize(
    ("total", "n", "kept"),
    [
        (6, 3, [0, 2, 4]),
        (6, 2, [0, 3]),
        (12, 6, [0, 2, 4, 6, 8, 10]),
        (2, 1, [0]),
        (6, 5, [0, 1, 2, 3, 4]),
    ],
)
def test_kept_layers_are_evenly_spaced_from_the_first(total: int, n: int, kept: list[int]) -> None:
    assert kept_layers(total, n) == kept


@pytest.mark.parametrize("n", [0, -1, 6, 7])
def test_layer_counts_out_of_range_name_the_models_count(n: int) -> None:
    with pytest.raises(ConfigError, match="the model has 6 encoder layers"):
        kept_layers(6, n)


def tiny_bert(path: Path, layers: int = 4) -> Path:
    """A tiny BERT encoder (BERT-like layout: bert.encoder.layer) with the tiny tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(build_tiny_model(path / "vocab"))
    tokenizer.save_pretrained(path)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        BertModel(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("family", ["distilbert", "bert"])
def test_a_cut_model_keeps_those_layers_and_reloads_with_n(
    family: str, tiny_model: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from imdb_sentiment.modeling.loading import load_model_for_training

    source = tiny_model if family == "distilbert" else tiny_bert(tmp_path / "bert")
    full = load_model_for_training(str(source))
    model = load_model_for_training(str(source))
    total = 2 if family == "distilbert" else 4
    n = total // 2
    assert keep_layers(model, n) == kept_layers(total, n)
    model.save_pretrained(tmp_path / "cut")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cut")
    layers = (
        again.distilbert.transformer.layer if family == "distilbert" else again.bert.encoder.layer
    )
    full_layers = (
        full.distilbert.transformer.layer if family == "distilbert" else full.bert.encoder.layer
    )
    assert len(layers) == n
    for new, old in enumerate(kept_layers(total, n)):
        for a, b in zip(layers[new].parameters(), full_layers[old].parameters(), strict=True):
            assert torch.equal(a, b)
    ids = torch.tensor([[2, 10, 11, 3]])
    assert again(input_ids=ids).logits.shape == (1, 2)


def test_the_loss_is_cross_entropy_plus_a_kl_term_that_vanishes_on_agreement() -> None:
    import torch
    import torch.nn.functional as F

    from imdb_sentiment.training.distill import distillation_loss

    student = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5]])
    other = torch.tensor([[-1.0, 2.0], [0.0, 0.0], [3.0, -3.0]])
    labels = torch.tensor([0, 1, 1])
    ce = F.cross_entropy(student, labels)
    assert torch.allclose(distillation_loss(student, other, labels, 1.0, 2.0), ce)
    assert distillation_loss(student, student, labels, 0.0, 2.0).abs() < 1e-7
    soft = distillation_loss(student, other, labels, 0.0, 2.0)
    assert soft > 0
    mixed = distillation_loss(student, other, labels, 0.3, 2.0)
    assert torch.allclose(mixed, 0.3 * ce + 0.7 * soft)


def test_the_collator_stacks_teacher_logits_beside_the_batch() -> None:
    import numpy as np

    from imdb_sentiment.training.distill import TeacherCollator, WithTeacherLogits

    rows = [{"input_ids": [1, 2], "labels": 0}, {"input_ids": [3], "labels": 1}]
    data = WithTeacherLogits(rows, np.array([[1.0, -1.0], [0.0, 2.0]], dtype=np.float32))
    seen: list = []
    batch = TeacherCollator(lambda f: seen.append(f) or {"n": len(f)})([data[0], data[1]])
    assert "teacher_logits" not in seen[0][0]
    assert batch["teacher_logits"].tolist() == [[1.0, -1.0], [0.0, 2.0]]


def test_distilled_student_end_to_end(
    trained_run: Path, prepared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "runs"
    # Checkpoints kept: it is resumed below to train longer.
    args = student_args(trained_run, prepared_data, out, "student", "--layers", "1")
    result = invoke(*args, "--keep-checkpoints")
    assert result.exit_code == 0, result.output
    run = out / "student"
    config = (run / "config.yaml").read_text()
    assert "max_length: 64" in config and "# teacher" in config  # read as the teacher read
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    student = metrics["student"]
    assert student["layers"] == {"kept": [0], "of": 2}
    assert student["distillation"] == {"alpha": 0.5, "temperature": 2.0}
    comparison = student["comparison"]
    assert comparison["compared"] and comparison["reviews"] == metrics["validation_samples"]
    assert 0 <= comparison["agreement"] <= 1
    diff = comparison["accuracy_difference"]
    assert diff["low"] <= diff["difference"] <= diff["high"]
    assert json.loads((run / "model" / "config.json").read_text())["n_layers"] == 1
    card = (run / "model" / "README.md").read_text()
    assert "## Student" in card and "encoder layers [0] of 2 kept" in card
    assert f"distilled from run `{trained_run.name}` (alpha 0.5, T 2.0)" in card
    assert "the two agree on" in card
    assert (run / "teacher_logits.npz").is_file()

    predicted = invoke("predict", "--model", str(run), "--json", "a wonderful superb film")
    assert predicted.exit_code == 0, predicted.output

    # --resume (asked to train longer) reads the cached teacher logits, never recomputes them.
    import imdb_sentiment.training.teacher as teacher

    def no_recompute(*_a, **_k):
        raise AssertionError("teacher logits computed again on --resume")

    monkeypatch.setattr(teacher, "compute_logits", no_recompute)
    resumed = invoke(
        "train",
        "--resume",
        "--run-name",
        "student",
        "--output-dir",
        str(out),
        "--epochs",
        "2",
        "--no-reference",
    )
    assert resumed.exit_code == 0, resumed.output
    assert "teacher logits: read" in resumed.output
    assert json.loads((run / "metrics.json").read_text())["metrics"]["epochs_completed"] == 2


def test_layers_alone_make_an_undistilled_student(
    trained_run: Path, prepared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    args = student_args(trained_run, prepared_data, out, "small", "--layers", "1")
    args[1:3] = ["--model", str(trained_run / "model")]  # no --distill-from
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    student = json.loads((out / "small" / "metrics.json").read_text())["metrics"]["student"]
    assert student["layers"] == {"kept": [0], "of": 2}
    assert student["teacher_run"] is None and student["distillation"] is None
    assert not (out / "small" / "teacher_logits.npz").exists()


def other_tokenizer_model(path: Path) -> Path:
    """A tiny DistilBERT whose vocabulary differs from the tiny model's."""
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
    path.mkdir(parents=True)
    DistilBertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(path)
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    DistilBertModel(config).save_pretrained(path)
    return path


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--layers", "0"], 2, "between 1 and 1 (the model has 2 encoder layers), got 0"),
        (["--layers", "2"], 2, "the model has 2 encoder layers"),
        (["--distill-alpha", "1.5"], 2, "training.distill_alpha"),
    ],
)
def test_bad_student_settings_are_one_line_errors(
    extra: list[str],
    code: int,
    message: str,
    trained_run: Path,
    prepared_data: Path,
    tmp_path: Path,
) -> None:
    out = tmp_path / "runs"
    result = invoke(*student_args(trained_run, prepared_data, out, "bad", *extra))
    assert result.exit_code == code, result.output
    assert message in last_line(result)
    assert not (out / "bad").exists()  # nothing claimed


def test_bad_teachers_are_one_line_errors(
    trained_run: Path, prepared_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    missing = invoke(*student_args(tmp_path / "nowhere", prepared_data, out, "s"))
    assert missing.exit_code == 5 and "no such teacher run" in last_line(missing)
    empty = tmp_path / "empty-run"
    empty.mkdir()
    no_model = invoke(*student_args(empty, prepared_data, out, "s"))
    assert no_model.exit_code == 4, no_model.output
    last_line(no_model)
    other = other_tokenizer_model(tmp_path / "other")
    mismatch = invoke(*student_args(trained_run, prepared_data, out, "s", "--model", str(other)))
    assert mismatch.exit_code == 2 and "tokenizes differently" in last_line(mismatch)
    assert not (out / "s").exists()
