"""Benchmark: what each tip of `tw.Recipe()` does on several tasks, measured by `tw.ablate`.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/tips_effects.py [-k digits] [--seeds 3]

The seeds (../shared/seeds/) state each tip as a belief; this prints, per task, the ablation
table `trainwise ablate` prints (the default recipe with every tip on, against the same recipe
with one tip off, paired seeds, mean difference and its bootstrap 90% interval, a verdict),
then one line per tip: the belief next to the verdicts across the tasks. Tasks are those of
benchmarks/fit_recipe.py part A (scikit-learn digits, MNIST-1D generated offline, a GRU on
synthetic sequences, Friedman #1 regression), each at its epochs there. Results:
benchmarks/results/tips_effects.md.

The helper tips (issue 17's second half) on the tasks they apply to, a reduced run
(benchmarks/results/tips_effects_helpers.md; finetune and freeze-batchnorm are left out: these
tasks train from scratch, and benchmarks/finetune.py measures them on a pretrained body):

    python benchmarks/tips_effects.py --tasks digits-cnn,mnist1d-cnn,friedman-mlp \
        --tips tta,progressive-resize,y-range
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import trainwise as tw
from trainwise.train.ablate import TIPS

sys.path.insert(0, str(Path(__file__).parent))
from fit_recipe import TASKS  # noqa: E402

DEFAULT_TASKS = ("digits-mlp", "mnist1d-cnn", "gru-sequence", "friedman-mlp")


def _progress(task: str):
    def show(tip: str, on: bool, seed: int, value: float) -> None:
        state = "on" if on else "off"
        print(f"  {task}: {tip} {state} seed {seed}: {value:.4g}", file=sys.stderr, flush=True)

    return show


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="match", default="", help="only tasks whose name has this")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tips", default=",".join(TIPS), help="comma-separated tip slugs")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                        help=f"comma-separated tasks of fit_recipe.py ({', '.join(TASKS)})")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.process_time()
    print(f"# tips_effects  torch {torch.__version__}, trainwise {tw.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, {args.seeds} seeds\n")  # fmt: skip
    verdicts: dict[str, list[str]] = {tip: [] for tip in args.tips.split(",")}
    for name in (n for n in args.tasks.split(",") if args.match in n):
        task = TASKS[name]
        result = tw.ablate(
            task.build(), list(verdicts), epochs=task.epochs, seeds=args.seeds, record=False,
            on_run=_progress(name),
        )  # fmt: skip
        print(f"## {name} ({task.epochs} epochs, metric {result.metric})\n")
        print(result.markdown() + "\n", flush=True)
        for effect in result.tips:
            verdicts[effect.tip].append(
                f"{name}: {'skipped' if effect.skipped else effect.verdict}"
            )
    print("## The seeds' beliefs against what was measured here\n")
    print("| tip | belief | measured (task: verdict) |\n|---|---|---|")
    for tip, seen in verdicts.items():
        print(f"| {tip} | {TIPS[tip].belief} | {'; '.join(seen)} |")
    print(f"\n(total {time.process_time() - started:.0f} s CPU)")


if __name__ == "__main__":
    main()
