"""CLI wiring: each verb's flags reach the one library function it calls, and bad values exit 2.

The library function is patched where the command looks it up (commands import it inside their
body, so patching the module attribute is enough); nothing is trained or loaded, so every happy
path is covered in milliseconds. The real end-to-end path is in test_cli.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from imdb_sentiment.data.files import Columns
from imdb_sentiment.errors import ConfigError, MissingExtraError
from imdb_sentiment.evaluation.evaluate import EvalResult
from imdb_sentiment.export.onnx import ExportResult
from imdb_sentiment.export.parity import Parity
from imdb_sentiment.inference.predictor import Prediction, Predictor
from imdb_sentiment.training.loop import TrainResult

runner = CliRunner()


@dataclass
class Calls:
    """What a patched library function was called with."""

    args: list[tuple[Any, ...]] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)

    def record(self, *args: Any, **kwargs: Any) -> None:
        self.args.append(args)
        self.kwargs.append(kwargs)

    @property
    def once(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        assert len(self.args) == 1, f"called {len(self.args)} times"
        return self.args[0], self.kwargs[0]


def invoke(*args: str, input: str | None = None) -> Any:
    result = runner.invoke(app, list(args), input=input)
    assert "Traceback" not in result.output
    return result


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from an empty folder, with no latest run and outside any distributed launch."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMDB_SENTIMENT_RUNS", str(tmp_path / "runs"))
    for var in ("LOCAL_RANK", "WORLD_SIZE", "RANK"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A folder that passes for a saved model (nothing in it is ever loaded here)."""
    path = tmp_path / "run" / "model"
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path.parent


# ------------------------------------------------------------------------------------ download


def test_download_flags_reach_prepare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = Calls()

    def fake_prepare(*args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.record(*args, **kwargs)
        return {"splits": {"train": {"rows": 1234, "labels": {"negative": 600, "positive": 634}}}}

    monkeypatch.setattr("imdb_sentiment.data.prepare.prepare", fake_prepare)
    result = invoke(
        "download",
        "--source",
        "some/dataset",
        "--output",
        "out",
        "--text-column",
        "review",
        "--label-column",
        "sentiment",
        "--validation-fraction",
        "0.2",
        "--seed",
        "7",
        "--revision",
        "abc",
        "--force",
    )
    assert result.exit_code == 0, result.output
    args, kwargs = calls.once
    assert args == ("some/dataset", Path("out"))
    assert kwargs["columns"] == Columns("review", "sentiment")
    assert (kwargs["validation_fraction"], kwargs["seed"], kwargs["revision"]) == (0.2, 7, "abc")
    assert kwargs["force"] is True and callable(kwargs["log"])
    assert "1,234" in result.stdout and "634" in result.stdout


def test_download_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = Calls()
    monkeypatch.setattr(
        "imdb_sentiment.data.prepare.prepare",
        lambda *a, **k: calls.record(*a, **k) or {"splits": {}},
    )
    assert invoke("download").exit_code == 0
    args, kwargs = calls.once
    assert args == ("stanfordnlp/imdb", Path("data/imdb"))
    assert kwargs["columns"] == Columns("text", "label")
    assert (kwargs["validation_fraction"], kwargs["seed"], kwargs["revision"], kwargs["force"]) == (
        0.1,
        42,
        None,
        False,
    )


# --------------------------------------------------------------------------------------- train


def fake_training(calls: Calls, tmp_path: Path) -> Any:
    def train(
        cfg: Any, *, resume: bool = False, log: Any = print, callbacks: list[Any] | None = None
    ) -> TrainResult:
        assert not callbacks, "no profiler callback without --profile"
        calls.record(cfg, resume=resume)
        log("training (fake)")
        metrics = {
            "accuracy": 0.91,
            "f1": 0.9,
            "roc_auc": 0.95,
            "log_loss": 0.3,
            "n": 200,
            "calibration": {"temperature": 1.25},
        }
        return TrainResult(run_dir=tmp_path / "runs" / cfg.run.name, metrics=metrics, world_size=1)

    return train


def test_train_flags_reach_the_training_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = Calls()
    monkeypatch.setattr("imdb_sentiment.training.loop.train", fake_training(calls, tmp_path))
    result = invoke(
        "train",
        "--lr",
        "3e-5",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--set",
        "training.seed=7",
        "--max-length",
        "128",
        "--truncation",
        "tail",
        "--model",
        "minilm",
        "--data",
        "d",
        "--output-dir",
        "o",
        "--run-name",
        "r",
        "--report-to",
        "none",
        "--precision",
        "fp32",
        "--max-train-samples",
        "100",
        "--max-eval-samples",
        "50",
        "--num-processes",
        "1",
        "--overwrite",
    )
    assert result.exit_code == 0, result.output
    (cfg,), kwargs = calls.once
    assert kwargs == {"resume": False}
    t, m, d, r = cfg.training, cfg.model, cfg.data, cfg.run
    assert (t.learning_rate, t.epochs, t.batch_size, t.seed, t.precision, t.num_processes) == (
        3e-5,
        1.0,
        8,
        7,
        "fp32",
        1,
    )
    assert (m.max_length, m.truncation, m.name) == (128, "tail", "minilm")
    assert (d.dir, d.max_train_samples, d.max_eval_samples) == ("d", 100, 50)
    assert (r.output_dir, r.name, r.report_to, r.overwrite) == ("o", "r", "none", True)
    assert "resolved config:" in result.stderr and "training (fake)" in result.stderr
    assert "0.9100" in result.stdout and "1.250" in result.stdout
    assert "marked as the latest run" in result.stdout


def test_train_flags_override_the_config_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = Calls()
    monkeypatch.setattr("imdb_sentiment.training.loop.train", fake_training(calls, tmp_path))
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "training": {"learning_rate": 1e-4, "batch_size": 4, "seed": 3},
                "run": {"name": "from-file"},
            }
        )
    )
    result = invoke("train", "--config", str(config), "--batch-size", "32", "--num-processes", "1")
    assert result.exit_code == 0, result.output
    (cfg,), _ = calls.once
    assert (cfg.training.learning_rate, cfg.training.batch_size, cfg.training.seed) == (1e-4, 32, 3)
    assert cfg.run.name == "from-file"


