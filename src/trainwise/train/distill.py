"""tw.DistillationLoss: knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the
Knowledge in a Neural Network").

The student learns from the teacher's softened class probabilities as well as from the labels:

    loss = alpha * T^2 * KL(p_teacher^T || p_student^T) + (1 - alpha) * CE(student_logits, y)

where p^T = softmax(logits / T). A temperature T > 1 spreads the teacher's probability over the
wrong classes, which carries what it knows about their similarity; the T^2 factor keeps the soft
term's gradients at the same scale as the hard term's when T changes (the soft gradients scale
as 1/T^2; section 2 of the paper). KL and the paper's cross-entropy with soft targets differ by
the teacher's entropy, a constant for the student, so their gradients are the same.

The teacher runs in eval mode without gradients, on the student's device (moved there once).
Three ways to use it:
    loss = distill(student_logits, y, x)              # your own loop: runs the teacher on x
    loss = distill.mix(student_logits, teacher_logits, y)   # teacher logits computed already
    tw.Setup(..., loss=distill.training_step())       # trainwise's Setup: (input, target) batches
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainwise.errors import SetupError
from trainwise.steps import TrainingStep

# Hinton et al. tried temperatures from 2 to 20 (lower ones for small students); 4 is a common
# middle. They found the best results with a considerably lower weight on the hard term;
# alpha 0.9 is the usual way of saying so.
DEFAULT_T = 4.0
DEFAULT_ALPHA = 0.9


class DistillationLoss:
    """The KL/CE mix of the module doc, for single-label classification logits (N, C)."""

    def __init__(self, teacher: nn.Module, T: float = DEFAULT_T, alpha: float = DEFAULT_ALPHA):
        if not isinstance(teacher, nn.Module):
            raise SetupError(
                f"DistillationLoss(teacher=...): expected an nn.Module, got {type(teacher).__name__}"
            )
        if not (isinstance(T, (int, float)) and not isinstance(T, bool) and T > 0):
            raise SetupError(f"DistillationLoss(T={T!r}): expected a positive temperature")
        if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
            raise SetupError(f"DistillationLoss(alpha={alpha!r}): expected a number in [0, 1]")
        self.teacher, self.T, self.alpha = teacher, float(T), float(alpha)

    def __call__(self, student_logits: torch.Tensor, y: torch.Tensor, x: Any) -> torch.Tensor:
        """The loss of `student_logits` (N, C) with labels y (N,), the teacher run on input x."""
        return self.mix(student_logits, self.teacher_logits(x, student_logits.device), y)

    def mix(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        if student_logits.shape != teacher_logits.shape:
            raise SetupError(
                f"DistillationLoss: the student's logits have shape {tuple(student_logits.shape)}"
                f", the teacher's {tuple(teacher_logits.shape)}; expected the same classes"
            )
        T = self.T
        soft = F.kl_div(
            F.log_softmax(student_logits / T, dim=1),
            F.log_softmax(teacher_logits.detach() / T, dim=1),
            reduction="batchmean",  # the sum over classes, averaged over samples: true KL
            log_target=True,
        )
        hard = F.cross_entropy(student_logits, y)
        return self.alpha * T * T * soft + (1 - self.alpha) * hard

    def teacher_logits(self, x: Any, device: torch.device) -> torch.Tensor:
        if next(self.teacher.parameters(), torch.empty(0, device=device)).device != device:
            self.teacher.to(device)
        self.teacher.eval()  # every call: a loop's model.train() may have reached it
        with torch.no_grad():
            return self.teacher(x)

    def training_step(self) -> TrainingStep:
        """A tw.TrainingStep for `Setup(loss=...)`: on an (input, target) batch, the student's
        logits model(input) and this loss."""
        return TrainingStep(self._step, name=repr(self))

    def _step(self, model: nn.Module, batch: Any) -> torch.Tensor:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise SetupError(
                f"{self!r}.training_step(): expected (input, target) batches, got a "
                f"{type(batch).__name__}; call the loss in your own step as loss(logits, y, x)"
            )
        x, y = batch
        return self(model(x), y, x)

    def __repr__(self) -> str:
        return f"DistillationLoss(T={self.T:g}, alpha={self.alpha:g})"
