"""Overfit one batch: with regularization off, the loss of one batch must fall near zero."""

from __future__ import annotations

from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome
from trainwise.stages.memorize import judge

SHARED_KEY = "overfit-batch"  # the trained model and its curve, for the input-dependence stage


class OverfitBatchStage:
    name = "overfit-batch"
    title = "Overfit one batch"

    def run(self, run: CheckRun) -> StageOutcome:
        if (reason := ex.training_skip_reason(run)) is not None:
            return ex.skipped(reason)
        b = ex.budgets(run)
        sample = run.context.train_sample
        size = min(run.setup.effective_batch_size, len(sample))
        x, y = ex.rows(sample, size, run)
        with ex.isolated(run):
            outcome, result = judge(
                run,
                "cannot-overfit-batch",
                f"one batch of {size}",
                x,
                y,
                self.name,
                b.overfit_steps,
                b.overfit_seconds,
            )
        run.shared[SHARED_KEY] = (result, x, y)
        return outcome