def test_train_resume_reads_the_saved_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = Calls()
    monkeypatch.setattr("imdb_sentiment.training.loop.train", fake_training(calls, tmp_path))
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"training": {"learning_rate": 7e-5}}))
    result = invoke(
        "train",
        "--resume",
        "--run-name",
        "old",
        "--output-dir",
        str(tmp_path / "runs"),
        "--num-processes",
        "1",
    )
    assert result.exit_code == 0, result.output
    (cfg,), kwargs = calls.once
    assert kwargs == {"resume": True}
    assert cfg.training.learning_rate == 7e-5 and cfg.run.name == "old"


def test_train_relaunches_under_accelerate_with_the_resolved_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def fake_relaunch(n: int, args: list[str]) -> int:
        # The temporary config lives only as long as the relaunch: read it now.
        seen["n"], seen["args"] = n, args
        seen["config"] = yaml.safe_load(Path(args[args.index("--config") + 1]).read_text())
        return 3

    monkeypatch.setattr("imdb_sentiment.training.distributed.relaunch", fake_relaunch)
    monkeypatch.setattr(
        "imdb_sentiment.training.loop.train",
        lambda *a, **k: pytest.fail("trained in the launching process"),
    )
    given = tmp_path / "given.yaml"
    given.write_text(yaml.safe_dump({"training": {"batch_size": 4}}))
    result = invoke(
        "train",
        "--num-processes",
        "2",
        "--lr",
        "4e-5",
        "--output-dir",
        "o",
        "--resume",
        "--run-name",
        "r",
        "--config",
        str(given),
    )
    assert result.exit_code == 3, result.output  # the launcher's exit code
    assert seen["n"] == 2
    args = seen["args"]
    assert args[0] == "train" and args[-1] == "--resume"
    assert args[args.index("--run-name") + 1] == "r"
    assert args[args.index("--output-dir") + 1] == "o"
    training = seen["config"]["training"]
    assert (training["learning_rate"], training["batch_size"], training["num_processes"]) == (
        4e-5,
        4,
        2,
    )
    assert not Path(args[args.index("--config") + 1]).exists()
    assert "launching 2 training processes" in result.stderr


