"""Benchmark: which reading of the LR range test should `tw.fit`'s lr="auto" use?

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/fit_lr_auto.py [-k transformer] [--variants ..]

Every task of benchmarks/fit_recipe.py part A, the default Recipe, 3 seeds, with the LR that
lr="auto" resolves to taken from each variant of trainwise's range test:
  single    lr_find(setup, seed=seed): one sweep, its edge-of-stability suggestion (the default
            before this benchmark)
  seeds3    lr_find(..., seeds=3): the median of three sweeps' suggestions
  trials/8  lr_find(..., trial_steps=total/8): the sweep, then trial runs an eighth of the run
            long at candidate LRs under the divergence onset, the best of them (lr_trials.py)
  trials/4  the same with trials a quarter of the run long
Reported per task: the final validation metric (mean±std over the seeds), the LRs picked, the
CPU seconds per run (range test and trials included), and the regret against the oracle of
benchmarks/results/fit_recipe.md (a grid of 7 LRs x 2 schedules, same epochs and seeds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parent))
from fit_recipe import TASKS  # noqa: E402

import trainwise.train.loop as loop  # noqa: E402

# The oracle of benchmarks/results/fit_recipe.md part A (mean over the same 3 seeds).
ORACLE = {"digits-mlp": 0.9856, "digits-cnn": 0.9933, "mnist1d-cnn": 0.9592,
          "gru-sequence": 0.9590, "transformer": 1.0, "friedman-mlp": 0.0159}  # fmt: skip
VARIANTS = {
    "single": lambda total: {},
    "seeds3": lambda total: {"seeds": 3},
    "trials/8": lambda total: {"trial_steps": max(20, total // 8)},
    "trials/4": lambda total: {"trial_steps": max(20, total // 4)},
}


def _with_variant(name: str, total: int):
    """fit's range test, read as `name` says."""
    from trainwise.lr_find import lr_find

    def range_test_lr(setup, recipe, seed):
        probe = __import__("dataclasses").replace(setup, optimizer=loop._optimizer_factory(setup, recipe))
        found = lr_find(probe, seed=seed, record=False, **VARIANTS[name](total))
        return float(found.suggested_lr or loop.FALLBACK_LR), f"lr auto ({name})"

    return range_test_lr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-k", dest="match", default="")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    original = loop._range_test_lr
    rows = []
    for task in (t for n, t in TASKS.items() if args.match in n):
        setup = task.build()
        per_epoch = len(setup.train_loader())
        total = task.epochs * per_epoch
        for variant in args.variants.split(","):
            loop._range_test_lr = _with_variant(variant, total)
            values, lrs, cpu = [], [], []
            for seed in range(args.seeds):
                started = time.process_time()
                result = tw.fit(setup, epochs=task.epochs, seed=seed, record=False, verbose=False)
                cpu.append(time.process_time() - started)
                values.append(result.metrics[task.metric])
                lrs.append(result.recipe.lr)
            loop._range_test_lr = original
            mean = float(np.mean(values))
            oracle = ORACLE[task.name]
            regret = (100 * (mean - oracle) / oracle) if task.regression else 100 * (oracle - mean)
            unit = "%" if task.regression else "pt"
            shown = f"{mean:.4f}±{np.std(values):.4f}" if task.regression else (
                f"{100 * mean:5.2f}±{100 * np.std(values):4.2f}")
            row = (f"{task.name:13s} {variant:9s} {shown:>15s}  regret {regret:+6.2f}{unit:2s}  "
                   f"lr {', '.join(f'{v:.2g}' for v in lrs):24s} cpu/run {np.mean(cpu):5.1f}s")
            print(row, flush=True)
            rows.append(row)
    print("\n".join(["", *rows]))


if __name__ == "__main__":
    main()
