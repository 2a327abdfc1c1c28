"""Loss at init: a fresh model's loss against what a model that knows nothing should score
(judged by `initial-loss-off`, rules/protocol.py)."""

from __future__ import annotations

import torch

from trainwise.loss_kinds import REGRESSION
from trainwise.measurements import InitLoss
from trainwise.rules.protocol import init_loss_limit
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome

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
        metrics = {"loss": loss, "expected": expected, "samples": n}
        if expected is None:
            return StageOutcome(
                metrics=metrics,
                summary=(
                    f"loss at init {ex.fmt(loss)} on {n} samples; no expected value for this loss"
                ),
            )
        kind = run.context.loss_kind
        measured = InitLoss(loss, expected, how, n, kind, *_target_moments(run))
        return StageOutcome(
            metrics={**metrics, "limit": init_loss_limit(expected, kind)},
            summary=(
                f"loss at init {ex.fmt(loss)} vs expected {ex.fmt(expected)} ({how}) on {n} samples"
            ),
            measurement=measured,
        )


def _target_moments(run: CheckRun) -> tuple[float | None, float | None]:
    """Mean and std of float training targets under a regression loss, else (None, None)."""
    t = run.context.train_sample.targets
    if run.context.loss_kind in REGRESSION and (
        isinstance(t, torch.Tensor) and torch.is_floating_point(t)
    ):
        return float(t.float().mean()), float(t.float().std())
    return None, None
