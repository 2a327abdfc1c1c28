"""Arm (d) of benchmarks/sweep_pruning.py: Ray Tune's ASHA, where Ray installs (CPU-only).

Ray Tune's own recipe for it: its random search (BasicVariantGenerator) and its ASHAScheduler,
at the rungs trainwise's default uses (grace period = first rung at 1/4 of a trial, reduction
factor 4, max_t = the trial's length), on the same tasks, the same trial code (`tw.fit` at the
sampled values, reporting what trainwise's reporter reports: the mean of the last 3 validation
points, and at the first point at or past each rung the whole validation set's loss; the
trial's value is its best whole-validation-set loss) and the same budget of training steps. One trial at a time
(as the other arms), on a local Ray of one CPU. Ray is optional: not a dependency of
trainwise; `available()` says whether it imports.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from pathlib import Path


def available() -> str | None:
    """None when Ray Tune imports; else why not (the arm is then skipped with this)."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError as exc:
        return f"Ray Tune is not installed ({exc}); `pip install 'ray[tune]'` adds arm (d)"
    return None


def _budget_stopper(budget: int):
    """A Ray Stopper that ends the whole run once the trials' steps add up to the budget."""
    from ray.tune import Stopper

    class Budget(Stopper):
        def __init__(self) -> None:
            self.steps: dict[str, int] = {}

        def __call__(self, trial_id: str, result: dict) -> bool:
            step = int(result.get("step", 0))
            self.steps[trial_id] = max(self.steps.get(trial_id, 0), step)
            return False

        def stop_all(self) -> bool:
            return sum(self.steps.values()) >= budget

    return Budget()


def run_ray_arm(task: str, seed: int, space: dict, trial_steps: int, budget_trials: int,
                folder: Path) -> list[tuple[int, float, float | None]]:  # fmt: skip
    """Trials until the step budget is spent: [(steps, CPU seconds, value or None)] in the
    order Ray started them, as `run_arm` returns for the other arms."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    from trainwise.sweep.plan import FIRST_RUNG_FRACTION, REDUCTION_FACTOR

    if not ray.is_initialized():
        # Ray's workers import this module (and trainwise) by name: give them these paths
        here = Path(__file__).resolve().parent
        paths = [str(here), str(here.parent / "src"), os.environ.get("PYTHONPATH", "")]
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local, one-process cluster
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)  # fmt: skip
    budget = budget_trials * trial_steps
    ray_space = {"lr": tune.loguniform(*_bounds(space["lr"])),
                 "width": tune.randint(int(_bounds(space["width"])[0]),
                                       int(_bounds(space["width"])[1]) + 1),
                 "weight_decay": tune.loguniform(*_bounds(space["weight_decay"]))}  # fmt: skip
    scheduler = ASHAScheduler(time_attr="step", metric="loss", mode="min", max_t=trial_steps,
                              grace_period=trial_steps // FIRST_RUNG_FRACTION,
                              reduction_factor=REDUCTION_FACTOR)  # fmt: skip
    tuner = tune.Tuner(
        tune.with_parameters(_trainable, task=task, seed=seed, trial_steps=trial_steps),
        param_space=ray_space,
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=10 * budget_trials,
                                    max_concurrent_trials=1, reuse_actors=True,
                                    search_alg=BasicVariantGenerator(random_state=seed)),
        run_config=tune.RunConfig(name=f"ray-{task}-{seed}", storage_path=str(folder.resolve()),
                                  stop=_budget_stopper(budget), verbose=0),
    )  # fmt: skip
    results = tuner.fit()
    rows = []
    for result in results:
        metrics = result.metrics or {}
        steps = int(metrics.get("step", 0))
        done = steps >= trial_steps and metrics.get("value") is not None
        rows.append((metrics.get("started", math.inf), steps, float(metrics.get("cpu", 0.0)),
                     float(metrics["value"]) if done else None))  # fmt: skip
    rows.sort()
    log, spent = [], 0
    for _, steps, cpu, value in rows:
        if spent >= budget or steps == 0:
            continue
        steps = min(steps, budget - spent)  # the last trial is cut at the budget's end
        spent += steps
        log.append((steps, cpu, value if steps == trial_steps else None))
    return log


def _bounds(spec: str) -> tuple[float, float]:
    _, lo, hi = spec.split(":")
    return float(lo), float(hi)


_SETUPS: dict = {}  # the task's data, built once per Ray worker process


def _trainable(config: dict, task: str, seed: int, trial_steps: int) -> None:
    """One Ray trial: trainwise's fit at the sampled values, reporting as trainwise's default
    does (the mean of the last 3 validation points, at fit's validation points; the whole
    validation set's loss at the first point at or past each of ASHA's rungs)."""
    import sys

    import torch
    from ray import tune

    import trainwise as tw
    from trainwise.sweep.hp import HyperParams
    from trainwise.sweep.objective import SMOOTH_POINTS, WHOLE_AT_RUNGS
    from trainwise.sweep.plan import rung_steps
    from trainwise.train.loop import fit

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sweep_pruning import TASKS

    if task not in _SETUPS:
        _SETUPS[task] = TASKS[task]()
    started, cpu0 = time.time(), time.process_time()
    recent: deque[float] = deque(maxlen=SMOOTH_POINTS)
    rungs = rung_steps("asha", trial_steps) if WHOLE_AT_RUNGS else []

    def report(status) -> None:
        loss = status.val.get("loss") if status.val else None
        if loss is None or not math.isfinite(loss) or status.step >= status.total:
            return  # the last point is reported below, with the trial's value
        recent.append(float(loss))
        loss = sum(recent) / len(recent)
        if rungs and rungs[0] <= status.step and status.evaluate is not None:
            while rungs and rungs[0] <= status.step:
                rungs.pop(0)
            whole = status.evaluate().get("loss")
            loss = whole if whole is not None and math.isfinite(whole) else loss
        tune.report({"loss": loss, "step": status.step,
                     "started": started, "cpu": time.process_time() - cpu0})  # fmt: skip

    hp = HyperParams({"width": int(config["width"])})
    recipe = tw.Recipe(lr=float(config["lr"]), weight_decay=float(config["weight_decay"]),
                       precision="fp32")  # fmt: skip
    result = fit(_SETUPS[task](hp), steps=trial_steps, recipe=recipe, seed=seed, record=False,
                 verbose=False, preset="cheap", on_progress=report)  # fmt: skip
    value = result.best.get("val_loss", result.metrics.get("val_loss"))
    value = float(value) if value is not None and math.isfinite(value) else None
    tune.report({"loss": value if value is not None else math.inf, "value": value,
                 "step": result.steps, "started": started,
                 "cpu": time.process_time() - cpu0})  # fmt: skip
