"""Overfit one batch: with regularization off, the loss of one batch must fall near zero."""

from __future__ import annotations

from trainwise.measurements import Memorized, MemorizedBatch
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome, Trained, TrainedBatch
from trainwise.stages.memorize import measure, record


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
        what = f"one batch of {size}"
        with ex.isolated(run):
            outcome, result = measure(
                run,
                MemorizedBatch,
                what,
                x,
                y,
                self.name,
                b.overfit_steps,
                b.overfit_seconds,
            )
        # The trained model and its record, for the input-dependence stage.
        run.overfit_batch = TrainedBatch(
            Trained(result.model, x, y), record(Memorized, what, result)
        )
        return outcome
