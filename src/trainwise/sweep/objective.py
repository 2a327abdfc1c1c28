"""One trial: a `tw.fit` run of the setup at the sampled values. It reports the validation
loss to Optuna at each of fit's validation points (`trial.report`) and ends the fit cleanly
(`StopFit`) when the pruner says so (`trial.should_prune`): the trial is PRUNED in Optuna and
its run record, curves and checkpoints are kept, with why it was cut."""

from __future__ import annotations

import logging
import math
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from trainwise.errors import SetupError
from trainwise.sweep.hp import HyperParams, split_params
from trainwise.sweep.plan import SweepPlan, build_pruner, rung_steps
from trainwise.sweep.space import suggest_all

log = logging.getLogger("trainwise")

# Trial user attributes (Optuna stores them with the trial; the sheet and report read them).
RECORD, STEPS, WHY, UNREAD, WORKER = "record", "steps", "why", "unread", "worker"
SMOOTH_POINTS = 3  # validation points averaged into each reported value
# At the pruner's rungs (where successive halving compares trials) the value reported is the
# whole validation set's loss, not the random batches'. `benchmarks/sweep_pruning.py --part
# rungs` (3 tasks x 3 seeds, the same budget, issue15 note): the default reached TPE's best
# on 9 of 9 task-seeds this way against 8 of 9 with the 3-batch mean, at a median 59% of
# TPE's steps against 100%; within the 40% on 0 of 9 against 1 of 9 (not met either way).
WHOLE_AT_RUNGS = True
SIZED = "_trainwise_pruner_steps"  # on a worker's Study object: the trial length its pruner has


class TrialStopped(Exception):
    """A trial that ended without a usable value (its loss went NaN, its code raised): Optuna
    marks it FAIL (it is in `catch`) and the sweep goes on."""


class PruningReporter:
    """fit's on_progress: the validation loss at each validation point to the trial; StopFit
    when the pruner cuts it. A storage error here never stops the training (warned once).

    Each of fit's ~50 validation points is one random batch, so the value reported is the
    mean of the last SMOOTH_POINTS of them: the curve the report draws. At the first point
    at or past each of the pruner's rungs, the value is the whole validation set's loss
    (fit's `status.evaluate`, which leaves the run as it was): the number successive halving
    ranks the trials on there, the quantity a finished trial's value is measured on."""

    def __init__(self, trial: Any, pruner: str) -> None:
        self.trial, self.pruner = trial, pruner
        self.why: str | None = None
        self.broken = False
        self.recent: deque[float] = deque(maxlen=SMOOTH_POINTS)
        self.rungs: list[int] | None = None  # the pruner's decision steps not reached yet

    def __call__(self, status: Any) -> None:
        loss = status.val.get("loss") if status.val else None
        if self.broken or loss is None or not math.isfinite(loss):
            return
        self.recent.append(float(loss))
        loss = sum(self.recent) / len(self.recent)
        try:
            self._size_pruner(status.total)
            if self._at_rung(status.step) and status.evaluate is not None:
                whole = status.evaluate().get("loss")
                loss = whole if whole is not None and math.isfinite(whole) else loss
            self.trial.report(loss, status.step)
            # At the last step the trial is done: cutting it would save nothing.
            prune = status.step < status.total and self.trial.should_prune()
        except Exception as exc:  # noqa: BLE001 - training goes on without pruning
            self.broken = True
            log.warning("trainwise sweep: trial %s cannot report to the storage (%s); it "
                        "trains to the end unpruned", self.trial.number, exc)  # fmt: skip
            return
        if prune:
            from trainwise.train.loop import StopFit

            self.why = self._why(status.step, status.total, float(loss))
            raise StopFit(self.why)

    def _size_pruner(self, total: int) -> None:
        """The pruner's rungs in steps of this trial's length, set on the worker's study
        once (the length is known only once fit has seen the data)."""
        study = self.trial.study
        if getattr(study, SIZED, None) != total:
            study.pruner = build_pruner(self.pruner, total)
            setattr(study, SIZED, total)
        if self.rungs is None:
            self.rungs = rung_steps(self.pruner, total) if WHOLE_AT_RUNGS else []

    def _at_rung(self, step: int) -> bool:
        """Whether `step` is the first validation point at or past a rung not reached yet."""
        if not self.rungs or self.rungs[0] > step:  # ascending: the next rung is the first
            return False
        self.rungs = [r for r in self.rungs if r > step]
        return True

    def _why(self, step: int, total: int, loss: float) -> str:
        """ "pruned by asha at step 24/300: val loss 1.93; the best trial had 0.41 there"."""
        why = f"pruned by {self.pruner} at step {step}/{total}: val loss {loss:.4g}"
        best = _best_at(self.trial, step)
        return why + (f"; the best trial had {best:.4g} there" if best is not None else "")


