"""How trainwise's suggestion rule was chosen: its variants, scored on the benchmark's oracle.

    .venv/bin/python benchmarks/lr_ablation.py

Runs trainwise's range test (5 seeds x 100 and 300 iterations) on every task of
benchmarks/lr_tasks.py, caches the raw curves, and scores rule variants (anchor: loss minimum or
divergence onset; margin below it, in decades) without further training: the regret of a
suggestion is read off the oracle's mean validation-loss curve, interpolated on log10(lr).
Needs the oracle (benchmarks/lr_oracle.py) in the cache. Also reports leave-one-task-out: the
margin chosen on 10 tasks, scored on the 11th, so the fit of one parameter is not hidden.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from lr_oracle import grid_means, load_cache  # noqa: E402
from lr_tasks import TASKS  # noqa: E402

from trainwise.lr_find import _landmarks, range_test, smooth_log_axis  # noqa: E402

CURVES = Path(__file__).parent / "results" / "lr_ablation_curves.json"
SEEDS = (0, 1, 2, 3, 4)
LENGTHS = (100, 300)
MARGINS = (0.5, 0.75, 1.0, 1.25, 1.5)


def _curves_job(index: int):
    torch.set_num_threads(1)
    task = TASKS[index]
    out = {}
    for n in LENGTHS:
        for seed in SEEDS:
            torch.manual_seed(seed)
            model = task.model()
            opt = task.make_optimizer(model.parameters(), 1e-3)
            r = range_test(model, task.loader(seed), task.make_loss(), opt, num_iter=n, seed=seed)
            out[f"{task.name}|n{n}|seed{seed}"] = [r.lrs.tolist(), r.losses.tolist()]
    return out


def curves(workers: int = 2) -> dict:
    cache = json.loads(CURVES.read_text()) if CURVES.exists() else {}
    todo = [i for i, t in enumerate(TASKS) if f"{t.name}|n300|seed4" not in cache]
    if todo:
        CURVES.parent.mkdir(parents=True, exist_ok=True)
        with mp.get_context("fork").Pool(workers) as pool:
            for got in pool.imap_unordered(_curves_job, todo):
                cache.update(got)
                CURVES.write_text(json.dumps(cache))
    return cache


def landmarks(lrs, losses):
    lrs, losses = np.array(lrs), np.array(losses, dtype=float)
    s = smooth_log_axis(lrs, losses)
    ok = np.isfinite(s)
    return _landmarks(np.log10(lrs[ok]), s[ok])


def regret_at(task, scores, x: float) -> float:
    lrs, means = grid_means(task, scores)
    best = float(np.min(means))
    finite = np.where(np.isfinite(means), means, np.nan)
    worst = np.nanmax(finite)
    filled = np.where(np.isfinite(means), means, max(worst, 10 * best))  # diverged side
    return (float(np.interp(x, np.log10(lrs), filled)) - best) / best


def main() -> None:
    scores = load_cache()
    data = curves()
    tasks = [t for t in TASKS if np.isfinite(grid_means(t, scores)[1]).any()]
    if len(tasks) < len(TASKS):
        print(f"oracle missing for {len(TASKS) - len(tasks)} tasks; scoring {len(tasks)}")
    marks = {
        (t.name, n): [landmarks(*data[f"{t.name}|n{n}|seed{s}"]) for s in SEEDS]
        for t in tasks
        for n in LENGTHS
    }
    anchors = {"onset": 0, "minimum": 1}
    table = {}
    for aname, ai in anchors.items():
        for m in MARGINS:
            regs, spreads, shifts = [], [], []
            for t in tasks:
                xs = {n: [mk[ai] - m for mk in marks[(t.name, n)] if mk] for n in LENGTHS}
                regs.append(regret_at(t, scores, float(np.median(xs[100]))))
                spreads.append(float(np.ptp(xs[100])))
                shifts.append(abs(float(np.median(xs[300]) - np.median(xs[100]))))
            table[(aname, m)] = regs
            print(
                f"{aname:8s} -{m:4.2f} dec: regret median {100 * np.median(regs):5.1f}% "
                f"worst {100 * np.max(regs):6.1f}% | seed spread median {np.median(spreads):.2f} "
                f"max {np.max(spreads):.2f} | 100->300 shift median {np.median(shifts):.2f} "
                f"max {np.max(shifts):.2f}"
            )
    # Leave one task out: pick the margin (onset anchor) on the others, score the held-out task.
    held = []
    for i, t in enumerate(tasks):
        best_m = min(
            MARGINS,
            key=lambda m: np.median([r for j, r in enumerate(table[("onset", m)]) if j != i]),
        )
        held.append(table[("onset", best_m)][i])
        print(f"  leave out {t.name:27s}: margin {best_m:.2f} -> regret {100 * held[-1]:.1f}%")
    print(
        f"leave-one-task-out regret: median {100 * np.median(held):.1f}% worst {100 * np.max(held):.1f}%"
    )


if __name__ == "__main__":
    main()
