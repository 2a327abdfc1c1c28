"""What one pass over a dataset keeps: bounded in the number of samples.

A pass sees each batch once and keeps O(k + C² + bins) numbers, never every prediction
(fastai's ClassificationInterpretation keeps all of them, and runs out of memory on large
sets):

    TopLosses        the k largest per-sample losses (a min-heap of k entries)
    CalibrationBins  count, summed confidence and summed correctness per confidence bin
    Residuals        regression: exact running moments of the residual, and a reservoir
                     sample of (target, prediction) pairs of bounded size for the plot

The confusion matrix and per-class precision/recall/F1 are torchmetrics' own metrics, whose
states are C×C and 4×C counts (streamed in interpret/passes.py). torchmetrics'
MulticlassCalibrationError is not used for the pass: it keeps every sample's confidence in a
list state, so its memory grows with the data set; the bins here are its binning (the same
edges, `bucketize(right=True) - 1`), and a test checks the ECE against it on a small set.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import torch

ECE_BINS = 15  # torchmetrics' default n_bins, also fit's val_ece
RESERVOIR = 4096  # (target, prediction) pairs kept for a regression's residual plot


@dataclass(frozen=True)
class TopLoss:
    """One of the highest-loss samples. label/pred: class indices (classification), values
    (regression), None (segmentation: maps, re-read from the dataset to draw); prob: the
    probability of the predicted class (the mean over pixels for segmentation)."""

    index: int
    label: int | float | None
    pred: int | float | None
    prob: float | None
    loss: float

    def to_dict(self) -> dict:
        return {"index": self.index, "label": self.label, "pred": self.pred, "prob": self.prob,
                "loss": self.loss}  # fmt: skip


class TopLosses:
    """The k samples with the largest loss seen so far: a min-heap of (loss, index, ...), so
    each new sample costs O(log k) and memory is O(k) whatever the data set's size."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.heap: list[tuple[float, int, TopLoss]] = []

    def update(self, losses: torch.Tensor, indices: torch.Tensor, labels, preds, probs) -> None:
        """losses, indices: (B,); labels, preds, probs: (B,) tensors or None. Only a batch's own
        top k can enter the heap, so only those are moved to the host (one small copy)."""
        if self.k <= 0 or losses.numel() == 0:
            return
        take = min(self.k, losses.numel())
        top = torch.topk(losses.detach().float(), take).indices
        rows = zip(*(_host(t, top) for t in (losses, indices, labels, preds, probs)), strict=True)
        for loss, index, label, pred, prob in rows:
            if not math.isfinite(loss):
                loss = math.inf  # a NaN loss is the worst loss of all
            entry = (loss, index, TopLoss(int(index), label, pred, prob, float(loss)))
            if len(self.heap) < self.k:
                heapq.heappush(self.heap, entry)
            elif entry[:2] > self.heap[0][:2]:
                heapq.heapreplace(self.heap, entry)

    def largest(self, k: int | None = None) -> list[TopLoss]:
        """The largest losses, largest first (ties: the higher index first)."""
        ordered = [e[2] for e in sorted(self.heap, key=lambda e: e[:2], reverse=True)]
        return ordered if k is None else ordered[:k]


def _host(values, rows: torch.Tensor) -> list:
    """values[rows] as Python numbers (indices live on the host, losses on the model's device)."""
    if values is None:
        return [None] * len(rows)
    return values.detach()[rows.to(values.device)].tolist()


@dataclass(frozen=True)
class CalibrationBin:
    """One confidence bin: [lower, upper), its sample count, mean confidence and accuracy
    (None when empty)."""

    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None

    def to_dict(self) -> dict:
        return {"lower": self.lower, "upper": self.upper, "count": self.count,
                "confidence": self.confidence, "accuracy": self.accuracy}  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error (the L1 one: Σ_b |accuracy_b − confidence_b| · n_b / n) and
    the reliability diagram's bins."""

    ece: float
    bins: list[CalibrationBin]

    def to_dict(self) -> dict:
        return {"ece": self.ece, "bins": [b.to_dict() for b in self.bins]}


class CalibrationBins:
    """Per-bin counts of a stream of (confidence, correct) pairs: 3 × n_bins numbers."""

    def __init__(self, n_bins: int = ECE_BINS) -> None:
        self.n_bins = n_bins
        self.edges = torch.linspace(0, 1, n_bins + 1)  # as torchmetrics' _binning_bucketize
        self.count = torch.zeros(n_bins, dtype=torch.float64)
        self.confidence = torch.zeros(n_bins, dtype=torch.float64)
        self.correct = torch.zeros(n_bins, dtype=torch.float64)

    def update(self, confidence: torch.Tensor, correct: torch.Tensor) -> None:
        """confidence: (N,) the predicted class's probability; correct: (N,) bool."""
        confidence = confidence.detach().float().flatten().cpu()
        correct = correct.detach().flatten().cpu().double()
        bins = (torch.bucketize(confidence, self.edges, right=True) - 1).clamp(0, self.n_bins - 1)
        self.count += torch.bincount(bins, minlength=self.n_bins).double()
        self.confidence.index_add_(0, bins, confidence.double())
        self.correct.index_add_(0, bins, correct)

    def result(self) -> Calibration:
        total = float(self.count.sum())
        bins, ece = [], 0.0
        for b in range(self.n_bins):
            n = float(self.count[b])
            conf = float(self.confidence[b]) / n if n else None
            acc = float(self.correct[b]) / n if n else None
            if n:
                ece += abs(acc - conf) * n / total
            lower, upper = float(self.edges[b]), float(self.edges[b + 1])
            bins.append(CalibrationBin(lower, upper, int(n), conf, acc))
        return Calibration(ece, bins)


@dataclass(frozen=True)
class ResidualSummary:
    """Regression's account of its errors (residual = prediction − target): exact moments
    over every sample, and `points`, a uniform sample of at most RESERVOIR (target,
    prediction) pairs for the residual plot."""

    count: int
    mean: float  # the bias: > 0 predicts too high on average
    mae: float
    rmse: float
    max_abs: float
    points: list[tuple[float, float]]

    def to_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "mae": self.mae, "rmse": self.rmse,
                "max_abs": self.max_abs, "points": [list(p) for p in self.points]}  # fmt: skip


class Residuals:
    """Running sums of the residuals and a reservoir sample (Vitter's algorithm R) of the
    (target, prediction) pairs: bounded whatever the data set's size."""

    def __init__(self, size: int = RESERVOIR, seed: int = 0) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.n, self.total, self.abs_total, self.sq_total, self.max_abs = 0, 0.0, 0.0, 0.0, 0.0
        self.points: list[tuple[float, float]] = []

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """prediction, target: (N,) values of the same shape (one output per sample, or every
        output flattened)."""
        p = prediction.detach().double().flatten().cpu()
        t = target.detach().double().flatten().cpu()
        r = p - t
        self.total += float(r.sum())
        self.abs_total += float(r.abs().sum())
        self.sq_total += float((r * r).sum())
        if r.numel():
            self.max_abs = max(self.max_abs, float(r.abs().max()))
        for target_value, prediction_value in zip(t.tolist(), p.tolist(), strict=True):
            self.n += 1
            if len(self.points) < self.size:
                self.points.append((target_value, prediction_value))
            else:
                slot = int(self.rng.integers(self.n))
                if slot < self.size:
                    self.points[slot] = (target_value, prediction_value)

    def result(self) -> ResidualSummary:
        n = max(self.n, 1)
        return ResidualSummary(self.n, self.total / n, self.abs_total / n,
                               math.sqrt(self.sq_total / n), self.max_abs, list(self.points))  # fmt: skip
