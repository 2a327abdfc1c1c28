"""Benchmark: does trainwise's default sweep (TPE + ASHA on the validation curve) find what a
sweep without pruning finds, with less compute? And what does a storage cost per trial?

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/sweep_pruning.py            # everything
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/sweep_pruning.py --part a --seeds 1
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/sweep_pruning.py --part b   # storages

A. Search quality at a fixed budget of training steps. Three tasks (built offline):
     digits-mlp     scikit-learn's 8x8 digits (1437 train / 360 val), MLP 64-W-10
     friedman-mlp   Friedman #1 regression (2000 / 500, noise 0.5, standardized), MLP 10-W-W-1
     mnist1d-mlp    MNIST-1D (4000 / 1000 signals of 40 points, `mnist1d`), MLP 40-W-W-10
   searched: lr log:1e-4:3e-1, width int:8:256, weight_decay log:1e-5:1e-1. Each trial is a
   `tw.fit` of TRIAL_STEPS steps (the default Recipe at the sampled lr and weight decay),
   scored on its best whole-validation-set loss. Each arm gets the same budget of BUDGET_TRIALS
   x TRIAL_STEPS training steps and runs trials until it is spent:
     random   RandomSampler, no pruning
     tpe      TPESampler (trainwise's settings), no pruning
     default  TPESampler + ASHA (trainwise's default: SuccessiveHalvingPruner, first rung at
              1/4 of a trial, reduction factor 4), reporting the validation loss at fit's
              validation points (the whole validation set's at the rung); pruned trials cost
              only the steps they ran, and the steps they free go to further trials
     ray      (where Ray Tune imports; see sweep_ray_arm.py) Ray Tune's random search +
              ASHAScheduler at the same rungs, on the same trial code. Ray is no dependency
              of trainwise: `pip install "ray[tune]"` (ray 2.60.0 here; it pulls no torch)
              adds this arm, `--no-ray` leaves it out
   The trial code is trainwise's own (trainwise.sweep.objective.run_trial, the samplers and
   pruners of trainwise.sweep.plan). Per task and seed (the seed of the sampler and of every
   trial's fit): each arm's best loss, and the compute (training steps, and CPU seconds) each
   arm needed before its best so far first reached tpe's final best; which of tpe's trials
   found its best (its first 10 are TPE's random start-up, the same trials the default arm
   starts with). Reported: medians over the seeds, and the ratios default/tpe side by side.
   Target: default reaches tpe's best with <= 40% of tpe's compute.

R. (`--part rungs`, not in the default `all`) The value at ASHA's rungs: tpe, the default
   (the whole validation set's loss at the rungs) and the default with the mean of the last 3
   one-batch points there too (as before the whole set was used), per task and seed, part A's
   budget: how often and how soon each reaches tpe's best.

V. (`--part variants`, not in `all`) Variants of the default arm, side by side on part A's
   tasks and budget: tpe once per task and seed, then each `--variant` (default: all of
   VARIANTS): TPE's start-up size under the pruner (trainwise.sweep.plan.PRUNED_STARTUP_TRIALS),
   the first rung (FIRST_RUNG_FRACTION), the reduction factor, ASHA or Hyperband; seeds
   `--first-seed` to `--first-seed + --seeds - 1`; `--budget-trials N` for another budget
   (parts A and R too). Per variant: its best, its steps to tpe's best as a share of tpe's,
   its trials (without a value).

F. Why the target is hard here: how well a trial's validation loss at step s ranks trials by
   their final value. FIDELITY_TRIALS random configurations per task trained to the end; at
   1/8, 1/4 and 1/2 of the trial, Spearman's rho between the loss then (mean of the last 3
   random batches, and the whole validation set's) and the final value, and how many of the
   3 best final trials are in the top quarter then (what ASHA at that rung would keep).

C. SQLite with 4 processes writing at once (the "database is locked" of Optuna's FAQ): 4
   spawned processes x 25 trials of 50 reports, no training, on Optuna's plain sqlite:/// URL
   and on trainwise's default file; trials that failed, and how many said "database is locked".

B. Storage overhead per trial, without training: create a trial, report 50 validation
   points with should_prune after each (what one fit trial does), complete it. SQLite (the
   default file), journal (JournalFileBackend) and PostgreSQL (a throwaway server started from
   Debian's binaries, as the tests do; skipped when none is installed), interleaved A B C A B C,
   median ms per trial.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

TRIAL_STEPS = 300
BUDGET_TRIALS = 16  # the budget: this many full trials' worth of training steps per arm
SPACE = {"lr": "log:1e-4:3e-1", "width": "int:8:256", "weight_decay": "log:1e-5:1e-1"}
ARMS = ("random", "tpe", "default")


# -- tasks -------------------------------------------------------------------------------------


def _standardized(x_train, x_val):
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    return (x_train - mean) / std, (x_val - mean) / std


def digits_mlp():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(x), generator=g)
    x, y = torch.tensor(x, dtype=torch.float32)[order], torch.tensor(y)[order]
    xt, xv = _standardized(x[:1437], x[1437:])
    data = (TensorDataset(xt, y[:1437]), TensorDataset(xv, y[1437:]))

    def setup(hp):
        w = hp["width"]
        return tw.Setup(model=lambda: nn.Sequential(nn.Linear(64, w), nn.ReLU(), nn.Linear(w, 10)),
                        train=data[0], val=data[1], loss=nn.CrossEntropyLoss(), batch_size=32)

    return setup


def friedman_mlp():
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=2500, noise=0.5, random_state=0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    xt, xv = _standardized(x[:2000], x[2000:])
    mu, sd = y[:2000].mean(), y[:2000].std()
    yt, yv = ((y[:2000] - mu) / sd)[:, None], ((y[2000:] - mu) / sd)[:, None]
    data = (TensorDataset(xt, yt), TensorDataset(xv, yv))

    def setup(hp):
        w = hp["width"]
        return tw.Setup(model=lambda: nn.Sequential(nn.Linear(10, w), nn.ReLU(), nn.Linear(w, w),
                                                    nn.ReLU(), nn.Linear(w, 1)),
                        train=data[0], val=data[1], loss=nn.MSELoss(), batch_size=32)

    return setup


def mnist1d_mlp():
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    xt, xv = (torch.tensor(d[k], dtype=torch.float32) for k in ("x", "x_test"))
    yt, yv = torch.tensor(d["y"]), torch.tensor(d["y_test"])
    xt, xv = _standardized(xt, xv)
    data = (TensorDataset(xt, yt), TensorDataset(xv, yv))

    def setup(hp):
        w = hp["width"]
        return tw.Setup(model=lambda: nn.Sequential(nn.Linear(40, w), nn.ReLU(), nn.Linear(w, w),
                                                    nn.ReLU(), nn.Linear(w, 10)),
                        train=data[0], val=data[1], loss=nn.CrossEntropyLoss(), batch_size=32)

    return setup


TASKS = {"digits-mlp": digits_mlp, "friedman-mlp": friedman_mlp, "mnist1d-mlp": mnist1d_mlp}


# -- part A ------------------------------------------------------------------------------------


def run_arm(setup_fn, arm: str, seed: int, folder: Path, variant: str | None = None
            ) -> list[tuple[int, float, float | None]]:
    """Trials until the step budget is spent: [(steps, seconds, value or None)] in order.
    `variant` (part V, the default arm only): VARIANTS' settings in place of trainwise's."""
    import optuna

    from trainwise.sweep import objective
    from trainwise.sweep import plan as plan_module
    from trainwise.sweep.plan import SweepPlan, build_pruner, build_sampler
    from trainwise.sweep.space import build_space
    from trainwise.sweep.storage import resolve
    from trainwise.sweep.worker import quiet_optuna

    quiet_optuna()
    plan = SweepPlan(
        target=None, setup_fn=setup_fn, space=build_space([], SPACE), study=f"{arm}-{seed}",
        storage=resolve(None, folder), trials=10_000, epochs=None, steps=TRIAL_STEPS,
        recipe=tw.Recipe(lr=1e-3, precision="fp32"), seed=seed, record=False,
        sampler="random" if arm == "random" else "tpe",
        pruner=(VARIANTS[variant].get("pruner", "asha") if variant else
                "asha" if arm in ("default", "batches") else "none"),
    )  # fmt: skip
    saved = {k: getattr(plan_module, k)
             for k in ("PRUNED_STARTUP_TRIALS", "FIRST_RUNG_FRACTION", "REDUCTION_FACTOR")}
    for key, value in (VARIANTS[variant] if variant else {}).items():
        if key != "pruner":
            setattr(plan_module, key, value)
    try:
        study = optuna.create_study(sampler=build_sampler(plan, 0),
                                    pruner=build_pruner(plan.pruner))  # fmt: skip
        log: list[tuple[int, float, float | None]] = []
        # "batches": the default as it was before the whole validation set was used at the rungs
        objective.WHOLE_AT_RUNGS = arm != "batches"
        _trials(study, plan, setup_fn, log)
    finally:
        objective.WHOLE_AT_RUNGS = True
        for key, value in saved.items():
            setattr(plan_module, key, value)
    return log


# Part V: variants of the default arm (module constants of trainwise.sweep.plan, and the pruner).
VARIANTS = {
    "asha-s10": {"PRUNED_STARTUP_TRIALS": 10, "FIRST_RUNG_FRACTION": 4},  # trainwise until now
    "asha-s5": {"PRUNED_STARTUP_TRIALS": 5, "FIRST_RUNG_FRACTION": 4},
    "asha-s3": {"PRUNED_STARTUP_TRIALS": 3, "FIRST_RUNG_FRACTION": 4},
    "asha-s5-r3": {"PRUNED_STARTUP_TRIALS": 5, "FIRST_RUNG_FRACTION": 3},
    "hyperband-s5": {"PRUNED_STARTUP_TRIALS": 5, "FIRST_RUNG_FRACTION": 4, "pruner": "hyperband"},
    "hyperband-s10": {"PRUNED_STARTUP_TRIALS": 10, "FIRST_RUNG_FRACTION": 4, "pruner": "hyperband"},
    "asha-s10-eta3": {"PRUNED_STARTUP_TRIALS": 10, "REDUCTION_FACTOR": 3},  # a third goes on
    # Earlier first rungs (fourth session): a pruned trial then costs 1/6 or 1/8 of a trial, not
    # 1/4; with TPE's best among the shared start-up trials, the default's share of TPE's steps
    # to it is about rung + (1 - rung) / k for the k-th trial, under 40% only with cheap rungs.
    "asha-s10-r6": {"PRUNED_STARTUP_TRIALS": 10, "FIRST_RUNG_FRACTION": 6},
    "asha-s10-r8": {"PRUNED_STARTUP_TRIALS": 10, "FIRST_RUNG_FRACTION": 8},
    # A longer random start-up under ASHA (random + ASHA, Ray Tune's arm, was within 40% on 3
    # of 9 task-seeds in part A): proposals 11-20 are random draws TPE's arm never makes.
    "asha-s20": {"PRUNED_STARTUP_TRIALS": 20, "FIRST_RUNG_FRACTION": 4},
}


def _trials(study, plan, setup_fn, log: list) -> None:
    """Trials of `study` until BUDGET_TRIALS x TRIAL_STEPS training steps are spent."""
    import optuna

    from trainwise.sweep.objective import TrialStopped, run_trial

    budget, spent = BUDGET_TRIALS * TRIAL_STEPS, 0
    while spent < budget:
        trial = study.ask()
        t0 = time.process_time()
        try:
            value = run_trial(trial, plan, setup_fn)
            study.tell(trial, value)
        except optuna.TrialPruned:
            value = None
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        except TrialStopped:
            value = None
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        steps = study.trials[-1].user_attrs.get("steps", TRIAL_STEPS)
        steps = min(steps, budget - spent)  # the last trial is cut at the budget's end
        spent += steps
        log.append((steps, time.process_time() - t0, value))


def reach(log, target: float) -> tuple[float, float]:
    """(steps, seconds) spent until the best so far first reached `target` (inf: never)."""
    steps = secs = 0.0
    for s, t, v in log:
        steps, secs = steps + s, secs + t
        if v is not None and v <= target * (1 + 1e-9):
            return steps, secs
    return math.inf, math.inf


def part_a(tasks: list[str], seeds: int, ray: bool, out: list[str]) -> None:
    arms = list(ARMS)
    if ray:
        from sweep_ray_arm import available

        why_not = available()
        if why_not is None:
            arms.append("ray")
        else:
            print(f"arm (d) skipped: {why_not}", flush=True)
            out += [f"Arm (d), Ray Tune's ASHA, skipped: {why_not}.", ""]
    has_ray = "ray" in arms
    out += [f"## A. Search at a fixed budget ({BUDGET_TRIALS} x {TRIAL_STEPS} training steps per "
            f"arm, {seeds} seeds)", ""]
    ray_cols = " best ray (random+asha) | ray: steps to tpe's best (share) |" if has_ray else ""
    out += ["| task | seed | best random | best tpe | best default (tpe+asha) |" + ray_cols +
            " trials r/t/d" + ("/ray" if has_ray else "") + " | pruned d" +
            ("/ray" if has_ray else "") + " | default: steps to tpe's best (share of tpe's) | tpe: "
            "steps to its best (its trial #) | default: CPU s to tpe's best (share) |",
            "|" + "---|" * (10 + 2 * has_ray)]  # fmt: skip
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            setup_fn = TASKS[task]()
            rows = []
            for seed in range(seeds):
                logs = {arm: run_arm(setup_fn, arm, seed, Path(tmp)) for arm in ARMS}
                if has_ray:
                    from sweep_ray_arm import run_ray_arm

                    logs["ray"] = run_ray_arm(task, seed, SPACE, TRIAL_STEPS, BUDGET_TRIALS,
                                              Path(tmp) / "ray")  # fmt: skip
                best = {a: min((v for *_, v in logs[a] if v is not None), default=math.inf)
                        for a in arms}  # fmt: skip
                tpe_steps, tpe_secs = reach(logs["tpe"], best["tpe"])
                tpe_trial = _first_reaching(logs["tpe"], best["tpe"])
                d_steps, d_secs = reach(logs["default"], best["tpe"])
                pruned = "/".join(str(sum(v is None for *_, v in logs[a]))
                                  for a in ("default", "ray")[: 1 + has_ray])  # fmt: skip
                ray_trials = f"/{len(logs['ray'])}" if has_ray else ""
                share, cpu_share = d_steps / tpe_steps, d_secs / tpe_secs
                ray_share = reach(logs["ray"], best["tpe"])[0] / tpe_steps if has_ray else None
                rows.append((best, share, cpu_share, ray_share))
                ray_text = (f" {best['ray']:.4g} | {_pct(ray_share)} |" if has_ray else "")
                out.append(
                    f"| {task} | {seed} | {best['random']:.4g} | {best['tpe']:.4g} | "
                    f"{best['default']:.4g} |{ray_text} {len(logs['random'])}/{len(logs['tpe'])}/"
                    f"{len(logs['default'])}{ray_trials} | {pruned} | "
                    f"{_steps(d_steps)} ({_pct(share)}) | {_steps(tpe_steps)} (#{tpe_trial}) | "
                    f"{d_secs:.1f} ({_pct(cpu_share)}) |")  # fmt: skip
                print(out[-1], flush=True)
            summary[task] = rows
    _summary(summary, arms, out)


def part_variants(tasks: list[str], seeds: int, variants: list[str], out: list[str],
                  first_seed: int = 0) -> None:
    """tpe (plain TPE, no pruning: the reference) and variants of the default arm, on part A's
    tasks, seeds and budget: each variant's best, and its steps to tpe's best as a share of
    tpe's steps to it."""
    out += [f"## V. Variants of the default arm ({BUDGET_TRIALS} x {TRIAL_STEPS} training steps "
            f"per arm, seeds {first_seed}-{first_seed + seeds - 1}): best / steps to tpe's best (share of tpe's) / trials "
            "(without a value)", "", "Variants: " + "; ".join(f"{v} {VARIANTS[v]}"
                                                         for v in variants), "",
            "| task | seed | best tpe | tpe: steps to its best (trial #) | "
            + " | ".join(variants) + " |", "|" + "---|" * (4 + len(variants))]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            setup_fn = TASKS[task]()
            for seed in range(first_seed, first_seed + seeds):
                tpe = run_arm(setup_fn, "tpe", seed, Path(tmp))
                logs = {v: run_arm(setup_fn, "default", seed, Path(tmp), variant=v)
                        for v in variants}  # fmt: skip
                best_tpe = min(v for *_, v in tpe if v is not None)
                tpe_steps = reach(tpe, best_tpe)[0]
                cells, shares, bests = [], {}, {}
                for v, log in logs.items():
                    bests[v] = min((x for *_, x in log if x is not None), default=math.inf)
                    shares[v] = reach(log, best_tpe)[0] / tpe_steps
                    cells.append(f"{bests[v]:.4g} / {_pct(shares[v])} / {len(log)} "
                                 f"({sum(x is None for *_, x in log)})")  # fmt: skip
                rows.append((task, best_tpe, bests, shares))
                out.append(f"| {task} | {seed} | {best_tpe:.4g} | {_steps(tpe_steps)} "
                           f"(#{_first_reaching(tpe, best_tpe)}) | " + " | ".join(cells) + " |")
                print(out[-1], flush=True)
    out += ["", "Medians over the seeds: best (ratio to tpe's) / share of tpe's steps:", "",
            "| task | best tpe | " + " | ".join(variants) + " |",
            "|" + "---|" * (2 + len(variants))]  # fmt: skip
    for task in tasks:
        mine = [r for r in rows if r[0] == task]
        med_tpe = statistics.median(r[1] for r in mine)
        cells = []
        for v in variants:
            med = statistics.median(r[2][v] for r in mine)
            cells.append(f"{med:.4g} ({med / med_tpe:.3f}) / "
                         f"{_pct(statistics.median(r[3][v] for r in mine))}")
        out.append(f"| {task} | {med_tpe:.4g} | " + " | ".join(cells) + " |")
    out.append("")
    for v in variants:
        met = sum(r[3][v] <= 0.4 for r in rows)
        reached = sum(math.isfinite(r[3][v]) for r in rows)
        better = sum(r[2][v] <= r[1] for r in rows)
        share = statistics.median(r[3][v] for r in rows)
        out.append(f"- {v}: within 40% of tpe's steps on {met} of {len(rows)} task-seeds, "
                   f"reached tpe's best on {reached}, best <= tpe's on {better}; median share "
                   f"{_pct(share)}")  # fmt: skip
    out.append("")


