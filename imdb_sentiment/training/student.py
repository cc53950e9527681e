"""Students: ``train --layers N`` (fewer encoder layers) and ``train --distill-from RUN``.

:func:`prepare_student` checks a student's settings before a run is claimed, so bad input
leaves nothing behind; :meth:`Student.wire` cuts the model and attaches the teacher's logits;
:meth:`Student.section` is the ``student`` block of ``metrics.json`` (and the model card): the
teacher, the layers kept, alpha and T, and, when the teacher was validated on the same reviews,
its accuracy beside the student's, their label agreement and a paired bootstrap interval of the
difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imdb_sentiment.config import Config
from imdb_sentiment.model_card import read_json_object
from imdb_sentiment.training.teacher import (
    TEACHER_LOGITS,
    Teacher,
    check_tokenizer,
    find_teacher,
    read_as_teacher,
    teacher_logits,
)

if TYPE_CHECKING:
    import pandas as pd

Log = Any


@dataclass
class TrainerParts:
    """What the Trainer is built from; a student changes some of it."""

    model: Any
    rows: Any
    trainer_class: Any
    collator: Any
    kwargs: dict[str, Any] = field(default_factory=dict)


def wire(
    student: Student | None,
    trainer_class: type,
    model: Any,
    rows: Any,
    collator: Any,
    work_dir: Path,
    log: Log,
) -> TrainerParts:
    """The Trainer's parts: as they are for an ordinary run, else as ``student`` wires them."""
    parts = TrainerParts(model, rows, trainer_class, collator)
    return parts if student is None else student.wire(parts, work_dir, log)


def student_metrics(
    student: Student | None, validation: pd.DataFrame, logits: np.ndarray, manifest: dict
) -> dict[str, Any]:
    """``{"student": ...}`` for ``metrics.json``; empty for an ordinary run."""
    return {} if student is None else {"student": student.section(validation, logits, manifest)}


@dataclass
class Student:
    """What makes a run a student, settled before the run is claimed."""

    cfg: Config
    teacher: Teacher | None
    kept: list[int] | None
    total_layers: int | None

    def wire(self, parts: TrainerParts, work_dir: Path, log: Log) -> TrainerParts:
        """Cut the model to the kept layers; give each training row the teacher's logits."""
        if self.cfg.model.layers is not None:
            from imdb_sentiment.training.layers import keep_layers

            self.kept = keep_layers(parts.model, self.cfg.model.layers)
            log(f"student: keeping encoder layers {self.kept} of {self.total_layers}")
        if self.teacher is None:
            return parts
        from imdb_sentiment.training.distill import (
            TeacherCollator,
            WithTeacherLogits,
            distillation_trainer,
        )

        t = self.cfg.training
        logits = teacher_logits(self.teacher, parts.rows, work_dir, t.eval_batch_size, log)
        return TrainerParts(
            parts.model,
            WithTeacherLogits(parts.rows, logits),
            distillation_trainer(),
            TeacherCollator(parts.collator),
            {"alpha": t.distill_alpha, "temperature": t.distill_temperature},
        )

    def section(
        self, validation: pd.DataFrame, logits: np.ndarray, manifest: dict[str, Any]
    ) -> dict[str, Any]:
        """The ``student`` block of ``metrics.json``."""
        t = self.cfg.training
        out: dict[str, Any] = {
            "teacher_run": str(self.teacher.run.resolve()) if self.teacher else None,
            "layers": {"kept": self.kept, "of": self.total_layers} if self.kept else None,
            "distillation": (
                {"alpha": t.distill_alpha, "temperature": t.distill_temperature}
                if self.teacher
                else None
            ),
        }
        if self.teacher is not None:
            out["teacher_logits"] = TEACHER_LOGITS
            out["comparison"] = compare_with_teacher(
                self.teacher.run, validation, _positive(logits), manifest
            )
        return out


def _positive(logits: np.ndarray) -> np.ndarray:
    from imdb_sentiment.metrics.classification import softmax

    return softmax(logits)[:, 1]


def prepare_student(cfg: Config, tokenizer: Any, model_name: str) -> Student | None:
    """Check ``--layers`` and ``--distill-from`` (ConfigError, RunError or ModelError in one
    line) and read as the teacher read; None for an ordinary run."""
    if cfg.model.layers is None and not cfg.training.distill_from:
        return None
    teacher = None
    if cfg.training.distill_from:
        teacher = find_teacher(cfg.training.distill_from)
        read_as_teacher(cfg, teacher)
        check_tokenizer(teacher, tokenizer, cfg.model.name)
    kept: list[int] | None = None
    total: int | None = None
    if cfg.model.layers is not None:
        from imdb_sentiment.training.layers import check_layers

        kept, total = check_layers(model_name, cfg.model.layers)
    return Student(cfg, teacher, kept, total)


def compare_with_teacher(
    teacher_run: Path, validation: pd.DataFrame, positive: np.ndarray, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Teacher vs student on the same validation reviews: accuracies, label agreement and a
    paired bootstrap 95% interval of (student - teacher) accuracy; ``compared: false`` with a
    reason when the teacher was validated on other reviews."""
    import pandas as pd

    from imdb_sentiment.metrics.intervals import paired_accuracy_difference
    from imdb_sentiment.text import predicted_labels

    def validation_hash(m: dict[str, Any]) -> Any:
        return ((m.get("splits") or {}).get("validation") or {}).get("sha256")

    theirs = read_json_object(teacher_run / "data_manifest.json")
    if not theirs or validation_hash(theirs) != validation_hash(manifest):
        return {"compared": False, "reason": "the teacher's validation split is not this run's"}
    try:
        frame = pd.read_parquet(teacher_run / "validation_predictions.parquet")
    except Exception:  # missing or unreadable: the student's own figures still stand
        return {"compared": False, "reason": "the teacher run has no readable predictions"}
    if frame["text"].tolist() != validation["text"].tolist():
        return {"compared": False, "reason": "the teacher was validated on other reviews"}
    labels = validation["label"].to_numpy().astype(int)
    teacher_p = frame["positive_probability"].to_numpy(dtype=float)
    student_labels, teacher_labels = predicted_labels(positive), predicted_labels(teacher_p)
    diff = paired_accuracy_difference(labels, teacher_p, positive)
    return {
        "compared": True,
        "reviews": len(labels),
        "teacher_accuracy": float(np.mean(teacher_labels == labels)),
        "student_accuracy": float(np.mean(student_labels == labels)),
        "agreement": float(np.mean(student_labels == teacher_labels)),
        "accuracy_difference": {
            "difference": diff["difference"],
            "low": diff["low"],
            "high": diff["high"],
            "only_student_right": diff["only_b_right"],
            "only_teacher_right": diff["only_a_right"],
        },
    }
