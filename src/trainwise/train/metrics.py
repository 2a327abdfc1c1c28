"""Validation metrics of each task, from torchmetrics, named as torchmetrics names them.

classification: accuracy, f1 (macro), ece (expected calibration error, 15 bins)
multilabel:     accuracy, f1 (macro over labels)
segmentation:   accuracy (per pixel), iou (macro Jaccard)
regression:     mae, r2
The loss is averaged over samples alongside. `fit` prefixes every name with "val_".

`PointMetrics` is the cheap kind for fit's random one-batch validation points: the loss and the
task's headline metric only (accuracy, or MAE for regression).
"""

from __future__ import annotations

from typing import Any

import torch
import torchmetrics
from torchmetrics import classification as tmc
from torchmetrics.functional import mean_absolute_error
from torchmetrics.functional.classification import multiclass_accuracy, multilabel_accuracy

from trainwise.loss_kinds import IGNORE_INDEX

ECE_BINS = 15  # torchmetrics' default, and the reliability diagram's


class TaskMetrics:
    """Streams predictions and targets of one validation pass; `compute()` gives the numbers.

    prediction: (N, C, ...) logits for classification/segmentation, (N, L) for multilabel,
    (N, ...) for regression; target: class indices (N, ...), 0/1 labels (N, L), or values."""

    def __init__(
        self, task: str, num_classes: int | None, device: torch.device, sharded: bool = False
    ) -> None:
        """sharded: this process saw its share of the set (fit on several processes); the
        loss sums are reduced across processes. torchmetrics reduces its own states whenever
        a process group is up."""
        self.task = task
        self.device, self.sharded = device, sharded
        self.metrics: dict[str, torchmetrics.Metric] = _metrics_of(task, num_classes)
        for metric in self.metrics.values():
            metric.to(device)
        self.loss_sum, self.count = 0.0, 0

    def reset(self) -> None:
        """Empty, for the next pass."""
        for metric in self.metrics.values():
            metric.reset()
        self.loss_sum, self.count = 0.0, 0

    def update(self, prediction: Any, target: Any, loss: torch.Tensor | float) -> None:
        """loss: the batch's mean loss; a 0-d tensor is summed on its device, read once by
        compute (a float() per batch would wait for the GPU each time)."""
        n = len(target) if isinstance(target, torch.Tensor) and target.dim() else 1
        self.loss_sum = self.loss_sum + _detached(loss) * n
        self.count += n
        if not self.metrics:
            return
        pair = _comparable(self.task, prediction, target)
        if pair is not None:
            for metric in self.metrics.values():
                metric.update(*pair)

    def compute(self) -> dict[str, float]:
        loss_sum, count = float(self.loss_sum), self.count
        if self.sharded:  # (2,) float64: the sums of every process (a collective)
            both = torch.tensor([loss_sum, count], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(both)
            loss_sum, count = both.tolist()
        values = {"loss": loss_sum / max(count, 1)}
        for name, metric in self.metrics.items():
            try:
                values[name] = float(metric.compute())
            except Exception:  # e.g. R² of fewer than two samples
                continue
        return values


class PointMetrics:
    """The loss and the headline metric of fit's one-batch validation points (the curve the
    watch judges), from torchmetrics' functional API. torchmetrics' Metric objects cost ~1.9 ms
    per one-batch pass for accuracy, F1 and ECE (reset, update, compute), more than a small
    model's training step; the functional accuracy ~0.2 ms. One batch's macro F1 or 15-bin
    ECE is noise: those come from the whole-set passes (TaskMetrics). Several batches give
    the sample-weighted mean."""

    def __init__(self, task: str, num_classes: int | None) -> None:
        self.task = task
        self.num_classes = num_classes
        self.name, self._headline = _headline_of(task, num_classes)
        self.loss_sum, self.count, self.metric_sum, self.metric_count = 0.0, 0, 0.0, 0

    def reset(self) -> None:
        self.loss_sum, self.count, self.metric_sum, self.metric_count = 0.0, 0, 0.0, 0

    def update(self, prediction: Any, target: Any, loss: torch.Tensor | float) -> None:
        n = len(target) if isinstance(target, torch.Tensor) and target.dim() else 1
        self.loss_sum = self.loss_sum + _detached(loss) * n
        self.count += n
        if self._headline is None:
            return
        pair = _comparable(self.task, prediction, target)
        if pair is not None:
            value = float(self._headline(*pair))
            if value == value:  # NaN: every target of the batch ignored (ignore_index)
                self.metric_sum += value * n
                self.metric_count += n

    def compute(self) -> dict[str, float]:
        values = {"loss": float(self.loss_sum) / max(self.count, 1)}
        if self.metric_count:
            values[self.name] = self.metric_sum / self.metric_count
        return values


def _detached(loss: torch.Tensor | float) -> torch.Tensor | float:
    """A loss to sum: a tensor without its graph, in float64 (sums of many batches) where the
    device has it (Apple's MPS has not), or the number as given."""
    if not isinstance(loss, torch.Tensor):
        return loss
    return loss.detach().to(torch.float32 if loss.device.type == "mps" else torch.float64)


def _headline_of(task: str, num_classes: int | None) -> tuple[str, Any]:
    """(name, function(prediction, target) -> 0-d tensor) of the task's headline metric, the
    same quantity TaskMetrics names so (None when TaskMetrics has no metric either)."""
    if task == "regression":
        return "mae", mean_absolute_error
    if num_classes is None or num_classes < 1 or (task != "multilabel" and num_classes < 2):
        return "", None
    if task == "multilabel":
        return "accuracy", lambda p, t: multilabel_accuracy(
            p, t, num_classes, validate_args=False
        )
    return "accuracy", lambda p, t: _top1_accuracy(p, t) if _indices_of(p, t) else (
        multiclass_accuracy(  # per sample, or per pixel
            p, t, num_classes, average="micro", ignore_index=IGNORE_INDEX, validate_args=False
        )
    )


def _indices_of(prediction: torch.Tensor, target: torch.Tensor) -> bool:
    """The target holds a class index per prediction row (or pixel): (N, ...) for (N, C, ...)."""
    return (
        not target.dtype.is_floating_point
        and prediction.dim() == target.dim() + 1
        and prediction.shape[:1] + prediction.shape[2:] == target.shape
    )


def _top1_accuracy(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """torchmetrics' micro multiclass accuracy (ignore_index honoured) of (N, C, ...) logits
    and (N, ...) indices, in four tensor ops: its functional form costs ~0.2 ms a batch inside
    fit (the shape checks and the stat-score reduction it shares with the other metrics), a
    fifth of a small model's step at each validation point. NaN when every target is ignored.
    tests/train/test_pieces.py holds it equal to torchmetrics'."""
    kept = target != IGNORE_INDEX
    correct = (prediction.argmax(1) == target) & kept
    return correct.sum() / kept.sum()


def _comparable(task: str, prediction: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(prediction, target) as the metrics take them; None when there is nothing to compare
    (not tensors, or regression outputs and targets of different sizes: output-size-mismatch's
    business)."""
    if not (isinstance(prediction, torch.Tensor) and isinstance(target, torch.Tensor)):
        return None
    prediction = prediction.detach().float()
    if task == "regression":
        prediction, target = prediction.reshape(-1), target.detach().float().reshape(-1)
        return (prediction, target) if prediction.shape == target.shape else None
    if task == "multilabel":
        target = target.long()
    return prediction, target


def _metrics_of(task: str, num_classes: int | None) -> dict[str, torchmetrics.Metric]:
    if task == "regression":
        return {"mae": torchmetrics.MeanAbsoluteError(), "r2": torchmetrics.R2Score()}
    if num_classes is None or num_classes < 1:
        return {}
    if task == "multilabel":
        labels = {"num_labels": num_classes}
        return {
            "accuracy": tmc.MultilabelAccuracy(**labels),
            "f1": tmc.MultilabelF1Score(average="macro", **labels),
        }
    if num_classes < 2:
        return {}
    common = {"num_classes": num_classes, "ignore_index": IGNORE_INDEX}
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
