"""Input dependence: the model trained on one batch must do worse when its inputs are zeroed,
and must give different samples different outputs (judged by `input-independent`,
rules/protocol.py)."""

from __future__ import annotations

import torch

from trainwise.measurements import InputDependence, Memorized
from trainwise.rules.protocol import same_output
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome, Trained
from trainwise.stages.memorize import memorize, record

# The batch must have been learned for its inputs' use to be judged: training removed more than
# half of the loss at init.
LEARNED = 0.5


class InputDependenceStage:
    name = "input-dependence"
    title = "Input dependence (zeroed inputs)"

    def run(self, run: CheckRun) -> StageOutcome:
        if (reason := ex.training_skip_reason(run)) is not None:
            return ex.skipped(reason)
        with ex.isolated(run):
            trained, result = self._trained_batch(run)
            with torch.no_grad():
                real = ex.eval_loss(run, trained.model, trained.x, trained.y, self.name)
                zeroed = ex.eval_loss(
                    run, trained.model, ex.zeros_like(trained.x), trained.y, self.name
                )
        measured = InputDependence(
            samples=result.samples,
            steps=result.steps,
            loss_at_init=result.initial,
            loss_real=real,
            loss_zeroed=zeroed,
            output_spread=result.output_spread,
            loss_know_nothing=ex.reference_loss(run)[0],
        )
        metrics = {
            "loss_real_inputs": real,
            "loss_zeroed_inputs": zeroed,
            "loss_at_init": result.initial,
            "steps": result.steps,
        }
        if result.output_spread is not None:
            metrics["output_spread"] = result.output_spread
        if same_output(measured):  # judged whether or not the batch was learned
            return StageOutcome(
                metrics=metrics,
                summary=f"all {result.samples} samples get the same output",
                measurement=measured,
            )
        gained = result.initial - real
        if not result.finite or gained <= LEARNED * result.initial:
            return ex.skipped(
                f"the model did not learn the batch (loss {ex.fmt(result.initial)} -> "
                f"{ex.fmt(real)}), so its use of the input cannot be judged; see overfit-batch"
            )
        return StageOutcome(
            metrics=metrics,
            summary=(
                f"loss on the trained batch {ex.fmt(real)}, with zeroed inputs {ex.fmt(zeroed)} "
                f"(at init {ex.fmt(result.initial)})"
            ),
            measurement=measured,
        )

    def _trained_batch(self, run: CheckRun) -> tuple[Trained, Memorized]:
        """The overfit-batch stage's model, or one trained here when that stage did not run."""
        if run.overfit_batch is not None:
            return run.overfit_batch.trained, run.overfit_batch.memorized
        b = ex.budgets(run)
        size = min(run.setup.effective_batch_size, len(run.context.train_sample))
        x, y = ex.rows(run.context.train_sample, size, run)
        result = memorize(run, x, y, self.name, b.overfit_steps, b.overfit_seconds)
        return Trained(result.model, x, y), record(Memorized, f"one batch of {size}", result)
