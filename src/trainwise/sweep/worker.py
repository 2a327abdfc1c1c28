"""A worker: one process running trials of a study through its storage until the study holds
`trials` finished trials (or the timeout). Local workers (`--workers W`) are spawned
processes; another machine joins by running the same command with the same --storage and
--study. Each worker builds its own sampler and pruner: the study's state is in the storage."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import Any

from trainwise.errors import SetupError
from trainwise.sweep.objective import WHY, TrialStopped, run_trial
from trainwise.sweep.plan import SweepPlan, build_pruner, build_sampler
from trainwise.sweep.storage import open_storage


def quiet_optuna() -> None:
    """Optuna's per-trial INFO lines and experimental-feature warnings would tear the live
    table; trainwise shows trials itself."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def finished_count(study: Any) -> int:
    """Trials that count towards `trials`: complete, pruned, and failed on their own (a trial
    failed by the heartbeat, its worker killed, is retried instead and does not count)."""
    from optuna.trial import TrialState

    done = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            done += 1
        elif t.state == TrialState.FAIL and WHY in t.user_attrs:
            done += 1
    return done


def setup_builder(plan: SweepPlan) -> Callable[[Any], Any]:
    """hp -> Setup: the setup file's function (imported once per worker) or `setup_fn`."""
    if plan.target is not None:
        from trainwise.loader import SetupFile

        file = SetupFile.open(plan.target)
        return file.build
    fn = plan.setup_fn
    from trainwise.loader import takes_hp

    if takes_hp(fn):
        return fn

    def without_hp(hp: Any) -> Any:
        if hp:
            raise SetupError(
                f"sweep: {getattr(fn, '__name__', fn)}() takes no parameter, but the sweep has "
                f"values for it ({', '.join(sorted(hp))}); make it `def setup(hp):`"
            )
        return fn()

    return without_hp


def run_worker(plan: SweepPlan, worker: int = 0, threads: int | None = None) -> None:
    """Run trials of `plan.study` until it holds `plan.trials` finished ones."""
    import optuna

    quiet_optuna()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    storage = open_storage(plan.storage)
    study = optuna.load_study(study_name=plan.study, storage=storage,
                              sampler=build_sampler(plan, worker),
                              pruner=build_pruner(plan.pruner))  # fmt: skip
    build = setup_builder(plan)
    if finished_count(study) >= plan.trials:
        return

    def enough(study: Any, trial: Any) -> None:
        if finished_count(study) >= plan.trials:
            study.stop()

    study.optimize(lambda trial: run_trial(trial, plan, build), timeout=plan.timeout,
                   callbacks=[enough], catch=(TrialStopped,), gc_after_trial=False)  # fmt: skip


def worker_main(plan: SweepPlan, worker: int, threads: int, errors: Any) -> None:
    """A spawned worker process's entry: its error (if any) goes to the parent as text, and
    a SetupError keeps its type so the parent exits 2 with the message."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        run_worker(plan, worker, threads)
    except SetupError as exc:
        errors.put(("setup", worker, str(exc)))
        raise SystemExit(2) from None
    except BaseException as exc:
        errors.put(("error", worker, f"{type(exc).__name__}: {exc}"))
        raise
