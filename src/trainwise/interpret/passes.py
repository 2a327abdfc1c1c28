"""The one streaming pass: every batch of a dataset through the model once, in eval mode and
without gradients, into the bounded accumulators of stream.py and torchmetrics' count-based
metrics (confusion matrix, per-class precision/recall/F1). Nothing per sample is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import classification as tmc

from trainwise.interpret.activations import ActivationSample
from trainwise.interpret.losses import PerSampleLoss
from trainwise.interpret.stream import CalibrationBins, Residuals, TopLosses
from trainwise.loss_kinds import IGNORE_INDEX
from trainwise.spec import Setup, without_target

CLASS_TASKS = ("classification", "segmentation")


@dataclass
class PassCounts:
    """What the pass kept: each field bounded by k, the classes or the bins, not by n."""

    task: str
    num_classes: int | None
    samples: int = 0
    loss_sum: float = 0.0
    top: TopLosses | None = None
    calibration: CalibrationBins | None = None
    residuals: Residuals | None = None
    metrics: dict[str, torchmetrics.Metric] = field(default_factory=dict)
    activations: ActivationSample | None = None


def batches(setup: Setup, dataset: Dataset, where: str) -> Iterator[tuple[Any, Any, torch.Tensor]]:
    """(input, target, dataset indices (B,)) of `dataset` in order, on the setup's device."""
    loader = DataLoader(dataset, batch_size=setup.effective_batch_size, shuffle=False,
                        collate_fn=setup.collate_fn("val" if where == "val" else "train"))  # fmt: skip
    start = 0
    for i, batch in enumerate(loader):
        x, y = setup.batch_on_device(batch, i, where)
        n = len(y) if isinstance(y, torch.Tensor) and y.dim() else 1
        yield x, y, torch.arange(start, start + n)
        start += n


def _metrics(task: str, num_classes: int | None, device: torch.device) -> dict:
    """torchmetrics' count-based metrics (their states: C×C and 4×C numbers)."""
    if num_classes is None:
        return {}
    if task == "multilabel":
        labels = {"num_labels": num_classes, "average": None}
        metrics = {
            "precision": tmc.MultilabelPrecision(**labels),
            "recall": tmc.MultilabelRecall(**labels),
            "f1": tmc.MultilabelF1Score(**labels),
            "support": tmc.MultilabelStatScores(**labels),
        }
        return {name: metric.to(device) for name, metric in metrics.items()}
    if task not in CLASS_TASKS or num_classes < 2:
        return {}
    common = {"num_classes": num_classes, "ignore_index": IGNORE_INDEX}
    metrics = {
        "confusion": tmc.MulticlassConfusionMatrix(**common),
        "precision": tmc.MulticlassPrecision(average=None, **common),
        "recall": tmc.MulticlassRecall(average=None, **common),
        "f1": tmc.MulticlassF1Score(average=None, **common),
        "support": tmc.MulticlassStatScores(average=None, **common),
    }
    return {name: metric.to(device) for name, metric in metrics.items()}


def probabilities(prediction: torch.Tensor, task: str, output_form: str) -> torch.Tensor:
    """Class probabilities of a prediction along dim 1 (sigmoid per label for multilabel),
    taking the output as it is when it already is probabilities (or their logarithm)."""
    prediction = prediction.detach().float()
    if output_form == "probabilities":
        return prediction
    if output_form == "log-probabilities":
        return prediction.exp()
    if task == "multilabel":
        return prediction.sigmoid()
    return prediction.softmax(dim=1)


@torch.no_grad()
def stream(setup: Setup, model: nn.Module, data: Iterator, loss_fn: PerSampleLoss, task: str,
           num_classes: int | None, output_form: str, k: int,
           activation_layers: dict[str, nn.Module] | None = None) -> PassCounts:  # fmt: skip
    """One pass of `data` (from `batches`) through `model` into bounded counts."""
    counts = PassCounts(task, num_classes, top=TopLosses(k))
    counts.metrics = _metrics(task, num_classes, setup.torch_device)
    if task == "regression":
        counts.residuals = Residuals()
    else:
        counts.calibration = CalibrationBins()
    was = model.training
    model.eval()
    sample = ActivationSample(activation_layers or {})
    try:
        with sample:
            for x, y, indices in data:
                prediction = setup.predict(model, without_target(x))
                if not isinstance(prediction, torch.Tensor):
                    continue
                _update(counts, prediction, y, indices, loss_fn, output_form)
    finally:
        model.train(was)
    counts.activations = sample
    return counts


def _update(counts: PassCounts, prediction: torch.Tensor, y: Any, indices: torch.Tensor,
            loss_fn: PerSampleLoss, output_form: str) -> None:  # fmt: skip
    losses = loss_fn(prediction, y).detach().float()  # (B,)
    counts.samples += len(indices)
    counts.loss_sum += float(losses.nansum())
    task = counts.task
    if task == "regression":
        _update_regression(counts, prediction, y, indices, losses)
        return
    probs = probabilities(prediction, task, output_form)
    if task == "multilabel":
        _update_multilabel(counts, probs, y, indices, losses)
        return
    confidence, predicted = probs.max(dim=1)  # (B,) or (B, H, W) for segmentation
    target = y.long()
    for metric in counts.metrics.values():
        metric.update(predicted, target)
    valid = target != IGNORE_INDEX
    counts.calibration.update(confidence[valid], (predicted == target)[valid])
    if task == "segmentation":  # one number per image: the mean over its pixels
        counts.top.update(losses, indices, None, None, confidence.flatten(1).mean(dim=1))
    else:
        counts.top.update(losses, indices, target, predicted, confidence)


def _update_multilabel(counts: PassCounts, probs: torch.Tensor, y: Any, indices: torch.Tensor,
                       losses: torch.Tensor) -> None:  # fmt: skip
    target = y.long()
    for metric in counts.metrics.values():
        metric.update(probs, target)
    predicted = probs > 0.5
    counts.calibration.update(torch.where(predicted, probs, 1 - probs), predicted == target.bool())
    counts.top.update(losses, indices, None, None, None)


def _update_regression(counts: PassCounts, prediction: torch.Tensor, y: Any,
                       indices: torch.Tensor, losses: torch.Tensor) -> None:  # fmt: skip
    if not isinstance(y, torch.Tensor) or prediction.numel() != y.numel():
        counts.top.update(losses, indices, None, None, None)
        return
    counts.residuals.update(prediction, y)
    one_each = prediction.numel() == len(indices)  # one value per sample: shown in the table
    label = y.reshape(-1).float() if one_each else None
    pred = prediction.reshape(-1).float() if one_each else None
    counts.top.update(losses, indices, label, pred, None)
