"""The oracle of the LR-suggestion benchmark: fixed-budget training on a log grid, cached.

For every task: train with `train_and_validate` at each LR of a log grid (4 points per decade)
with 3 seeds, and take the LR with the best mean validation loss. Every (task, LR, seed) score is
cached in benchmarks/results/lr_suggest_scores.json, so reruns only train what is missing.
Runs in 2 worker processes with one thread each (the machine is shared).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
from lr_tasks import TASKS, Task, train_and_validate

CACHE = Path(__file__).parent / "results" / "lr_suggest_scores.json"
SEEDS = (0, 1, 2)


def key(task: Task, lr: float, seed: int) -> str:
    # The key holds what changes the score, so editing a task invalidates its entries.
    return f"{task.name}|{task.optimizer}|b{task.batch_size}|s{task.steps}|lr{lr:.4g}|seed{seed}"


def load_cache() -> dict[str, float | None]:
    if CACHE.exists():
        return json.loads(CACHE.read_text())
    return {}


def save_cache(cache: dict) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    cache.update({k: v for k, v in load_cache().items() if k not in cache})  # another run's
    tmp = CACHE.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=0, sort_keys=True))
    os.replace(tmp, CACHE)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _grid_scores(task: Task, cache: dict) -> dict[str, float | None]:
    """Scores of one task's grid, low LR to high. Once every seed at an LR diverged (or lands
    above 3x the best mean so far), the higher LRs are recorded as None: not run, diverged side.
    """
    out: dict[str, float | None] = {}
    best = math.inf
    skipping = False
    for lr in task.grid():
        scores = []
        for seed in SEEDS:
            k = key(task, lr, seed)
            if skipping:
                out[k] = cache.get(k)
                continue
            value = cache[k] if k in cache else train_and_validate(task, lr, seed)
            out[k] = value
            scores.append(value)
        if skipping:
            continue
        mean = float(np.mean(scores))
        best = min(best, mean)
        skipping = all(math.isinf(s) for s in scores) or mean > 3 * best
    return out


def _run_one(args):
    index, cache = args  # the task by index: its lambdas do not pickle
    task = TASKS[index]
    return task.name, _grid_scores(task, cache)


def fill_oracle(tasks: list[Task], workers: int = 2, log=print) -> dict:
    cache = load_cache()
    tasks = sorted(tasks, key=lambda t: -t.steps * t.batch_size)  # the longest first
    jobs = [
        (TASKS.index(t), {k: v for k, v in cache.items() if k.startswith(t.name + "|")})
        for t in tasks
    ]
    with mp.get_context("fork").Pool(workers, initializer=_init_worker) as pool:
        for name, scores in pool.imap_unordered(_run_one, jobs):
            cache.update(scores)
            save_cache(cache)
            log(f"oracle: {name} done")
    return cache


def grid_means(task: Task, cache: dict) -> tuple[np.ndarray, np.ndarray]:
    """(lrs, mean validation loss over seeds); +inf where diverged or not run (diverged side)."""
    lrs, means = [], []
    for lr in task.grid():
        vals = [cache.get(key(task, lr, s)) for s in SEEDS]
        vals = [math.inf if v is None else v for v in vals]
        lrs.append(lr)
        means.append(float(np.mean(vals)))
    return np.array(lrs), np.array(means)


def oracle(task: Task, cache: dict) -> tuple[float, float]:
    """(best LR on the grid, its mean validation loss)."""
    lrs, means = grid_means(task, cache)
    i = int(np.argmin(means))
    return float(lrs[i]), float(means[i])


if __name__ == "__main__":
    import sys

    names = set(sys.argv[1:])
    chosen = [t for t in TASKS if not names or t.name in names]
    cache = fill_oracle(chosen)
    for t in chosen:
        lr, loss = oracle(t, cache)
        print(f"{t.name:28s} best lr {lr:.3g}  val loss {loss:.4f}")
