"""`export --format cpu-student`: a distilled student attached to a run, which predict and serve
run with `--precision auto` on CPUs without native bf16, and nothing else ever does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _serving import wait_ready
from fastapi.testclient import TestClient
from test_distill import invoke, last_line, student_args

from imdb_sentiment.inference import cpu_student
from imdb_sentiment.inference.cpu_student import MAX_STUDENT_DROP, RECORD, STUDENT_DIR
from imdb_sentiment.inference.predictor import Predictor
from imdb_sentiment.serving.app import create_app
from imdb_sentiment.serving.schemas import ServeOptions


@pytest.fixture(scope="module")
def pair(
    trained_run: Path, prepared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A private copy of the tiny run (attaching writes into it) and a 1-layer student of it."""
    root = tmp_path_factory.mktemp("cpu-student")
    teacher = root / "teacher"
    shutil.copytree(trained_run, teacher)
    args = student_args(teacher, prepared_data, root / "runs", "student", "--layers", "1")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return teacher, root / "runs" / "student"


def with_difference(student: Path, dest: Path, difference: float) -> Path:
    """A copy of ``student`` recording ``difference`` as its accuracy minus its teacher's."""
    shutil.copytree(student, dest)
    path = dest / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["metrics"]["student"]["comparison"]["accuracy_difference"]["difference"] = difference
    path.write_text(json.dumps(metrics))
    return dest


def hidden_leftovers(model_dir: Path) -> list[str]:
    return [p.name for p in model_dir.iterdir() if p.name.startswith(f".{STUDENT_DIR}")]


@pytest.fixture()
def attached(pair: tuple[Path, Path], tmp_path: Path) -> Path:
    """The teacher with a student attached (recorded as within the allowed drop)."""
    teacher, student = pair
    ok = with_difference(student, tmp_path / "student", -MAX_STUDENT_DROP / 2)
    shutil.rmtree(teacher / "model" / STUDENT_DIR, ignore_errors=True)
    result = invoke("export", str(teacher), "--format", "cpu-student", "--student", str(ok))
    assert result.exit_code == 0, result.output
    return teacher


def test_attaching_copies_the_student_and_records_its_cost(
    attached: Path, pair: tuple[Path, Path]
) -> None:
    folder = attached / "model" / STUDENT_DIR
    record = json.loads((folder / RECORD).read_text())
    assert record["layers"] == {"kept": [0], "of": 2}
    assert record["accuracy_difference"]["difference"] == -MAX_STUDENT_DROP / 2
    assert record["max_drop"] == MAX_STUDENT_DROP and record["reviews"] > 0
    assert json.loads((folder / "config.json").read_text())["n_layers"] == 1
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert not hidden_leftovers(attached / "model")
    card = (attached / "model" / "README.md").read_text()
    assert "## Student for CPUs without native bf16" in card
    assert "encoder layers [0] of 2, 0.50 points below this model" in card
    # Attaching again replaces the student whole, and leaves nothing behind.
    again = invoke(
        "export", str(attached), "--format", "cpu-student", "--student", record["student_run"]
    )
    assert again.exit_code == 0, again.output
    assert json.loads((folder / RECORD).read_text())["attached_at"]
    assert not hidden_leftovers(attached / "model")


def test_auto_runs_the_student_only_where_bf16_is_not_native(
    attached: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    student_dir = attached / "model" / STUDENT_DIR
    monkeypatch.setattr(cpu_student, "cpu_has_native_bf16", lambda: False)
    p = Predictor.from_path(attached, cpu_student=True)
    assert p.model_dir == student_dir and p.student is not None
    assert p.model is not None and p.model.config.n_layers == 1
    # Asked for a precision, or not asked to (eval, export, drift): the model itself.
    for kwargs in ({"cpu_student": True, "precision": "fp32"}, {}):
        other = Predictor.from_path(attached, **kwargs)
        assert other.model_dir == attached / "model" and other.student is None
    monkeypatch.setattr(cpu_student, "cpu_has_native_bf16", lambda: True)
    assert Predictor.from_path(attached, cpu_student=True).student is None


def test_predict_says_the_student_runs(attached: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu_student, "cpu_has_native_bf16", lambda: False)
    result = invoke("predict", "--model", str(attached), "--json", "a superb film")
    assert result.exit_code == 0, result.output
    assert "running the attached student (1 of 2 layers, 0.50 points below the model" in (
        result.output
    )
    assert "--precision fp32 runs the model itself" in result.output
    fp32 = invoke("predict", "--model", str(attached), "--precision", "fp32", "a superb film")
    assert fp32.exit_code == 0 and "attached student" not in fp32.output


def test_the_server_reports_the_student_in_ready(
    attached: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu_student, "cpu_has_native_bf16", lambda: False)
    opts = ServeOptions(api_key="", drift_window=0)
    with TestClient(create_app(attached, options=opts)) as client:
        ready = wait_ready(client)
        assert ready["cpu_student"].startswith("1 of 2 layers, 0.50 points below the model")
        assert client.post("/predict", json={"text": "a superb film"}).status_code == 200


def test_a_student_that_loses_too_much_is_refused_and_nothing_is_written(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    teacher, student = pair
    shutil.rmtree(teacher / "model" / STUDENT_DIR, ignore_errors=True)
    worse = with_difference(student, tmp_path / "worse", -2 * MAX_STUDENT_DROP)
    result = invoke("export", str(teacher), "--format", "cpu-student", "--student", str(worse))
    assert result.exit_code == 4
    assert "export refused: the student scores 2.00 points below the model" in last_line(result)
    assert not (teacher / "model" / STUDENT_DIR).exists()
    assert not hidden_leftovers(teacher / "model")


def test_bad_students_are_one_line_errors(
    pair: tuple[Path, Path], trained_run: Path, tmp_path: Path
) -> None:
    teacher, student = pair
    cases = [
        # not a student at all
        (["--student", str(trained_run)], "is not a distilled student"),
        # flags that do not go together
        ([], "--format cpu-student needs --student"),
    ]
    for extra, reason in cases:
        result = invoke("export", str(teacher), "--format", "cpu-student", *extra)
        assert result.exit_code == 2, result.output
        assert reason in last_line(result)
    onnx = invoke("export", str(teacher), "--student", str(student))
    assert onnx.exit_code == 2 and "--student goes with --format cpu-student" in last_line(onnx)
    # distilled from another run than the one it is attached to
    other = tmp_path / "other"
    shutil.copytree(teacher, other)
    wrong = invoke("export", str(other), "--format", "cpu-student", "--student", str(student))
    assert wrong.exit_code == 2 and "was distilled from" in last_line(wrong)
    assert not (other / "model" / STUDENT_DIR).exists()
