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
              1/32 of a trial, reduction factor 4), reporting the validation loss at fit's
              validation points; pruned trials cost only the steps they ran
   The trial code is trainwise's own (trainwise.sweep.objective.run_trial, the samplers and
   pruners of trainwise.sweep.plan). Per task and seed (the seed of the sampler and of every
   trial's fit): each arm's best loss, and the compute (training steps, and wall seconds) each
   arm needed before its best so far first reached tpe's final best. Reported: medians over
   the seeds, and the ratios default/tpe side by side. Target: default reaches tpe's best with
   <= 40% of tpe's compute.

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


def run_arm(setup_fn, arm: str, seed: int, folder: Path) -> list[tuple[int, float, float | None]]:
    """Trials until the step budget is spent: [(steps, seconds, value or None)] in order."""
    import optuna

    from trainwise.sweep.objective import TrialStopped, run_trial
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
        pruner="asha" if arm == "default" else "none",
    )  # fmt: skip
    study = optuna.create_study(sampler=build_sampler(plan, 0), pruner=build_pruner(plan.pruner))
    budget, spent, log = BUDGET_TRIALS * TRIAL_STEPS, 0, []
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
    return log


def reach(log, target: float) -> tuple[float, float]:
    """(steps, seconds) spent until the best so far first reached `target` (inf: never)."""
    steps = secs = 0.0
    for s, t, v in log:
        steps, secs = steps + s, secs + t
        if v is not None and v <= target * (1 + 1e-9):
            return steps, secs
    return math.inf, math.inf


def part_a(tasks: list[str], seeds: int, out: list[str]) -> None:
    out += [f"## A. Search at a fixed budget ({BUDGET_TRIALS} x {TRIAL_STEPS} training steps per "
            f"arm, {seeds} seeds)", ""]
    out += ["| task | seed | best random | best tpe | best default (tpe+asha) | trials r/t/d | "
            "pruned | default: steps to tpe's best (share of tpe's) | tpe: steps to its best | "
            "default: CPU s to tpe's best (share) |", "|" + "---|" * 10]
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            setup_fn = TASKS[task]()
            rows = []
            for seed in range(seeds):
                logs = {arm: run_arm(setup_fn, arm, seed, Path(tmp)) for arm in ARMS}
                best = {a: min((v for *_, v in logs[a] if v is not None), default=math.inf)
                        for a in ARMS}  # fmt: skip
                tpe_steps, tpe_secs = reach(logs["tpe"], best["tpe"])
                d_steps, d_secs = reach(logs["default"], best["tpe"])
                pruned = sum(1 for s, _, v in logs["default"] if v is None)
                share = d_steps / tpe_steps
                cpu_share = d_secs / tpe_secs
                rows.append((best, share, cpu_share))
                out.append(
                    f"| {task} | {seed} | {best['random']:.4g} | {best['tpe']:.4g} | "
                    f"{best['default']:.4g} | {len(logs['random'])}/{len(logs['tpe'])}/"
                    f"{len(logs['default'])} | {pruned} | "
                    f"{_steps(d_steps)} ({_pct(share)}) | {_steps(tpe_steps)} | "
                    f"{d_secs:.1f} ({_pct(cpu_share)}) |")  # fmt: skip
                print(out[-1], flush=True)
            summary[task] = rows
    out += ["", "Medians over the seeds (default vs tpe, side by side):", "",
            "| task | best random | best tpe | best default | default/tpe best | default's "
            "steps to tpe's best, share of tpe's steps to it | same in CPU time |",
            "|" + "---|" * 7]  # fmt: skip
    for task, rows in summary.items():
        med = {a: statistics.median(r[0][a] for r in rows) for a in ARMS}
        share = statistics.median(r[1] for r in rows)
        cpu = statistics.median(r[2] for r in rows)
        out.append(f"| {task} | {med['random']:.4g} | {med['tpe']:.4g} | {med['default']:.4g} | "
                   f"{med['default'] / med['tpe']:.3f} | {_pct(share)} | {_pct(cpu)} |")  # fmt: skip
    out.append("")


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
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["a", "b", "c", "all"], default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("-k", dest="tasks", action="append", choices=list(TASKS))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results/sweep_pruning.md")
    args = parser.parse_args()
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
        part_a(args.tasks or list(TASKS), args.seeds, out)
    out.append(f"Total wall time {time.time() - t0:.0f} s.")
    text = "\n".join(out) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