def test_train_relaunch_leaves_the_run_name_to_the_main_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The main training process picks a unique name and claims its folder exclusively; the
    # others follow it (training.distributed.agree), so the launcher names nothing.
    seen: list[list[str]] = []
    monkeypatch.setattr(
        "imdb_sentiment.training.distributed.relaunch", lambda n, args: seen.append(args) or 0
    )
    result = invoke("train", "--num-processes", "2", "--model", "some-org/tiny-bert")
    assert result.exit_code == 0, result.output
    [args] = seen
    assert "--run-name" not in args and "--resume" not in args


# ---------------------------------------------------------------------------------------- eval


def test_eval_flags_reach_evaluate(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path, tmp_path: Path
) -> None:
    calls = Calls()

    def fake_evaluate(run: Path, options: Any, *, log: Any) -> EvalResult:
        calls.record(run, options, log=log)
        metrics = {
            "source": "validation split",
            "n": 10,
            "accuracy": 0.9,
            "precision": 0.8,
            "recall": 0.7,
            "f1": 0.75,
            "roc_auc": 0.95,
            "mcc": 0.6,
            "log_loss": 0.3,
            "confusion_matrix": [[4, 1], [0, 5]],
            "intervals": {"accuracy": {"value": 0.9, "low": 0.8, "high": 0.97}},
            "robustness": {"checks": {"typos": {"pass_rate": 0.5, "cases": 4}}},
        }
        return EvalResult(
            name="validation",
            metrics=metrics,
            out_dir=run / "eval",
            files=[run / "eval" / "validation" / "metrics.json"],
        )

    monkeypatch.setattr("imdb_sentiment.evaluation.evaluate.evaluate", fake_evaluate)
    result = invoke(
        "eval",
        str(model_dir),
        "--split",
        "validation",
        "--max-samples",
        "10",
        "--data",
        "prepared",
        "--batch-size",
        "16",
        "--long-reviews",
        "chunks",
        "--robustness",
        "--robustness-samples",
        "4",
        "--no-report",
        "--report-to",
        "wandb",
    )
    assert result.exit_code == 0, result.output
    (run, options), _ = calls.once
    assert run == model_dir
    assert (
        options.split,
        options.file,
        options.data_dir,
        options.max_samples,
        options.batch_size,
        options.long_reviews,
        options.report,
        options.robustness,
        options.robustness_samples,
        options.report_to,
    ) == ("validation", None, Path("prepared"), 10, 16, "chunks", False, True, 4, "wandb")
    assert "[4 1; 0 5]" in result.stdout
    assert "accuracy: 0.9000 (95% CI 0.8000-0.9700)" in result.stdout
    assert "robustness typos: 50.0% of 4 passed" in result.stdout
    assert "metrics.json" in result.stdout


def test_eval_file_and_default_run(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path, tmp_path: Path
) -> None:
    calls = Calls()
    metrics = {
        "source": "x",
        "n": 1,
        "confusion_matrix": [[1, 0], [0, 0]],
        **dict.fromkeys(
            ("accuracy", "precision", "recall", "f1", "roc_auc", "mcc", "log_loss"), 1.0
        ),
    }
    monkeypatch.setattr(
        "imdb_sentiment.evaluation.evaluate.evaluate",
        lambda run, options, log: calls.record(run, options) or EvalResult("x", metrics, run),
    )
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "LATEST").write_text("../run\n")
    result = invoke(
        "eval", "--file", "labelled.csv", "--text-column", "review", "--label-column", "sentiment"
    )
    assert result.exit_code == 0, result.output
    (run, options), _ = calls.once
    assert run.resolve() == model_dir.resolve()
    assert (
        options.file,
        options.text_column,
        options.label_column,
        options.split,
        options.report,
        options.report_to,
        options.batch_size,
    ) == (Path("labelled.csv"), "review", "sentiment", "test", True, "none", 64)


# ------------------------------------------------------------------------------------- predict


class FakePredictor:
    """Stands in for a loaded model: records what it is asked and answers by keyword."""

    def __init__(self) -> None:
        self.loaded: list[tuple[Path, dict[str, Any]]] = []
        self.texts: list[list[str]] = []
        self.student: dict[str, Any] | None = None  # no attached student runs

    def from_path(self, path: Path, **kwargs: Any) -> FakePredictor:
        self.loaded.append((Path(path), kwargs))
        return self

    def predict(self, texts: list[str]) -> list[Prediction]:
        self.texts.append(list(texts))
        return [
            Prediction(
                "positive" if "good" in t else "negative",
                0.9 if "good" in t else 0.2,
                0.9 if "good" in t else 0.8,
                len(t.split()),
                False,
                1.0,
            )
            for t in texts
        ]


