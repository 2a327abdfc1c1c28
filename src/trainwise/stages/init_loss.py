"""Loss at init: a fresh model's loss against what a model that knows nothing should score."""

from __future__ import annotations

import torch

from trainwise.rules import CATALOGUE
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome

# Cross-entropy-like losses: "far" is half again above log C (log 2 for binary), with at least
# half a nat of room so two-class problems are not judged on noise.
RATIO_LOG = 1.5
MARGIN_LOG = 0.5
# MSE/L1: default-initialized outputs add their own variance (typically 0.1-0.5 of the target
# variance on standardized data); three times the reference is a genuine offset or scale error.
RATIO_REGRESSION = 3.0
MAX_BATCHES = 8  # enough for the mean loss to settle to ~1% on batches of 32
QUICK_BATCHES = 2


class InitLossStage:
    name = "init-loss"
    title = "Loss at initialization"

    def run(self, run: CheckRun) -> StageOutcome:
        if (reason := ex.blocking_reason(run)) is not None:
            return ex.skipped(reason)
        with ex.isolated(run):
            model, _ = ex.fresh(run, regularization=False)
            sample = run.context.train_sample
            size = min(run.setup.effective_batch_size, len(sample))
            n = min(len(sample), size * (QUICK_BATCHES if run.quick else MAX_BATCHES))
            losses, weights = [], []
            with torch.no_grad():
                for start in range(0, n - size + 1, size):
                    x, y = ex.rows(sample, size, run, offset=start)
                    losses.append(ex.eval_loss(run, model, x, y, self.name))
                    weights.append(size)
        loss = sum(v * w for v, w in zip(losses, weights, strict=True)) / sum(weights)
        expected, how = ex.reference_loss(run)
        outcome = StageOutcome(metrics={"loss": loss, "expected": expected, "samples": n})
        if expected is None:
            outcome.summary = (
                f"loss at init {ex.fmt(loss)} on {n} samples; no expected value for this loss"
            )
            return outcome
        kind = run.context.loss_kind
        if kind in ("mse", "l1"):
            limit = RATIO_REGRESSION * expected
        else:
            limit = max(RATIO_LOG * expected, expected + MARGIN_LOG)
        outcome.metrics["limit"] = limit
        outcome.summary = (
            f"loss at init {ex.fmt(loss)} vs expected {ex.fmt(expected)} ({how}) on {n} samples"
        )
        if loss > limit:
            outcome.findings.append(
                CATALOGUE["initial-loss-off"].finding(
                    f"The freshly initialized model scores a loss of {ex.fmt(loss)} on {n} "
                    f"training samples; a model that knows nothing should score about "
                    f"{ex.fmt(expected)} ({how}), {ex.fmt(loss / expected)}x less. "
                    + _likely_cause(run, kind),
                    evidence={"loss": loss, "expected": expected, "limit": limit},
                )
            )
        return outcome


def _likely_cause(run: CheckRun, kind: str) -> str:
    if kind in ("mse", "l1"):
        t = run.context.train_sample.targets
        if isinstance(t, torch.Tensor) and torch.is_floating_point(t):
            mean, std = float(t.float().mean()), float(t.float().std())
            return (
                f"The targets have mean {ex.fmt(mean)} and std {ex.fmt(std)} while the outputs "
                f"start near 0: standardize the targets or set the last bias to {ex.fmt(mean)}."
            )
    return (
        "The initial logits are too large (a large init of the output layer or a scaled "
        "output): the model starts confidently wrong."
    )
