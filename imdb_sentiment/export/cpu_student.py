"""``export RUN --format cpu-student --student STUDENT``: attach a distilled student to a run.

The student must have been distilled from RUN (``train --distill-from RUN``), read reviews the
same way (tokenizer, maximum length, truncation), and have lost at most
:data:`~imdb_sentiment.inference.cpu_student.MAX_STUDENT_DROP` of validation accuracy against RUN
on the same reviews, as ``train`` measured and wrote in the student's ``metrics.json``. Then its
model folder is copied into ``RUN/model/cpu_student/`` with a record of where it came from, and
``predict``/``serve --precision auto`` run it on CPUs without native bf16
(:mod:`imdb_sentiment.inference.cpu_student`). A refused student writes nothing; a student
attached again replaces the old one only once the new copy is complete.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imdb_sentiment.atomic import write_json
from imdb_sentiment.data.files import file_sha256
from imdb_sentiment.errors import ConfigError, ModelError
from imdb_sentiment.inference.cpu_student import MAX_STUDENT_DROP, RECORD, STUDENT_DIR, summary
from imdb_sentiment.model_card import read_json_object, write_model_card
from imdb_sentiment.modeling.loading import InferenceSettings, find_model_dir
from imdb_sentiment.runs import run_of

if TYPE_CHECKING:
    from imdb_sentiment.export.onnx import ExportResult, Log

READS_ALIKE = ("max_length", "truncation", "head_tokens")
"""Inference settings a student must share with the model it stands in for."""


def _student_block(student_run: Path) -> dict[str, Any]:
    """The ``student`` block of a student run's ``metrics.json``; ConfigError when absent."""
    metrics = read_json_object(student_run / "metrics.json").get("metrics") or {}
    block = metrics.get("student")
    if not isinstance(block, dict) or not block.get("teacher_run"):
        raise ConfigError(
            f"{student_run} is not a distilled student (its metrics.json has no student "
            "block); make one with: imdb-sentiment train --distill-from RUN --layers N"
        )
    return block


def _check_teacher(block: dict[str, Any], teacher_run: Path, student_run: Path) -> None:
    recorded = Path(str(block["teacher_run"]))
    if recorded.resolve() != teacher_run.resolve():
        raise ConfigError(
            f"{student_run} was distilled from {recorded}, not {teacher_run}: attach a student "
            "to the run it was distilled from"
        )


def _check_reading(teacher_dir: Path, student_dir: Path) -> None:
    """Same tokenizer files and the same cut, or the student reads other text."""
    ours, theirs = InferenceSettings.load(teacher_dir), InferenceSettings.load(student_dir)
    for name in READS_ALIKE:
        if getattr(ours, name) != getattr(theirs, name):
            raise ConfigError(
                f"the student reads reviews with {name} {getattr(theirs, name)!r}, the model "
                f"with {getattr(ours, name)!r}; it cannot stand in for it"
            )
    for name in ("tokenizer.json", "vocab.txt"):
        a, b = teacher_dir / name, student_dir / name
        if a.is_file() != b.is_file() or (a.is_file() and file_sha256(a) != file_sha256(b)):
            raise ConfigError(f"the student's {name} differs from the model's")


def _check_cost(block: dict[str, Any], student_run: Path) -> dict[str, Any]:
    """The student's comparison with its teacher, refused when it loses too much."""
    comparison = block.get("comparison") or {}
    diff = (comparison.get("accuracy_difference") or {}).get("difference")
    if not comparison.get("compared") or diff is None:
        raise ModelError(
            f"{student_run}'s metrics.json has no comparison with its teacher on the same "
            "validation reviews (was its teacher's validation split readable?); nothing was "
            "written"
        )
    if diff < -MAX_STUDENT_DROP:
        raise ModelError(
            f"export refused: the student scores {-100 * diff:.2f} points below the model on "
            f"{comparison.get('reviews', 0):,} validation reviews (at most "
            f"{100 * MAX_STUDENT_DROP:.1f}); nothing was written"
        )
    return comparison


def _copy_in(student_dir: Path, teacher_dir: Path, record: dict[str, Any]) -> list[Path]:
    """Copy the student's files and record into the model folder; replace an old one last."""
    target = teacher_dir / STUDENT_DIR
    staging = Path(tempfile.mkdtemp(prefix=f".{STUDENT_DIR}.", dir=teacher_dir))
    old: Path | None = None
    try:
        for path in sorted(student_dir.iterdir()):
            if path.is_file():
                shutil.copy2(path, staging / path.name)
        write_json(staging / RECORD, record)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{STUDENT_DIR}.old.", dir=teacher_dir))
            target.rename(old / STUDENT_DIR)
        staging.rename(target)
    except BaseException:
        if old is not None and not target.exists():  # put the attached student back
            (old / STUDENT_DIR).rename(target)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return sorted(target / p.name for p in target.iterdir())


def export_cpu_student(run: str | Path, student: str | Path, *, log: Log = print) -> ExportResult:
    """Check ``student`` against the model of ``run`` and attach it; ExportResult of the copy."""
    from imdb_sentiment.export.onnx import ExportResult

    teacher_dir = find_model_dir(run)
    student_dir = find_model_dir(student)
    teacher_run, student_run = run_of(teacher_dir), run_of(student_dir)
    block = _student_block(student_run)
    _check_teacher(block, teacher_run, student_run)
    _check_reading(teacher_dir, student_dir)
    comparison = _check_cost(block, student_run)
    record = {
        "student_run": str(student_run.resolve()),
        "layers": block.get("layers"),
        "reviews": comparison.get("reviews"),
        "teacher_accuracy": comparison.get("teacher_accuracy"),
        "student_accuracy": comparison.get("student_accuracy"),
        "agreement": comparison.get("agreement"),
        "accuracy_difference": comparison.get("accuracy_difference"),
        "max_drop": MAX_STUDENT_DROP,
        "attached_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    log(f"attaching {student_run}: {summary(record)}")
    files = _copy_in(student_dir, teacher_dir, record)
    write_model_card(teacher_dir, teacher_run if teacher_run != teacher_dir else None)
    return ExportResult(out_dir=teacher_dir / STUDENT_DIR, files=files, source="student")
