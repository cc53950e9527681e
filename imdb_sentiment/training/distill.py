"""Knowledge distillation: the loss, the rows that carry the teacher's logits, the Trainer.

Loss = alpha * CE(labels) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
(Hinton et al., 2015; T^2 keeps the soft term's gradients on the scale of the hard term's).
The teacher's logits travel with each training row to the collator, which stacks them into
``teacher_logits``; :class:`DistillationTrainer`'s ``compute_loss`` takes them out before the
model is called, so the model never sees them. Evaluation batches carry none and score plain
cross-entropy.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

TEACHER_KEY = "teacher_logits"


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """``alpha`` * cross-entropy + (1 - ``alpha``) * T^2 * KL(teacher || student) at T, in fp32."""
    import torch.nn.functional as F

    s, t = student.float(), teacher.float()
    hard = F.cross_entropy(s, labels)
    soft = F.kl_div(
        F.log_softmax(s / temperature, dim=-1),
        F.log_softmax(t / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * hard + (1 - alpha) * temperature**2 * soft


class WithTeacherLogits:
    """Training rows (a map-style dataset of dicts) with the teacher's logits of each row."""

    def __init__(self, rows: Any, logits: np.ndarray) -> None:
        if len(rows) != len(logits):
            raise ValueError(f"{len(rows)} rows but {len(logits)} teacher logits")
        self.rows, self.logits = rows, logits

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.rows[i], TEACHER_KEY: self.logits[i].tolist()}


class TeacherCollator:
    """Wraps a collator: pads as it does, and stacks the rows' teacher logits beside."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        teacher = [f.pop(TEACHER_KEY) for f in features if TEACHER_KEY in f]
        batch = self.base(features)
        if teacher:
            batch[TEACHER_KEY] = torch.tensor(teacher, dtype=torch.float32)
        return batch


@cache
def distillation_trainer() -> type:
    """``transformers.Trainer`` with the distillation loss (built on first use, so importing
    this module does not import transformers)."""
    from transformers import Trainer

    class DistillationTrainer(Trainer):
        """Trainer whose training loss mixes the labels with the teacher's soft targets."""

        def __init__(self, *args: Any, alpha: float, temperature: float, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.alpha, self.temperature = alpha, temperature
            # The loss is a batch mean: Trainer must scale it for gradient accumulation itself.
            self.model_accepts_loss_kwargs = False

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            columns: list[str] = list(self._signature_columns or [])
            if TEACHER_KEY not in columns:  # kept for our collator, which takes them out
                self._signature_columns = [*columns, TEACHER_KEY]  # type: ignore[assignment]

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            teacher = inputs.pop(TEACHER_KEY, None)
            if teacher is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = distillation_loss(
                outputs.logits,
                teacher.to(outputs.logits.device),
                labels,
                self.alpha,
                self.temperature,
            )
            return (loss, outputs) if return_outputs else loss

    return DistillationTrainer
