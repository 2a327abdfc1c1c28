"""The bounded accumulators of one pass, each against a plain computation over every sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassCalibrationError

from trainwise.interpret.stream import CalibrationBins, Residuals, TopLosses


def test_top_losses_are_the_k_largest_of_a_full_sort():
    g = torch.Generator().manual_seed(0)
    losses = torch.rand(1000, generator=g)
    losses[[3, 500, 999]] = 5.0  # ties at the top: the higher index first
    labels, preds, probs = (
        torch.randint(0, 3, (1000,)),
        torch.randint(0, 3, (1000,)),
        torch.rand(1000),
    )
    top = TopLosses(10)
    for start in range(0, 1000, 64):  # batches of 64, the last one short
        rows = slice(start, start + 64)
        top.update(losses[rows], torch.arange(1000)[rows], labels[rows], preds[rows], probs[rows])
    order = sorted(range(1000), key=lambda i: (float(losses[i]), i), reverse=True)[:10]
    assert [t.index for t in top.largest()] == order
    assert [t.index for t in top.largest()][:3] == [999, 500, 3]
    first = top.largest(1)[0]
    assert (first.label, first.pred) == (int(labels[999]), int(preds[999]))
    assert first.prob == pytest.approx(float(probs[999])) and first.loss == 5.0
    assert len(top.heap) == 10


def test_a_nan_loss_ranks_first():
    top = TopLosses(2)
    top.update(torch.tensor([0.5, float("nan"), 2.0]), torch.arange(3), None, None, None)
    assert [t.index for t in top.largest()] == [1, 2]


def _hand_ece(confidence: np.ndarray, correct: np.ndarray, bins: int) -> float:
    """ECE by its definition, with torchmetrics' bin edges (a value on an edge goes up)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += abs(correct[members].mean() - confidence[members].mean()) * members.mean()
    return total


def test_calibration_bins_match_torchmetrics_and_the_definition():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 5, generator=g) * 2
    target = torch.randint(0, 5, (2000,), generator=g)
    probs = logits.softmax(1)
    bins = CalibrationBins(15)
    for rows in torch.arange(2000).split(300):
        confidence, predicted = probs[rows].max(1)
        bins.update(confidence, predicted == target[rows])
    result = bins.result()
    reference = MulticlassCalibrationError(num_classes=5, n_bins=15)(probs, target)
    confidence, predicted = probs.max(1)
    hand = _hand_ece(confidence.numpy(), (predicted == target).numpy(), 15)
    assert result.ece == pytest.approx(float(reference), abs=1e-5)
    assert result.ece == pytest.approx(hand, abs=1e-6)
    assert sum(b.count for b in result.bins) == 2000
    full = [b for b in result.bins if b.count]
    assert all(b.lower <= b.confidence < b.upper or b.upper == 1.0 for b in full)


def test_residual_moments_are_exact_and_the_sample_bounded():
    g = torch.Generator().manual_seed(0)
    prediction, target = torch.randn(10_000, generator=g), torch.randn(10_000, generator=g)
    residuals = Residuals(size=500)
    for rows in torch.arange(10_000).split(999):
        residuals.update(prediction[rows], target[rows])
    result = residuals.result()
    r = (prediction - target).double().numpy()
    assert result.count == 10_000
    assert result.mean == pytest.approx(r.mean())
    assert result.mae == pytest.approx(np.abs(r).mean())
    assert result.rmse == pytest.approx(np.sqrt((r**2).mean()))
    assert result.max_abs == pytest.approx(np.abs(r).max())
    assert len(result.points) == 500
    pairs = set(zip(target.double().tolist(), prediction.double().tolist(), strict=True))
    assert all(p in pairs for p in result.points)
