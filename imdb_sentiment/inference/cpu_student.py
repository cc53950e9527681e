"""A distilled student attached to a run, served where bf16 is not native: ``--precision auto``.

Without AMX or AVX512-BF16 the full model runs in fp32, which is about as fast as the
``transformers`` pipeline (docs/INFERENCE.md). A student distilled from the model
(``train --distill-from RUN --layers N``) is several times faster there. ``imdb-sentiment export
RUN --format cpu-student --student STUDENT`` checks it against :data:`MAX_STUDENT_DROP` and copies
it into ``RUN/model/cpu_student/`` (:mod:`imdb_sentiment.export.cpu_student`). From then on
``predict`` and ``serve`` with ``--precision auto`` run that student on CPUs without native bf16,
and say so; any explicit precision, any other CPU or a GPU, and ``eval``, always run the model
itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imdb_sentiment.hardware import cpu_has_native_bf16
from imdb_sentiment.model_card import CPU_STUDENT_RECORD, read_json_object

STUDENT_DIR = CPU_STUDENT_RECORD.parent.as_posix()
"""Folder, inside a saved model, that holds the attached student's model."""
RECORD = CPU_STUDENT_RECORD.name
"""File, inside :data:`STUDENT_DIR`, recording where the student came from and what it costs."""
MAX_STUDENT_DROP = 0.01
"""Most validation accuracy (a fraction: 0.01 is one point) a student may lose against the model
it replaces, as measured by ``train --distill-from`` on the model's validation reviews."""


def attached_student(model_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The attached student's folder and record, or None when the model has none."""
    folder = Path(model_dir) / STUDENT_DIR
    record = read_json_object(folder / RECORD)
    if not record or not (folder / "config.json").is_file():
        return None
    return folder, record


def runs_student(precision: str, device_type: str) -> bool:
    """Whether ``precision`` on ``device_type`` means the attached student (when there is one)."""
    return precision == "auto" and device_type == "cpu" and not cpu_has_native_bf16()


def summary(record: dict[str, Any]) -> str:
    """What the student is and costs: ``2 of 6 layers, 0.44 points below the model on ...``."""
    layers = record.get("layers") or {}
    kept, of = len(layers.get("kept") or []), layers.get("of")
    shape = f"{kept} of {of} layers" if kept and of else "a distilled student"
    diff = (record.get("accuracy_difference") or {}).get("difference")
    if diff is None or not record.get("reviews"):
        return shape
    return (
        f"{shape}, {-100 * diff:.2f} points below the model on "
        f"{record['reviews']:,} validation reviews"
    )


def describe(record: dict[str, Any]) -> str:
    """One line for predict and serve: the student runs instead of the model, and why."""
    return (
        f"this CPU has no native bf16: running the attached student ({summary(record)}); "
        "--precision fp32 runs the model itself"
    )