@pytest.fixture
def predictor(monkeypatch: pytest.MonkeyPatch) -> FakePredictor:
    fake = FakePredictor()
    monkeypatch.setattr(Predictor, "from_path", fake.from_path)
    return fake


def test_predict_texts_and_flags_reach_the_predictor(
    predictor: FakePredictor, model_dir: Path
) -> None:
    result = invoke(
        "predict",
        "--model",
        str(model_dir),
        "--json",
        "--batch-size",
        "4",
        "--long-reviews",
        "chunks",
        "--backend",
        "onnx",
        "--precision",
        "fp32",
        "a good film",
        "a bad film",
    )
    assert result.exit_code == 0, result.output
    [(path, kwargs)] = predictor.loaded
    assert path == model_dir
    assert kwargs == {
        "batch_size": 4,
        "long_reviews": "chunks",
        "backend": "onnx",
        "precision": "fp32",
        "cpu_student": True,
    }
    assert predictor.texts == [["a good film", "a bad film"]]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["text"], r["label"]) for r in rows] == [
        ("a good film", "positive"),
        ("a bad film", "negative"),
    ]


def test_predict_reads_stdin_then_the_file(
    predictor: FakePredictor, model_dir: Path, tmp_path: Path
) -> None:
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("review\nfile good\nfile bad\n")
    result = invoke(
        "predict",
        "--model",
        str(model_dir),
        "arg good",
        "-",
        "--file",
        str(reviews),
        "--text-column",
        "review",
        input="stdin good\n\nstdin bad\n",
    )
    assert result.exit_code == 0, result.output
    assert predictor.texts == [["arg good", "stdin good", "stdin bad", "file good", "file bad"]]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("positive 0.900  arg good")
    assert lines[2].startswith("negative 0.200  stdin bad")
    assert predictor.loaded[0][1] == {
        "batch_size": 32,
        "long_reviews": "truncate",
        "backend": "torch",
        "precision": "auto",
        "cpu_student": True,
    }


def test_predict_uncertain_band_and_output_file(
    predictor: FakePredictor, model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preds.jsonl"
    result = invoke(
        "predict",
        "--model",
        str(model_dir),
        "--uncertain-band",
        "0.1:0.3",
        "--output",
        str(out),
        "good one",
        "bad one",
    )
    assert result.exit_code == 0, result.output
    assert "wrote 2 predictions" in result.stderr and result.stdout == ""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in rows] == ["positive", "uncertain"]
    assert rows[1]["positive_probability"] == 0.2 and rows[1]["text"] == "bad one"
    again = invoke("predict", "--model", str(model_dir), "--output", str(out), "good")
    assert again.exit_code == 5 and "--overwrite" in again.output
    assert len(predictor.loaded) == 1  # refused before loading the model
    assert (
        invoke(
            "predict", "--model", str(model_dir), "--output", str(out), "--overwrite", "good"
        ).exit_code
        == 0
    )
    assert len(out.read_text().splitlines()) == 1


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_predict_output_formats(
    predictor: FakePredictor, model_dir: Path, tmp_path: Path, suffix: str
) -> None:
    import pandas as pd

    out = tmp_path / f"preds{suffix}"
    assert (
        invoke("predict", "--model", str(model_dir), "--output", str(out), "good", "bad").exit_code
        == 0
    )
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert frame["label"].tolist() == ["positive", "negative"]
    assert not list(tmp_path.glob("*.tmp"))


def test_predict_stdin_must_hold_utf8_reviews(predictor: FakePredictor, model_dir: Path) -> None:
    result = runner.invoke(app, ["predict", "--model", str(model_dir), "-"], input="\n  \n")
    assert result.exit_code == 3 and "standard input holds no reviews" in result.output
    result = runner.invoke(app, ["predict", "--model", str(model_dir), "-"], input=b"caf\xe9\n")
    assert result.exit_code == 3 and "not valid UTF-8" in result.output
    assert predictor.loaded == []


# ----------------------------------------------------------------------------- export and serve


