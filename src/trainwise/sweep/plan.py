"""What every trial of a sweep shares, as one picklable record (it travels to the worker
processes), and Optuna's samplers and pruners built from its names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainwise.errors import SetupError
from trainwise.sweep.space import Param
from trainwise.sweep.storage import StorageSpec
from trainwise.train.recipe import Recipe

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("asha", "hyperband", "median", "none")
REDUCTION_FACTOR = 4  # ASHA's η, as in Li et al. 2020 and Optuna's default: a quarter goes on
FIRST_RUNG_FRACTION = 4  # the first rung at 1/4 of a trial: where one-cycle's warm-up ends
MEDIAN_STARTUP_TRIALS = 5  # Optuna's MedianPruner default: no pruning before 5 finished trials
TPE_STARTUP_TRIALS = 10  # Optuna's TPESampler default: random proposals before TPE's model
# TPE's random start-up under successive halving (asha, hyperband), whose pruned trials count
# towards it. Kept at Optuna's 10: fewer was measured and not better (benchmarks/
# sweep_pruning.py part V, 3 tasks x 6 seeds, 16 x 300 steps, issue15 note): TPE's best was
# reached on 16 of 18 task-seeds with 10, at a median 65% of plain TPE's steps, against 13 of
# 18 and 80% with 5, 11 of 18 and 105% with 3 (within 40%: 1, 3 and 3 of 18).
PRUNED_STARTUP_TRIALS = 10


@dataclass(frozen=True)
class SweepPlan:
    """A sweep's settings. Either `target` (a setup file "FILE.py[:FUNCTION]", imported in
    each worker) or `setup_fn` (a function of hp returning a Setup; for workers > 1 it must
    be importable by name, i.e. defined at a module's top level)."""

    target: str | None
    setup_fn: Callable[..., Any] | None
    space: Mapping[str, Param]
    study: str
    storage: StorageSpec
    trials: int
    epochs: int | None
    steps: int | None
    recipe: Recipe
    seed: int = 0
    sample: float | int | None = None
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "asha"
    runs_dir: str | None = None
    record: bool = True
    preset: str = "cheap"

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise SetupError(f"sweep: sampler {self.sampler!r}; expected one of {SAMPLERS}")
        if self.pruner not in PRUNERS:
            raise SetupError(f"sweep: pruner {self.pruner!r}; expected one of {PRUNERS}")
        if not isinstance(self.trials, int) or self.trials < 1:
            raise SetupError(f"sweep: trials={self.trials!r}; expected a positive int")
        if (self.epochs is None) == (self.steps is None):
            raise SetupError("sweep: give epochs=N or steps=N (one of them): each trial's length")
        if self.timeout is not None and self.timeout <= 0:
            raise SetupError(f"sweep: timeout={self.timeout!r}; expected seconds > 0")

    @property
    def runs_root(self) -> Path:
        from trainwise.runs.layout import runs_root

        return runs_root(self.runs_dir)


def build_sampler(plan: SweepPlan, worker: int) -> Any:
    """Optuna's sampler. Each worker gets its own seed, so parallel workers starting together
    do not propose the same values; TPE's constant liar keeps them apart while trials run."""
    import optuna

    seed = plan.seed * 1000 + worker
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if plan.sampler == "grid":
        grid = {name: param.grid() for name, param in plan.space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    startup = PRUNED_STARTUP_TRIALS if plan.pruner in ("asha", "hyperband") else TPE_STARTUP_TRIALS
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                      n_startup_trials=startup)  # fmt: skip


def build_pruner(name: str, total_steps: int | None = None) -> Any:
    """Optuna's pruner, its rungs in optimizer steps sized from a trial's length.

    asha: SuccessiveHalvingPruner (asynchronous successive halving) with reduction factor 4
    and its first rung at 1/4 of the trial, where one-cycle's warm-up ends: a quarter of the
    trials that reach it go on to the end. Optuna's "auto" puts the first rung at 1% of the
    first finished trial, inside the warm-up, where the curves rank initializations more than
    settings: with the first rung at 1/32 or 1/16 the benchmark's default arm pruned most of
    ~150 trials and never reached TPE's best on digits (docs/notes/issue15.md).
    hyperband: HyperbandPruner over the same range; median: MedianPruner (no pruning before
    the first rung); none: NopPruner. total_steps None (not known yet): Optuna's "auto"."""
    import optuna

    first = max(1, total_steps // FIRST_RUNG_FRACTION) if total_steps else None
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=first or "auto", reduction_factor=REDUCTION_FACTOR)
    if name == "hyperband":
        if first is None:
            return optuna.pruners.HyperbandPruner(reduction_factor=REDUCTION_FACTOR)
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=total_steps,
                                              reduction_factor=REDUCTION_FACTOR)  # fmt: skip
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS,
                                           n_warmup_steps=first or 0)  # fmt: skip
    return optuna.pruners.NopPruner()


def rung_steps(name: str, total_steps: int) -> list[int]:
    """The steps at which successive halving (asha, and each of hyperband's brackets) decides:
    the first rung and its multiples by the reduction factor, before the trial's end."""
    if name not in ("asha", "hyperband"):
        return []
    first = max(1, total_steps // FIRST_RUNG_FRACTION)
    steps = []
    while first < total_steps:
        steps.append(first)
        first *= REDUCTION_FACTOR
    return steps
