"""Input dependence: the model trained on one batch must do worse when its inputs are zeroed,
and must give different samples different outputs."""

from __future__ import annotations

import torch

from trainwise.rules import CATALOGUE
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome
from trainwise.stages.memorize import SAME_OUTPUT, memorize
from trainwise.stages.overfit_batch import SHARED_KEY

# Zeroing the inputs must undo at least a quarter of what training on the batch gained.
RECOVERED = 0.25


class InputDependenceStage:
    name = "input-dependence"
    title = "Input dependence (zeroed inputs)"

    def run(self, run: CheckRun) -> StageOutcome:
        if (reason := ex.training_skip_reason(run)) is not None:
            return ex.skipped(reason)
        with ex.isolated(run):
            if SHARED_KEY in run.shared:
                result, x, y = run.shared[SHARED_KEY]
            else:
                b = ex.budgets(run)
                size = min(run.setup.effective_batch_size, len(run.context.train_sample))
                x, y = ex.rows(run.context.train_sample, size, run)
                result = memorize(run, x, y, self.name, b.overfit_steps, b.overfit_seconds)
            model = result.model
            with torch.no_grad():
                real = ex.eval_loss(run, model, x, y, self.name)
                zeroed = ex.eval_loss(run, model, ex.zeros_like(x), y, self.name)
        outcome = StageOutcome(
            metrics={
                "loss_real_inputs": real,
                "loss_zeroed_inputs": zeroed,
                "loss_at_init": result.initial,
                "steps": result.steps,
            }
        )
        spread = result.output_spread
        if spread is not None:
            outcome.metrics["output_spread"] = spread
            if spread < SAME_OUTPUT:
                outcome.summary = f"all {result.samples} samples get the same output"
                outcome.findings.append(
                    CATALOGUE["input-independent"].finding(
                        f"After {result.steps} steps on one batch, the model gives all "
                        f"{result.samples} samples the same output (relative spread "
                        f"{spread:.1e}); with zeroed inputs its loss is {ex.fmt(zeroed)} vs "
                        f"{ex.fmt(real)} on the real ones. The input does not reach the output.",
                        evidence={
                            "output_spread": spread,
                            "loss_real_inputs": real,
                            "loss_zeroed_inputs": zeroed,
                        },
                    )
                )
                return outcome
        gained = result.initial - real
        if not result.finite or gained <= 0.5 * result.initial:
            return ex.skipped(
                f"the model did not learn the batch (loss {ex.fmt(result.initial)} -> "
                f"{ex.fmt(real)}), so its use of the input cannot be judged; see overfit-batch"
            )
        outcome.summary = (
            f"loss on the trained batch {ex.fmt(real)}, with zeroed inputs {ex.fmt(zeroed)} "
            f"(at init {ex.fmt(result.initial)})"
        )
        if zeroed < real + RECOVERED * gained:
            outcome.findings.append(
                CATALOGUE["input-independent"].finding(
                    f"Trained on one batch, the model scores {ex.fmt(real)} on it and "
                    f"{ex.fmt(zeroed)} with the inputs replaced by zeros: zeroing undoes less "
                    f"than {RECOVERED:.0%} of the {ex.fmt(gained)} it learned. The output "
                    "barely depends on the input.",
                    evidence={
                        "loss_real_inputs": real,
                        "loss_zeroed_inputs": zeroed,
                        "loss_at_init": result.initial,
                    },
                )
            )
        return outcome