def part_rungs(tasks: list[str], seeds: int, out: list[str]) -> None:
    """The default arm with the whole validation set's loss at ASHA's rungs (as committed)
    next to the same arm with the mean of the last 3 one-batch points there (as before), on
    part A's tasks, seeds and budget; tpe is the reference, as in part A."""
    out += [f"## R. The value at ASHA's rungs: whole validation set vs mean of 3 batches "
            f"({BUDGET_TRIALS} x {TRIAL_STEPS} training steps per arm, {seeds} seeds)", "",
            "| task | seed | best tpe | best default, whole val at rungs | steps to tpe's best "
            "(share) | best default, 3 batches at rungs | steps to tpe's best (share) | trials "
            "(pruned) whole / batches |", "|" + "---|" * 8]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            setup_fn = TASKS[task]()
            for seed in range(seeds):
                logs = {arm: run_arm(setup_fn, arm, seed, Path(tmp))
                        for arm in ("tpe", "default", "batches")}  # fmt: skip
                best = {a: min((v for *_, v in log if v is not None), default=math.inf)
                        for a, log in logs.items()}  # fmt: skip
                tpe_steps = reach(logs["tpe"], best["tpe"])[0]
                cells, shares = [], {}
                for arm in ("default", "batches"):
                    steps = reach(logs[arm], best["tpe"])[0]
                    shares[arm] = steps / tpe_steps
                    cells.append(f"{best[arm]:.4g} | {_steps(steps)} ({_pct(shares[arm])})")
                counts = " / ".join(f"{len(logs[a])} ({sum(v is None for *_, v in logs[a])})"
                                    for a in ("default", "batches"))  # fmt: skip
                rows.append((best, shares))
                out.append(f"| {task} | {seed} | {best['tpe']:.4g} | {cells[0]} | {cells[1]} | "
                           f"{counts} |")  # fmt: skip
                print(out[-1], flush=True)
    out.append("")
    for arm, name in (("default", "whole val at rungs"), ("batches", "3 batches at rungs")):
        reached = sum(math.isfinite(r[1][arm]) for r in rows)
        met = sum(r[1][arm] <= 0.4 for r in rows)
        better = sum(r[0][arm] <= r[0]["tpe"] for r in rows)
        share = statistics.median(r[1][arm] for r in rows)
        out.append(f"- {name}: reached tpe's best on {reached} of {len(rows)} task-seeds, within "
                   f"40% of tpe's steps on {met}, best <= tpe's on {better}; median share "
                   f"{_pct(share)}")  # fmt: skip
    out.append("")