def test_export_flags_reach_export_onnx(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path, tmp_path: Path
) -> None:
    calls = Calls()

    def fake_export(run: Path, options: Any, *, log: Any) -> ExportResult:
        calls.record(run, options, log=log)
        parity = [
            Parity("onnx", "model.onnx", 12, 1.0, 0.001, 0.0001, True, 0.9, 0.9),
            Parity("onnx-int8", "model.int8.onnx", 12, 0.99, 0.01, 0.002, True),
        ]
        return ExportResult(
            out_dir=run / "onnx",
            files=[run / "onnx" / "model.onnx"],
            parity=parity,
            source="reviews.csv",
        )

    monkeypatch.setattr("imdb_sentiment.export.onnx.export_onnx", fake_export)
    result = invoke(
        "export",
        str(model_dir),
        "--quantize",
        "int8",
        "--file",
        "reviews.csv",
        "--data",
        "prepared",
        "--text-column",
        "review",
        "--max-samples",
        "12",
        "--min-agreement",
        "0.9",
        "--no-optimize",
    )
    assert result.exit_code == 0, result.output
    (run, options), _ = calls.once
    assert run == model_dir
    assert (
        options.quantize,
        options.file,
        options.data_dir,
        options.text_column,
        options.max_samples,
        options.min_agreement,
        options.optimize,
    ) == ("int8", Path("reviews.csv"), Path("prepared"), "review", 12, 0.9, False)
    assert "parity with PyTorch on 12 reviews (reviews.csv)" in result.stdout
    assert "model.int8.onnx" in result.stdout and "99.00%" in result.stdout


