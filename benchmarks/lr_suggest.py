"""Benchmark: how good and how stable is each LR finder's suggestion?

    .venv/bin/python benchmarks/lr_suggest.py            # everything (cached: reruns are cheap)
    .venv/bin/python benchmarks/lr_suggest.py --tasks digits-mlp-adamw --workers 1

Needs the `bench` extra (`pip install -e ".[bench]"`): lightning, torch-lr-finder, mnist1d.

For each task of benchmarks/lr_tasks.py:
- the oracle (benchmarks/lr_oracle.py): fixed-budget training at every LR of a log grid (4 per
  decade, 3 seeds); the best mean validation loss;
- each method's suggestion from 5 seeds x 2 sweep lengths (100 and 300 iterations):
    trainwise          `tw.lr_find` (the range test alone, divergence onset - 0.5 decade)
    trainwise-trials   `tw.lr_find(..., trial_steps=task.steps, val=...)`: the range test,
                       then trial runs as long as the task's budget at 6-8 LRs under the onset
    trainwise-trials-3/8  the same with trial runs of 3/8 of the budget
    lightning          `Tuner(trainer).lr_find(...).suggestion()` from the real `lightning`
    torch-lr-finder    `LRFinder.range_test` + `plot(suggest_lr=True)` from `torch-lr-finder`
    fastai-valley      fastai's sweep and its "valley" rule, re-implemented from fastai's docs
                       and source (fastai itself needs torchvision)
  every method with its package's own defaults for the LR range;
- regret = (validation loss trained at the method's suggestion - oracle) / oracle, trained with
  the same budget and 3 seeds at the median of the 5 seeds' suggestions at 100 iterations;
- spread, in decades: max - min of log10(suggestion) over the 5 seeds (100 iterations), and the
  shift |median at 300 - median at 100| between the sweep lengths;
- the noise floor: the oracle's own LR trained again on 3 fresh seeds, scored like a method.
Scores and suggestions are cached as JSON under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from lr_oracle import (  # noqa: E402
    SEEDS,
    fill_oracle,
    grid_means,
    key,
    load_cache,
    oracle,
    save_cache,
)
from lr_tasks import TASKS, Task, train_and_validate  # noqa: E402

SUGGESTIONS = Path(__file__).parent / "results" / "lr_suggest_suggestions.json"
METHODS = (
    "trainwise",
    "trainwise-trials",
    "trainwise-trials-3/8",
    "lightning",
    "torch-lr-finder",
    "fastai-valley",
)
SWEEP_SEEDS = (0, 1, 2, 3, 4)
SWEEP_LENGTHS = (100, 300)
TRIAL_SHARE_SHORT = 3 / 8


def _fresh(task: Task, seed: int, lr: float):
    torch.manual_seed(seed)
    model = task.model()
    return model, task.make_optimizer(model.parameters(), lr)


# -- the methods: each returns the suggested LR (or None) -------------------------------------


def suggest_trainwise(task: Task, seed: int, num_iter: int) -> float | None:
    import trainwise as tw

    model, opt = _fresh(task, seed, 1e-3)
    return tw.lr_find(
        model, task.loader(seed), task.make_loss(), opt, num_iter=num_iter, seed=seed
    ).suggested_lr


def suggest_trainwise_trials(
    task: Task, seed: int, num_iter: int, share: float = 1.0
) -> dict | None:
    """The range test, then trial runs of the task's own budget (`trial_steps=task.steps`, or
    `share` of it), scored on the task's validation set (what `tw.lr_find(setup,
    trial_steps=...)` does with a Setup that has `val`). Returns the raw trials: the pick is
    recomputed at summary time, so a change to the pick rule alone needs no new training."""
    from lr_tasks import DATASETS
    from torch.utils.data import DataLoader, TensorDataset

    import trainwise as tw

    _, _, xv, yv = DATASETS[task.data]()
    val = DataLoader(TensorDataset(xv, yv), batch_size=1024)
    model, opt = _fresh(task, seed, 1e-3)
    result = tw.lr_find(
        model, task.loader(seed), task.make_loss(), opt, num_iter=num_iter, seed=seed,
        trial_steps=round(share * task.steps), val=val, record=False,
    )  # fmt: skip
    if result.trials is None:
        return None
    return result.trials.to_dict()


def suggest_trainwise_trials_short(task: Task, seed: int, num_iter: int) -> dict | None:
    """Cheaper trials: each runs 3/8 of the budget (6 trials cost about 2.3 full runs); the
    pick is scored against the oracle of the full budget."""
    return suggest_trainwise_trials(task, seed, num_iter, share=TRIAL_SHARE_SHORT)


def suggest_lightning(task: Task, seed: int, num_iter: int) -> float | None:
    import lightning as L
    from lightning.pytorch.tuner import Tuner

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.net = task.model()
            self.loss_fn = task.make_loss()
            self.lr = 1e-3

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return self.loss_fn(self.net(x), y)

        def configure_optimizers(self):
            return task.make_optimizer(self.parameters(), self.lr)

    module = Module()
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as root:
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
        )
        finder = Tuner(trainer).lr_find(
            module, train_dataloaders=task.loader(seed), num_training=num_iter, update_attr=False
        )
        return None if finder is None else finder.suggestion()


def suggest_torch_lr_finder(task: Task, seed: int, num_iter: int) -> float | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from torch_lr_finder import LRFinder

    # The package's README: an optimizer at a tiny LR (the sweep's start), end_lr its default 10.
    model, opt = _fresh(task, seed, 1e-7)
    finder = LRFinder(model, opt, task.make_loss(), device="cpu")
    fig, ax = plt.subplots()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            finder.range_test(task.loader(seed), end_lr=10, num_iter=num_iter)
            _, lr = finder.plot(ax=ax, suggest_lr=True)
    except (RuntimeError, ValueError):
        return None  # too few points before divergence
    finally:
        plt.close(fig)
    return float(lr)


def suggest_fastai_valley(task: Task, seed: int, num_iter: int) -> float | None:
    """fastai's `Learner.lr_find(suggest_funcs=valley)`, re-implemented from its docs/source.

    Sweep: lr = start * (end/start) ** (i / num_it), start 1e-7, end 10; the recorded loss is
    fastai's smooth loss (EMA, beta 0.98, debiased); stop once it exceeds 4x its best. The
    suggestion reads the curve without its first num_it//10 and last 5 points: the longest
    strictly-descending subsequence (the "valley"), and the point 1/3 + 1/6 of the way along.
    """
    model, opt = _fresh(task, seed, 1e-7)
    loss_fn, loader = task.make_loss(), task.loader(seed)
    start, end, beta = 1e-7, 10.0, 0.98
    lrs, smooth_losses = [], []
    avg, best = 0.0, math.inf
    batches = _cycle(loader)
    model.train()
    for i in range(num_iter):
        lr = start * (end / start) ** (i / num_iter)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = next(batches)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        avg = beta * avg + (1 - beta) * float(loss.detach())  # torch.lerp in fastai
        smooth = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        smooth_losses.append(smooth)
        if not math.isfinite(smooth) or smooth > 4 * best:
            break
        best = min(best, smooth)
    lrs, losses = lrs[num_iter // 10 : -5], smooth_losses[num_iter // 10 : -5]
    if len(losses) < 2:
        return None
    return _valley(lrs, losses)


def _valley(lrs: list[float], losses: list[float]) -> float:
    """fastai.callback.schedule.valley: the longest valley, then 2/3 down its length... as coded:
    start + int(len/3) + int(len/6)."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return float(lrs[idx])


def _cycle(loader):
    while True:
        yield from loader


METHOD_FUNCS = {
    "trainwise": suggest_trainwise,
    "trainwise-trials": suggest_trainwise_trials,
    "trainwise-trials-3/8": suggest_trainwise_trials_short,
    "lightning": suggest_lightning,
    "torch-lr-finder": suggest_torch_lr_finder,
    "fastai-valley": suggest_fastai_valley,
}


def method_version(method: str) -> str:
    """Cache key part: trainwise's suggestions are recomputed when the code that makes them
    (the sweep, the smoothing, the rule and its constants) changes, not for a docs edit."""
    if not method.startswith("trainwise"):
        return "v1"
    import importlib
    import inspect

    mod = importlib.import_module("trainwise.lr_find")  # the module, not tw.lr_find the function
    parts = [
        inspect.getsource(getattr(mod, name))
        for name in ("range_test", "smooth_log_axis", "suggest", "_landmarks")
    ]
    parts.append(inspect.getsource(importlib.import_module("trainwise.lr_loop")))
    parts.append(repr([mod.DEFAULT_START_LR, mod.DEFAULT_END_LR, mod.DIVERGE_FACTOR]))
    parts.append(repr([mod.BANDWIDTH, mod.MARGIN, mod.FLOOR_SHIFT, mod.RISE]))
    if method.startswith("trainwise-trials"):  # the trials' training, not the pick (re-made)
        trials = importlib.import_module("trainwise.lr_trials")
        parts += [inspect.getsource(getattr(trials, n)) for n in ("run_trials", "_trial")]
        parts.append(repr([trials.STEP, trials.FIRST, trials.LAST, trials.EXTEND]))
        parts.append(repr([trials.DIVERGED, trials.TAIL]))
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:10]


def as_lr(value) -> float | None:
    """A cached suggestion: an LR, or raw trials (dict) whose pick is made now."""
    if isinstance(value, dict):
        from trainwise.lr_trials import pick_from

        return pick_from(value)
    return value


# -- running ---------------------------------------------------------------------------------


def _quiet() -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _suggest_job(args):
    """All sweeps of one (task, method); returns {cache key: suggestion}."""
    index, method, version, todo = args
    _quiet()
    task = TASKS[index]
    out = {}
    for k, seed, n in todo:
        try:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                lr = METHOD_FUNCS[method](task, seed, n)
        except Exception as exc:  # a method that crashes scores "no suggestion", reported
            print(
                f"{task.name} {method} seed {seed} n {n}: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            lr = None
        if isinstance(lr, dict):
            out[k] = lr
        else:
            out[k] = None if lr is None or not math.isfinite(lr) else float(lr)
    return out


def skey(task: Task, method: str, version: str, n: int, seed: int) -> str:
    return f"{task.name}|{method}|{version}|n{n}|seed{seed}"


def collect_suggestions(tasks: list[Task], methods, workers: int) -> dict:
    cache = json.loads(SUGGESTIONS.read_text()) if SUGGESTIONS.exists() else {}
    jobs = []
    for t in tasks:
        for m in methods:
            v = method_version(m)
            todo = [
                (skey(t, m, v, n, s), s, n)
                for n in SWEEP_LENGTHS
                for s in SWEEP_SEEDS
                if skey(t, m, v, n, s) not in cache
            ]
            if todo:
                jobs.append((TASKS.index(t), m, v, todo))
    if jobs:
        with mp.get_context("fork").Pool(workers) as pool:
            for got in pool.imap_unordered(_suggest_job, jobs):
                cache.update(got)
                SUGGESTIONS.parent.mkdir(parents=True, exist_ok=True)
                # Merge with what another run may have written meanwhile, then write.
                on_disk = json.loads(SUGGESTIONS.read_text()) if SUGGESTIONS.exists() else {}
                cache = {**on_disk, **cache}
                SUGGESTIONS.write_text(json.dumps(cache, indent=0, sort_keys=True))
    return cache


def _score_job(args):  # one (task, lr, seed) training run
    index, lr, seed = args
    _quiet()
    task = TASKS[index]
    return key(task, lr, seed), train_and_validate(task, lr, seed)


def score_lrs(pairs: list[tuple[Task, float]], workers: int, seeds=SEEDS) -> dict:
    """Train on `seeds` at every (task, lr) not yet in the score cache; the score cache."""
    cache = load_cache()
    todo = sorted(
        {(TASKS.index(t), lr, s) for t, lr in pairs for s in seeds if key(t, lr, s) not in cache}
    )
    if todo:
        with mp.get_context("fork").Pool(workers) as pool:
            for k, v in pool.imap_unordered(_score_job, todo):
                cache[k] = v
        save_cache(cache)
    return cache


FRESH_SEEDS = (3, 4, 5)


def fresh_mean(task: Task, lr: float, cache: dict) -> float:
    return float(np.mean([cache[key(task, lr, s)] for s in FRESH_SEEDS]))


def add_fresh_seed_scores(tasks: list[Task], rows: dict, methods, workers: int) -> None:
    """Two measurements on 3 fresh seeds (3, 4, 5), which took no part in choosing anything.

    `noise_floor`: the oracle's own best LR trained again, against the oracle. The oracle is the
    minimum of ~15 noisy 3-seed means, so it is biased low (the winner's curse): even its own LR
    does not reach it again. `fresh_regret[method]`: the method's LR against the oracle's LR,
    both on the fresh seeds: a regret with no winner's curse in its reference."""
    pairs = [(t, rows[t.name]["oracle_lr"]) for t in tasks]
    pairs += [(t, rows[t.name][m]["lr"]) for t in tasks for m in methods if rows[t.name][m]["lr"]]
    cache = score_lrs(pairs, workers, seeds=FRESH_SEEDS)
    for t in tasks:
        row = rows[t.name]
        reference = fresh_mean(t, row["oracle_lr"], cache)
        row["noise_floor"] = (reference - row["oracle_loss"]) / row["oracle_loss"]
        for m in methods:
            lr = row[m]["lr"]
            loss = fresh_mean(t, lr, cache) if lr else math.inf
            row[m]["fresh_regret"] = (loss - reference) / reference


def print_fresh(rows: dict, methods) -> str:
    lines = [f"{'regret on 3 fresh seeds vs the oracle LR':44s} {'median':>8s} {'worst':>10s}"]
    for m in methods:
        regrets = [rows[n][m]["fresh_regret"] for n in rows]
        lines.append(
            f"{m:44s} {_pct(float(np.median(regrets))):>8s} {_pct(float(np.max(regrets))):>10s}"
        )
    text = "\n".join(lines)
    print(text)
    return text


def rounded(lr: float) -> float:
    return float(f"{lr:.3g}")  # suggestions that agree to 3 digits share their training runs


def summarize(tasks, methods, sugg, scores):
    rows = {}
    for t in tasks:
        best_lr, best_loss = oracle(t, scores)
        row = {"oracle_lr": best_lr, "oracle_loss": best_loss}
        for m in methods:
            v = method_version(m)
            by_n = {
                n: [as_lr(sugg.get(skey(t, m, v, n, s))) for s in SWEEP_SEEDS]
                for n in SWEEP_LENGTHS
            }
            cell: dict = {"suggestions": by_n}
            base = [x for x in by_n[SWEEP_LENGTHS[0]] if x]
            other = [x for x in by_n[SWEEP_LENGTHS[1]] if x]
            if len(base) < len(SWEEP_SEEDS) // 2 + 1:
                cell.update(lr=None, regret=math.inf, seed_spread=math.nan, iter_shift=math.nan)
            else:
                lr = rounded(10 ** float(np.median(np.log10(base))))
                loss = float(np.mean([scores[key(t, lr, s)] for s in SEEDS]))
                cell.update(
                    lr=lr,
                    loss=loss,
                    regret=(loss - best_loss) / best_loss,
                    seed_spread=float(np.ptp(np.log10(base))),
                    iter_shift=(
                        abs(float(np.median(np.log10(other)) - np.median(np.log10(base))))
                        if other
                        else math.nan
                    ),
                )
            row[m] = cell
        rows[t.name] = row
    return rows


def print_table(rows, methods) -> str:
    lines = []
    head = f"{'task':27s} {'oracle lr':>9s} {'floor':>6s} " + " ".join(f"{m:>27s}" for m in methods)
    sub = f"{'':27s} {'':>9s} {'':>6s} " + " ".join(
        f"{'lr':>8s} {'regret':>7s} {'seed':>4s} {'iter':>5s}" for _ in methods
    )
    lines += [head, sub]
    for name, row in rows.items():
        cells = []
        for m in methods:
            c = row[m]
            lr = f"{c['lr']:.1e}" if c["lr"] else "none"
            cells.append(
                f"{lr:>8s} {_pct(c['regret']):>7s} {c['seed_spread']:4.2f} {c['iter_shift']:5.2f}"
            )
        floor = _pct(row.get("noise_floor", math.nan)) if "noise_floor" in row else "-"
        lines.append(f"{name:27s} {row['oracle_lr']:9.1e} {floor:>6s} " + " ".join(cells))
    for label, fn in (("median", np.median), ("worst", np.max)):
        cells = []
        for m in methods:
            reg = [rows[n][m]["regret"] for n in rows]
            sp = [rows[n][m]["seed_spread"] for n in rows]
            sh = [rows[n][m]["iter_shift"] for n in rows]
            cells.append(
                f"{'':>8s} {_pct(fn(reg)):>7s} {np.nan_to_num(fn(sp), nan=9):4.2f} "
                f"{np.nan_to_num(fn(sh), nan=9):5.2f}"
            )
        floors = [rows[n]["noise_floor"] for n in rows if "noise_floor" in rows[n]]
        floor = _pct(fn(floors)) if floors else "-"
        lines.append(f"{label:27s} {'':9s} {floor:>6s} " + " ".join(cells))
    text = "\n".join(lines)
    print(text)
    return text


def _pct(x: float) -> str:
    return "diverg" if not math.isfinite(x) else f"{100 * x:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="*", help="task names (default: all)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    tasks = [t for t in TASKS if not args.tasks or t.name in args.tasks]
    t0 = time.time()
    scores = fill_oracle(tasks, args.workers, log=lambda s: print(s, file=sys.stderr))
    print(f"oracle ready ({time.time() - t0:.0f}s)", file=sys.stderr)
    sugg = collect_suggestions(tasks, args.methods, args.workers)
    print(f"suggestions ready ({time.time() - t0:.0f}s)", file=sys.stderr)
    pending = []
    for t in tasks:
        for m in args.methods:
            v = method_version(m)
            base = [as_lr(sugg.get(skey(t, m, v, SWEEP_LENGTHS[0], s))) for s in SWEEP_SEEDS]
            base = [x for x in base if x]
            if len(base) >= len(SWEEP_SEEDS) // 2 + 1:
                pending.append((t, rounded(10 ** float(np.median(np.log10(base))))))
    scores = score_lrs(pending, args.workers)
    print(f"regret runs ready ({time.time() - t0:.0f}s)", file=sys.stderr)
    rows = summarize(tasks, args.methods, sugg, scores)
    add_fresh_seed_scores(tasks, rows, args.methods, args.workers)
    print(
        "\nregret: (val loss at the median suggestion - oracle) / oracle, same budget, 3 seeds"
        "\nfloor: the regret of the oracle's own LR trained again on 3 fresh seeds (its noise)"
        "\nseed: max-min log10(suggestion) over 5 seeds at 100 iterations (decades)"
        "\niter: |median at 300 - median at 100 iterations| (decades)\n"
    )
    text = print_table(rows, args.methods) + "\n\n" + print_fresh(rows, args.methods)
    out = Path(__file__).parent / "results" / "lr_suggest_table.txt"
    out.write_text(text + "\n")
    (out.with_suffix(".json")).write_text(json.dumps(rows, indent=1, default=str))
    for t in tasks:
        lrs, means = grid_means(t, scores)
        print(
            f"{t.name:27s} oracle curve: "
            + " ".join(
                f"{lr:.0e}:{m:.3f}" if math.isfinite(m) else f"{lr:.0e}:div"
                for lr, m in zip(lrs, means, strict=True)
            ),
            file=sys.stderr,
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