def _first_reaching(log, target: float) -> int:
    """The 1-based number of the first trial in `log` whose value reached `target`."""
    return next(i for i, (*_, v) in enumerate(log, 1) if v is not None and v <= target)


def _summary(summary: dict, arms: list[str], out: list[str]) -> None:
    """Medians over the seeds, and how many task-seeds met the target."""
    has_ray = "ray" in arms
    out += ["", "Medians over the seeds (default vs tpe, side by side):", "",
            "| task | best random | best tpe | best default |" + (" best ray |" if has_ray else "")
            + " default/tpe best | default's steps to tpe's best, share of tpe's steps to it | "
            "same in CPU time |" + (" ray's steps, share |" if has_ray else ""),
            "|" + "---|" * (7 + 2 * has_ray)]  # fmt: skip
    for task, rows in summary.items():
        med = {a: statistics.median(r[0][a] for r in rows) for a in arms}
        share = statistics.median(r[1] for r in rows)
        cpu = statistics.median(r[2] for r in rows)
        ray_best = f" {med['ray']:.4g} |" if has_ray else ""
        ray_share = f" {_pct(statistics.median(r[3] for r in rows))} |" if has_ray else ""
        out.append(f"| {task} | {med['random']:.4g} | {med['tpe']:.4g} | {med['default']:.4g} |"
                   f"{ray_best} {med['default'] / med['tpe']:.3f} | {_pct(share)} | {_pct(cpu)} |"
                   f"{ray_share}")  # fmt: skip
    rows = [r for task_rows in summary.values() for r in task_rows]
    met = sum(r[1] <= 0.4 for r in rows)
    reached = sum(math.isfinite(r[1]) for r in rows)
    better = sum(r[0]["default"] <= r[0]["tpe"] for r in rows)
    out += ["", f"Target (default reaches tpe's best with <= 40% of tpe's steps to it): met on "
            f"{met} of {len(rows)} task-seeds; reached at all on {reached} of {len(rows)}; "
            f"default's best <= tpe's on {better} of {len(rows)}.", ""]  # fmt: skip
    if has_ray:
        ray_met = sum(r[3] <= 0.4 for r in rows)
        ray_reached = sum(math.isfinite(r[3]) for r in rows)
        out += [f"Ray Tune's ASHA: within 40% on {ray_met} of {len(rows)}; reached tpe's best "
                f"on {ray_reached} of {len(rows)}.", ""]  # fmt: skip