def test_serve_flags_reach_the_server(monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> None:
    calls = Calls()
    monkeypatch.setattr("imdb_sentiment.serving.app.serve", calls.record)
    result = invoke(
        "serve",
        str(model_dir),
        "--host",
        "0.0.0.0",
        "--port",
        "9001",
        "--precision",
        "fp32",
        "--max-batch-size",
        "8",
        "--batch-window-ms",
        "2.5",
        "--no-batching",
        "--max-texts",
        "5",
        "--max-chars",
        "100",
        "--log-level",
        "warning",
    )
    assert result.exit_code == 0, result.output
    (run,), kwargs = calls.once
    assert run == model_dir
    assert (kwargs["host"], kwargs["port"], kwargs["log_level"]) == ("0.0.0.0", 9001, "warning")
    o = kwargs["options"]
    assert (
        o.backend,
        o.precision,
        o.max_batch_size,
        o.batch_window_ms,
        o.batching,
        o.max_texts,
        o.max_chars,
    ) == ("torch", "fp32", 8, 2.5, False, 5, 100)
    assert f"serving {model_dir} on http://0.0.0.0:9001" in result.stderr


def test_serve_defaults(monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> None:
    calls = Calls()
    monkeypatch.setattr("imdb_sentiment.serving.app.serve", calls.record)
    assert invoke("serve", str(model_dir)).exit_code == 0
    _, kwargs = calls.once
    assert (kwargs["host"], kwargs["port"], kwargs["log_level"]) == ("127.0.0.1", 8000, "info")
    o = kwargs["options"]
    assert (
        o.backend,
        o.precision,
        o.max_batch_size,
        o.batch_window_ms,
        o.batching,
        o.max_texts,
        o.max_chars,
    ) == ("torch", "auto", 32, 5.0, True, 64, 50_000)


# ------------------------------------------------------------------------------ bad flag values


BAD_FLAGS = [
    (["eval", "{run}", "--max-samples", "0"], "--max-samples must be at least 1"),
    (["eval", "{run}", "--max-samples", "-3"], "--max-samples must be at least 1"),
    (["eval", "{run}", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["eval", "{run}", "--split", "dev"], "unknown split 'dev'"),
    (["eval", "{run}", "--long-reviews", "nope"], "--long-reviews must be one of"),
    (["eval", "{run}", "--report-to", "nope"], "--report-to must be none, wandb or auto"),
    (
        ["eval", "{run}", "--robustness", "--robustness-samples", "0"],
        "--robustness-samples must be at least 1",
    ),
    (["train", "--report-to", "nope"], "'run.report_to': must be one of"),
    (["train", "--precision", "nope"], "'training.precision': must be one of"),
    (["train", "--truncation", "nope"], "'model.truncation': must be one of"),
    (["train", "--epochs", "0"], "'training.epochs': must be positive"),
    (["train", "--seed", "-1"], "'training.seed': must be between 0 and 4294967295"),
    (["train", "--num-processes", "0"], "'training.num_processes': must be at least 1"),
    (["export", "{run}", "--format", "nope"], "--format must be onnx"),
    (["export", "{run}", "--max-samples", "0"], "--max-samples must be at least 1"),
    (["export", "{run}", "--quantize", "int4"], "--quantize must be one of int8"),
    (["export", "{run}", "--min-agreement", "2"], "--min-agreement must be in (0, 1]"),
    (["predict", "--model", "{run}", "--backend", "nope", "x"], "--backend must be one of"),
    (["predict", "--model", "{run}", "--precision", "nope", "x"], "--precision must be one of"),
    (
        ["predict", "--model", "{run}", "--backend", "onnx", "--precision", "bf16", "x"],
        "--precision bf16 applies to the torch backend only",
    ),
    (
        ["predict", "--model", "{run}", "--long-reviews", "nope", "x"],
        "--long-reviews must be one of",
    ),
    (
        ["predict", "--model", "{run}", "--uncertain-band", "2:1", "x"],
        "--uncertain-band expects LO:HI",
    ),
    (["predict", "--model", "{run}", "--batch-size", "0", "x"], "--batch-size must be at least 1"),
    (["predict", "--model", "{run}", "--output", "out.txt", "x"], "--output must end in .csv"),
    (["serve", "{run}", "--backend", "nope"], "--backend must be one of"),
    (["serve", "{run}", "--precision", "nope"], "--precision must be one of"),
    (["serve", "{run}", "--max-texts", "0"], "--max-texts must be at least 1"),
    (["serve", "{run}", "--max-chars", "0"], "--max-chars must be at least 1"),
    (["serve", "{run}", "--max-batch-size", "0"], "--max-batch-size must be at least 1"),
    (["serve", "{run}", "--batch-window-ms", "-1"], "--batch-window-ms must be at least 0"),
    (["serve", "{run}", "--port", "70000"], "--port must be between 0 and 65535"),
    (["serve", "{run}", "--log-level", "loud"], "--log-level must be one of"),
    (["download", "--validation-fraction", "0.9"], "validation fraction must be in (0, 0.5]"),
    (["download", "--seed", "-1"], "--seed must be between 0 and 4294967295"),
]


@pytest.mark.parametrize(("args", "message"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_values_exit_2_with_one_line(
    args: list[str], message: str, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing may be trained, exported or served; eval --split is checked once the model is
    # loaded, so the load hands back a stand-in that the check never reaches.
    for target in (
        "imdb_sentiment.training.loop.train",
        "imdb_sentiment.export.onnx.export_onnx",
        "imdb_sentiment.serving.app.serve",
        "imdb_sentiment.data.prepare.load_source",
    ):
        monkeypatch.setattr(target, lambda *a, **k: pytest.fail("ran past the flag check"))
    monkeypatch.setattr(Predictor, "from_path", lambda *a, **k: object())
    result = invoke(*[a.replace("{run}", str(model_dir)) for a in args])
    assert result.exit_code == ConfigError.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert message in lines[0]


# ---------------------------------------------------------------------------- the error boundary


def test_error_messages_keep_their_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*_a: Any, **_k: Any) -> None:
        raise MissingExtraError("fastapi", "serve")

    monkeypatch.setattr("imdb_sentiment.data.prepare.prepare", missing)
    result = invoke("download")
    assert result.exit_code == 7
    assert result.output.strip() == (
        "error: fastapi is not installed; install it with: pip install 'imdb-sentiment[serve]'"
    )

    def odd(*_a: Any, **_k: Any) -> None:
        raise ConfigError("got '[/x]' where a value was expected")

    monkeypatch.setattr("imdb_sentiment.data.prepare.prepare", odd)
    result = invoke("download")
    assert result.exit_code == 2
    assert result.output.strip() == "error: got '[/x]' where a value was expected"


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_a: Any, **_k: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("imdb_sentiment.data.prepare.prepare", interrupted)
    result = invoke("download")
    assert result.exit_code == 130 and result.output.strip() == "interrupted"
