"""Overfit a handful of samples (5-10): the model must give each its own, right output."""

from __future__ import annotations

from trainwise.measurements import MemorizedFew
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome
from trainwise.stages.memorize import measure

FEW = 8  # the seed's "5-10 train samples"


class OverfitFewStage:
    name = "overfit-few"
    title = f"Overfit {FEW} samples"

    def run(self, run: CheckRun) -> StageOutcome:
        if (reason := ex.training_skip_reason(run)) is not None:
            return ex.skipped(reason)
        b = ex.budgets(run)
        sample = run.context.train_sample
        n = min(FEW, len(sample))
        # Samples after the first batch where the sample allows: not the batch already memorized.
        offset = (
            run.setup.effective_batch_size
            if len(sample) >= run.setup.effective_batch_size + n
            else 0
        )
        x, y = ex.rows(sample, n, run, offset=offset)
        with ex.isolated(run):
            outcome, _ = measure(
                run,
                MemorizedFew,
                f"{n} samples",
                x,
                y,
                self.name,
                b.overfit_steps,
                b.overfit_seconds,
            )
        return outcome