# -- part F ------------------------------------------------------------------------------------


FIDELITY_TRIALS = 24
FRACTIONS = (8, 4, 2)  # the loss at 1/8, 1/4 and 1/2 of the trial


def part_f(tasks: list[str], out: list[str]) -> None:
    """Rank agreement between a trial's validation loss part-way and its final value."""
    from scipy.stats import spearmanr

    out += [f"## F. How well the loss at step s ranks trials by their final value "
            f"({FIDELITY_TRIALS} random configurations per task, full length)", "",
            "| task | step (of the trial) | rho, mean of 3 batches | rho, whole val | 3 best "
            "finals in the top quarter, batches | same, whole val |", "|" + "---|" * 6]  # fmt: skip
    for task in tasks:
        curves, finals = _fidelity_runs(TASKS[task]())
        for fraction in FRACTIONS:
            step = _point_at(curves, TRIAL_STEPS // fraction)
            cells = []
            for kind in ("batches", "whole"):
                then = [c.get(step, {}).get(kind, math.inf) for c in curves]
                rho = spearmanr(then, finals).correlation
                cells.append((rho, _kept(then, finals)))
            out.append(f"| {task} | {step} (1/{fraction}) | {cells[0][0]:.2f} | "
                       f"{cells[1][0]:.2f} | {cells[0][1]}/3 | {cells[1][1]}/3 |")  # fmt: skip
            print(out[-1], flush=True)
    out.append("")


def _fidelity_runs(setup_fn) -> tuple[list[dict], list[float]]:
    """FIDELITY_TRIALS random configurations trained to the end: per trial {step: {"batches":
    mean of the last 3 batch points, "whole": the whole validation set's}}, and final values."""
    from collections import deque

    import optuna

    from trainwise.sweep.hp import HyperParams, split_params
    from trainwise.sweep.space import build_space, suggest_all
    from trainwise.sweep.worker import quiet_optuna
    from trainwise.train.loop import fit

    quiet_optuna()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    curves, finals = [], []
    for _ in range(FIDELITY_TRIALS):
        params = suggest_all(study.ask(), build_space([], SPACE))
        recipe_values, setup_values = split_params(params)
        curve, recent = {}, deque(maxlen=3)
        due = [TRIAL_STEPS // f for f in FRACTIONS]  # the steps looked at, ascending

        def record(status, curve=curve, recent=recent, due=due) -> None:
            if status.val and "loss" in status.val:
                recent.append(status.val["loss"])
                if due and due[0] <= status.step:  # the first point at or past a step looked at
                    while due and due[0] <= status.step:
                        due.pop(0)
                    curve[status.step] = {"batches": sum(recent) / len(recent),
                                          "whole": status.evaluate()["loss"]}  # fmt: skip

        result = fit(setup_fn(HyperParams(setup_values)), steps=TRIAL_STEPS,
                     recipe=tw.Recipe(lr=1e-3, precision="fp32").replace(**recipe_values),
                     record=False, verbose=False, preset="cheap", on_progress=record)  # fmt: skip
        value = result.best.get("val_loss", math.inf)
        if math.isfinite(value):
            curves.append({s: {k: v if math.isfinite(v) else math.inf for k, v in point.items()}
                           for s, point in curve.items()})  # fmt: skip
            finals.append(value)
    return curves, finals


def _point_at(curves: list[dict], step: int) -> int:
    """The first validation point at or after `step` (where ASHA would judge a rung there)."""
    return min(s for curve in curves for s in curve if s >= step)


def _kept(then: list[float], finals: list[float]) -> int:
    """How many of the 3 best final trials are in the top quarter at that step."""
    top = set(sorted(range(len(then)), key=then.__getitem__)[: max(1, len(then) // 4)])
    return sum(i in top for i in sorted(range(len(finals)), key=finals.__getitem__)[:3])


def _pct(x: float) -> str:
    return "never" if not math.isfinite(x) else f"{100 * x:.0f}%"


def _steps(x: float) -> str:
    return "never" if not math.isfinite(x) else f"{x:.0f}"


# -- part B ------------------------------------------------------------------------------------


REPORTS = 50  # fit's validation points per trial


def storage_trial(study) -> float:
    t0 = time.perf_counter()
    trial = study.ask()
    for step in range(1, REPORTS + 1):
        trial.report(1.0 / step, step)
        trial.should_prune()
    study.tell(trial, 0.5)
    return (time.perf_counter() - t0) * 1000


def part_b(repeats: int, out: list[str]) -> None:
    import optuna

    from trainwise.sweep.storage import open_storage, resolve
    from trainwise.sweep.worker import quiet_optuna

    quiet_optuna()
    out += ["## B. Storage overhead per trial (no training; 50 reports + should_prune each)", ""]
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"SQLite (default)": None, "journal file": f"journal:{tmp}/journal.log"}
        server = _postgres(Path(tmp))
        if server is not None:
            urls["PostgreSQL"] = server.url
        studies = {}
        for name, url in urls.items():
            spec = resolve(url, Path(tmp))
            studies[name] = optuna.create_study(
                storage=open_storage(spec), study_name="overhead",
                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=2))  # fmt: skip
        times = {name: [] for name in studies}
        for _ in range(repeats):  # interleaved: A B C A B C
            for name, study in studies.items():
                times[name].append(storage_trial(study))
        if server is not None:
            server.stop()
    out += ["| storage | median ms per trial | ms per report | vs SQLite |", "|---|---|---|---|"]
    base = statistics.median(times["SQLite (default)"])
    for name, ts in times.items():
        med = statistics.median(ts)
        out.append(f"| {name} | {med:.1f} | {med / REPORTS:.2f} | {med / base:.2f}x |")
    if "PostgreSQL" not in times:
        out.append("| PostgreSQL | not measured: no PostgreSQL binaries found | | |")
    out.append("")


# -- part C ------------------------------------------------------------------------------------


def _hammer(url: str, trainwise_storage: bool, trials: int, errors) -> None:
    """One worker process: `trials` trials of 50 reports each, as fast as it can."""
    import optuna

    from trainwise.sweep.storage import open_storage, resolve
    from trainwise.sweep.worker import quiet_optuna

    quiet_optuna()
    storage = open_storage(resolve(url, Path("."))) if trainwise_storage else url
    study = optuna.load_study(study_name="locks", storage=storage)
    failed = 0
    for _ in range(trials):
        try:
            storage_trial(study)
        except Exception as exc:  # noqa: BLE001 - counted: "database is locked" is the point
            failed += 1
            errors.put(str(exc)[:200])
    errors.put(failed)


def part_c(workers: int, trials: int, out: list[str]) -> None:
    """SQLite with W processes writing at once: Optuna's plain URL (sqlite3's 5 s busy
    timeout, rollback journal) against trainwise's default file (60 s, write-ahead log)."""
    import multiprocessing

    import optuna

    from trainwise.sweep.storage import open_storage, resolve
    from trainwise.sweep.worker import quiet_optuna

    quiet_optuna()
    out += [f"## C. SQLite, {workers} processes writing at once ({trials} trials x {REPORTS} "
            "reports each, no training)", "",
            "| storage | trials failed | 'database is locked' | wall s |", "|---|---|---|---|"]  # fmt: skip
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        for name, ours in (("Optuna's plain sqlite:/// URL", False),
                           ("trainwise's default file (timeout 60 s, WAL)", True)):  # fmt: skip
            folder = Path(tmp) / ("ours" if ours else "plain")
            spec = resolve(None, folder)
            optuna.create_study(study_name="locks", storage=open_storage(spec) if ours else
                                (folder.mkdir() or spec.url))  # fmt: skip
            errors = context.Queue()
            t0 = time.time()
            procs = [context.Process(target=_hammer, args=(spec.url, ours, trials, errors))
                     for _ in range(workers)]  # fmt: skip
            for p in procs:
                p.start()
            messages, failed = [], 0
            for _ in range(workers):  # each worker ends with its count of failures
                item = errors.get()
                while not isinstance(item, int):
                    messages.append(item)
                    item = errors.get()
                failed += item
            for p in procs:
                p.join()
            locked = sum("database is locked" in m for m in messages)
            out.append(f"| {name} | {failed} / {workers * trials} | {locked} | "
                       f"{time.time() - t0:.0f} |")  # fmt: skip
    out.append("")


def _postgres(folder: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sweep"))
    try:
        from pgserver import PostgresServer, find_binaries
    except ImportError:
        return None
    if find_binaries() is None:
        return None
    return PostgresServer.start(folder / "pg")


def main() -> None:
    global BUDGET_TRIALS
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["a", "b", "c", "f", "rungs", "variants", "all"],
                        default="all", help="rungs (not in all): part R, the value at ASHA's "
                        "rungs, before/after; variants (not in all): part V, see --variant")
    parser.add_argument("--variant", dest="variants", action="append", choices=list(VARIANTS),
                        help="part V: a variant of the default arm (repeat; default: all)")
    parser.add_argument("--no-ray", dest="ray", action="store_false",
                        help="skip arm (d), Ray Tune's ASHA, even where Ray is installed")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="part V: seeds from this one")
    parser.add_argument("--budget-trials", type=int, default=BUDGET_TRIALS,
                        help="each arm's budget in full trials' worth of steps (parts A, R, V)")
    parser.add_argument("-k", dest="tasks", action="append", choices=list(TASKS))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results/sweep_pruning.md")
    args = parser.parse_args()
    BUDGET_TRIALS = args.budget_trials
    torch.set_num_threads(1)
    out = ["# benchmarks/sweep_pruning.py", "",
           f"`{' '.join(['python', *sys.argv])}`, torch {torch.__version__}, 1 thread", ""]
    t0 = time.time()
    if args.part in ("b", "all"):
        part_b(args.repeats, out)
        print("\n".join(out), flush=True)
    if args.part in ("c", "all"):
        part_c(4, 25, out)
        print("\n".join(out), flush=True)
    if args.part in ("a", "all"):
        part_a(args.tasks or list(TASKS), args.seeds, args.ray, out)
    if args.part in ("f", "all"):
        part_f(args.tasks or list(TASKS), out)
    if args.part == "rungs":
        part_rungs(args.tasks or list(TASKS), args.seeds, out)
    if args.part == "variants":
        part_variants(args.tasks or list(TASKS), args.seeds, args.variants or list(VARIANTS), out,
                      args.first_seed)
    out.append(f"Total wall time {time.time() - t0:.0f} s.")
    text = "\n".join(out) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
