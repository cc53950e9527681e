"""ONNX export: files and parity report, refusal leaves nothing behind, ONNX inference parity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _serving import wait_ready
from typer.testing import CliRunner

from imdb_sentiment.cli.app import app
from imdb_sentiment.errors import ConfigError, ModelError
from imdb_sentiment.export.formats import FORMATS, check_format
from imdb_sentiment.export.onnx import ExportOptions, export_onnx
from imdb_sentiment.export.parity import MIN_AGREEMENT, compare
from imdb_sentiment.inference.backends import OnnxModel
from imdb_sentiment.inference.predictor import Predictor
from imdb_sentiment.text import DECISION_THRESHOLD

pytest.importorskip("onnxruntime")

REVIEWS = [
    "A wonderful, moving film with a brilliant cast.",
    "Awful. Boring and painful.",
    "the plot was dull but the music was beautiful and the ending superb",
    "worst film " * 40,
]


def copy_run(src: Path, dst: Path) -> Path:
    """A private copy of the shared tiny run, so exports never touch other tests' run."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints", "eval"))
    return dst


@pytest.fixture(scope="module")
def exported_run(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = copy_run(trained_run, tmp_path_factory.mktemp("export") / "tiny")
    result = export_onnx(run, ExportOptions(quantize="int8"), log=lambda _m: None)
    assert result.out_dir == run / "model" / "onnx"
    return run


def test_export_writes_models_and_parity_report(exported_run: Path) -> None:
    onnx_dir = exported_run / "model" / "onnx"
    assert sorted(p.name for p in onnx_dir.iterdir()) == [
        "model.int8.onnx",
        "model.onnx",
        "parity.json",
    ]
    report = json.loads((onnx_dir / "parity.json").read_text())
    assert report["n"] == 80 and report["source"].startswith("validation split")
    by_variant = {m["variant"]: m for m in report["models"]}
    assert set(by_variant) == {"onnx", "onnx-int8"}
    for m in by_variant.values():
        assert m["passed"] and m["agreement"] >= MIN_AGREEMENT
        assert 0 <= m["mean_abs_diff"] <= m["max_abs_diff"] < 0.05
        assert m["accuracy"] is not None


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_predictor_matches_torch(exported_run: Path, backend: str) -> None:
    torch_p = Predictor.from_path(exported_run, precision="fp32")
    onnx_p = Predictor.from_path(exported_run, backend=backend)
    assert onnx_p.backend == backend and onnx_p.model is None
    # Same tokenization and temperature: identical token counts and truncation flags.
    ref, got = torch_p.predict(REVIEWS), onnx_p.predict(REVIEWS)
    assert [p.label for p in got] == [p.label for p in ref]
    assert [(p.n_tokens, p.truncated) for p in got] == [(p.n_tokens, p.truncated) for p in ref]
    diff = np.abs(
        np.array([p.positive_probability for p in got])
        - np.array([p.positive_probability for p in ref])
    )
    assert diff.max() < (1e-4 if backend == "onnx" else 0.05)


def test_refused_export_writes_nothing(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = copy_run(trained_run, tmp_path / "tiny")
    original = OnnxModel.__call__

    def flipped(self: OnnxModel, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return original(self, ids, mask)[:, ::-1].copy()  # a broken export: every label swapped

    monkeypatch.setattr(OnnxModel, "__call__", flipped)
    result = CliRunner().invoke(
        app, ["export", str(run), "--format", "onnx", "--quantize", "int8", "--no-optimize"]
    )
    assert result.exit_code == ModelError.exit_code
    assert "export refused" in result.output and "nothing was written" in result.output
    assert "Traceback" not in result.output
    assert not (run / "model" / "onnx").exists()


def test_export_on_a_file_of_unlabelled_reviews(trained_run: Path, tmp_path: Path) -> None:
    run = copy_run(trained_run, tmp_path / "tiny")
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("\n".join(REVIEWS) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["export", str(run), "--file", str(reviews), "--no-optimize"])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "model" / "onnx" / "parity.json").read_text())
    assert report["n"] == len(REVIEWS) and report["models"][0]["accuracy"] is None
    assert not (run / "model" / "onnx" / "model.int8.onnx").exists()


def test_export_argument_errors(trained_run: Path) -> None:
    runner = CliRunner()
    bad_format = runner.invoke(app, ["export", str(trained_run), "--format", "tflite"])
    assert bad_format.exit_code == ConfigError.exit_code
    assert "--format must be onnx, torch-int8, cpu-student, got 'tflite'" in bad_format.output
    with pytest.raises(ConfigError, match="--quantize"):
        export_onnx(trained_run, ExportOptions(quantize="int4"))
    missing = runner.invoke(app, ["export", str(trained_run / "nope")])
    assert missing.exit_code == ModelError.exit_code


def test_cli_predict_and_serve_with_onnx(exported_run: Path) -> None:
    from fastapi.testclient import TestClient

    from imdb_sentiment.serving.app import create_app
    from imdb_sentiment.serving.schemas import ServeOptions

    out = CliRunner().invoke(
        app,
        [
            "predict",
            "--model",
            str(exported_run),
            "--backend",
            "onnx-int8",
            "--json",
            "brilliant superb film",
        ],
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout.splitlines()[0])["label"] in ("positive", "negative")

    with TestClient(create_app(exported_run, ServeOptions(backend="onnx-int8"))) as client:
        ready = wait_ready(client)
        assert ready["backend"] == "onnx-int8" and ready["precision"] == "int8"
        r = client.post("/predict", json={"texts": REVIEWS})
        assert r.status_code == 200 and len(r.json()["predictions"]) == len(REVIEWS)


def test_export_options_reject_bad_values_as_config_errors() -> None:
    with pytest.raises(ConfigError, match="--min-agreement"):
        ExportOptions(min_agreement=1.5)
    # Was a DataError ("no reviews to check") after loading the model: exit 3, not 2.
    with pytest.raises(ConfigError, match="--max-samples must be at least 1"):
        ExportOptions(max_samples=0)
    assert check_format("onnx") == "onnx"
    assert FORMATS == ("onnx", "torch-int8", "cpu-student")
    with pytest.raises(ConfigError, match="--format must be onnx"):
        check_format("tflite")


def test_parity_compares_labels_at_the_shared_decision_threshold() -> None:
    at = DECISION_THRESHOLD
    reference = np.array([[1 - at, at], [0.9, 0.1], [0.2, 0.8]])
    candidate = np.array([[0.5001, 0.4999], [0.9, 0.1], [0.25, 0.75]])
    r = compare(
        reference,
        candidate,
        np.array([1, 0, 1]),
        variant="onnx",
        file="model.onnx",
        min_agreement=0.5,
        max_accuracy_drop=1.0,
    )
    assert r.agreement == pytest.approx(2 / 3) and r.passed
    # The default gate also refuses the 33 points of accuracy lost.
    assert not compare(
        reference,
        candidate,
        np.array([1, 0, 1]),
        variant="onnx",
        file="model.onnx",
        min_agreement=0.5,
    ).passed
    assert r.torch_accuracy == 1.0 and r.accuracy == pytest.approx(2 / 3)
    assert r.max_abs_diff == pytest.approx(0.05)
