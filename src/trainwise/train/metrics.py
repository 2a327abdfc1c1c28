"""Validation metrics of each task, from torchmetrics, named as torchmetrics names them.

classification: accuracy, f1 (macro), ece (expected calibration error, 15 bins)
multilabel:     accuracy, f1 (macro over labels)
segmentation:   accuracy (per pixel), iou (macro Jaccard)
regression:     mae, r2
The loss is averaged over samples alongside. `fit` prefixes every name with "val_".
"""

from __future__ import annotations

from typing import Any

import torch
import torchmetrics
from torchmetrics import classification as tmc

from trainwise.loss_kinds import IGNORE_INDEX

ECE_BINS = 15  # torchmetrics' default, and the reliability diagram's


class TaskMetrics:
    """Streams predictions and targets of one validation pass; `compute()` gives the numbers.

    prediction: (N, C, ...) logits for classification/segmentation, (N, L) for multilabel,
    (N, ...) for regression; target: class indices (N, ...), 0/1 labels (N, L), or values."""

    def __init__(
        self, task: str, num_classes: int | None, device: torch.device, checked: bool = True
    ) -> None:
        """checked=False skips torchmetrics' argument checks (validate_args): for the many
        one-batch passes of a run, on batches the whole-set pass has checked already."""
        self.task = task
        self.metrics: dict[str, torchmetrics.Metric] = _metrics_of(task, num_classes, checked)
        for metric in self.metrics.values():
            metric.to(device)
        self.loss_sum, self.count = 0.0, 0

    def reset(self) -> None:
        """Empty, for the next pass (building the torchmetrics objects costs ~2 ms: fit reuses
        one TaskMetrics for its random validation batches)."""
        for metric in self.metrics.values():
            metric.reset()
        self.loss_sum, self.count = 0.0, 0

    def update(self, prediction: Any, target: Any, loss: float) -> None:
        n = len(target) if isinstance(target, torch.Tensor) and target.dim() else 1
        self.loss_sum += loss * n
        self.count += n
        if not self.metrics or not isinstance(prediction, torch.Tensor):
            return
        if not isinstance(target, torch.Tensor):
            return
        prediction = prediction.detach().float()
        if self.task == "regression":
            prediction, target = prediction.reshape(-1), target.detach().float().reshape(-1)
            if prediction.shape != target.shape:
                return  # outputs and targets of different sizes: output-size-mismatch's business
        elif self.task == "multilabel":
            target = target.long()
        for metric in self.metrics.values():
            metric.update(prediction, target)

    def compute(self) -> dict[str, float]:
        values = {"loss": self.loss_sum / max(self.count, 1)}
        for name, metric in self.metrics.items():
            try:
                values[name] = float(metric.compute())
            except Exception:  # e.g. R² of fewer than two samples
                continue
        return values


def _metrics_of(
    task: str, num_classes: int | None, checked: bool
) -> dict[str, torchmetrics.Metric]:
    if task == "regression":
        return {"mae": torchmetrics.MeanAbsoluteError(), "r2": torchmetrics.R2Score()}
    if num_classes is None or num_classes < 1:
        return {}
    if task == "multilabel":
        labels = {"num_labels": num_classes, "validate_args": checked}
        return {
            "accuracy": tmc.MultilabelAccuracy(**labels),
            "f1": tmc.MultilabelF1Score(average="macro", **labels),
        }
    if num_classes < 2:
        return {}
    common = {"num_classes": num_classes, "ignore_index": IGNORE_INDEX, "validate_args": checked}
    if task == "segmentation":
        return {
            "accuracy": tmc.MulticlassAccuracy(average="micro", **common),
            "iou": tmc.MulticlassJaccardIndex(average="macro", **common),
        }
    return {
        "accuracy": tmc.MulticlassAccuracy(average="micro", **common),
        "f1": tmc.MulticlassF1Score(average="macro", **common),
        "ece": tmc.MulticlassCalibrationError(n_bins=ECE_BINS, **common),
    }