def _best_at(trial: Any, step: int) -> float | None:
    """The lowest value other finished trials reported at the latest step <= `step`."""
    try:
        from optuna.trial import TrialState

        others = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                                TrialState.PRUNED))  # fmt: skip
    except Exception:  # noqa: BLE001 - the reason is a courtesy; pruning does not need it
        return None
    values = []
    for t in others:
        steps = [s for s in t.intermediate_values if s <= step]
        if steps:
            values.append(t.intermediate_values[max(steps)])
    finite = [v for v in values if math.isfinite(v)]
    return min(finite) if finite else None


def run_trial(trial: Any, plan: SweepPlan, build_setup: Callable[[HyperParams], Any]) -> float:
    """Train one trial; return its value (the best whole-validation-set loss) or raise
    optuna.TrialPruned / TrialStopped."""
    import optuna

    from trainwise.train.loop import fit

    trial.set_user_attr(WORKER, f"{socket.gethostname()}:{os.getpid()}")  # who trains it
    params = suggest_all(trial, plan.space)
    recipe_values, setup_values = split_params(params)
    hp = HyperParams(setup_values)
    setup = build_setup(hp)  # a SetupError (unusable input) stops the sweep: exit 2
    recipe = plan.recipe.replace(**recipe_values)
    reporter = PruningReporter(trial, plan.pruner)
    info = {"study": plan.study, "trial": trial.number, "params": params,
            "storage": plan.storage.shown}  # fmt: skip
    try:
        result = fit(
            setup, epochs=plan.epochs, steps=plan.steps, recipe=recipe, seed=plan.seed,
            record=plan.record, runs_dir=plan.runs_dir, sample=plan.sample, preset=plan.preset,
            verbose=False, name=f"{plan.study}-trial{trial.number}",
            record_info={"sweep": info}, on_progress=reporter, lr_retry=False,
        )  # fmt: skip
    except SetupError:
        raise
    except Exception as exc:  # the setup's code failed at these values: this trial fails
        trial.set_user_attr(WHY, f"{type(exc).__name__}: {exc}"[:500])
        _note_unread(trial, hp)
        raise TrialStopped(str(exc)) from exc
    trial.set_user_attr(RECORD, str(result.record_path) if result.record_path else None)
    trial.set_user_attr(STEPS, result.steps)
    _note_unread(trial, hp)
    if reporter.why is not None and result.stopped == reporter.why:
        trial.set_user_attr(WHY, reporter.why)
        raise optuna.TrialPruned(reporter.why)
    value = result.best.get("val_loss", result.metrics.get("val_loss"))
    if result.stopped:
        trial.set_user_attr(WHY, f"stopped: {result.stopped}")
    if value is None or not math.isfinite(value):
        trial.set_user_attr(WHY, f"no finite validation loss ({result.stopped or value})")
        raise TrialStopped(str(value))
    return float(value)


def _note_unread(trial: Any, hp: HyperParams) -> None:
    """The setup's parameters it never read: the sheet and the live table report them."""
    unread = hp.unread()
    if unread:
        trial.set_user_attr(UNREAD, unread)
