"""How fast `trainwise runs` is on 1000 run records (the issue asks for under 1 s).

Makes one real record (a short watch-style run: 200 steps of metrics, per-layer signals,
findings), copies it to N run folders with their own id, start time and learning rate, then
measures, interleaved A B A B with medians:

1. the table itself, in process: list_runs + table_rows (reads run.json only: lazy) against
   an eager reader that also parses every metrics.jsonl and findings.json;
2. the `trainwise runs` command end to end (a subprocess) on the N runs, against the same
   command on an empty folder: the difference is what the runs cost, the rest is start-up;
3. what recording costs a training loop: microseconds per run.log_metrics call (4 scalars),
   with TensorBoard events and without.

    python benchmarks/runs_speed.py            # N = 1000, 7 rounds
    python benchmarks/runs_speed.py -n 200 -r 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trainwise.runs import list_runs, start
from trainwise.runs.table import table_rows


def make_runs(root: Path, n: int) -> None:
    with start("watch", name="template", config={"lr": 1e-3, "batch_size": 64}, root=root / "t",
               tensorboard=False, html=False) as run:  # fmt: skip
        for step in range(200):
            run.log_metrics(step, {"train/loss": 2.0 / (step + 1), "lr": 1e-3})
            if step % 10 == 0:
                run.log_metrics(step, {"val/loss": 2.2 / (step + 1), "val/acc": step / 200})
                run.log_layers(step, "grad_norm", {f"layer{i}.weight": 0.1 * i for i in range(8)})
        run.log_findings([{"rule": "loss-plateau", "severity": "warning", "message": "flat",
                           "where": 150, "evidence": {}, "fix": "schedule"}])  # fmt: skip
    meta = json.loads((run.path / "run.json").read_text())
    for i in range(n):
        rid = f"20260101-{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}-run{i}"
        folder = root / "runs" / rid
        shutil.copytree(run.path, folder)
        meta.update(
            id=rid, started=f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}+00:00"
        )
        meta["config"]["lr"] = 1e-3 * (1 + i % 7)
        (folder / "run.json").write_text(json.dumps(meta))


def lazy_table(root: Path) -> int:
    return len(table_rows(list_runs(root)))


def eager_table(root: Path) -> int:
    runs = list_runs(root)
    for r in runs:  # what a reader without lazy loading would do
        r.metrics, r.findings  # noqa: B018
    return len(table_rows(runs))


def cli(root: Path, expected_rows: int) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "trainwise", "runs", "--csv", "--root", str(root)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    elapsed = time.perf_counter() - t0
    assert done.stdout.count("\n") == expected_rows + 1, done.stdout[:200]  # header + rows
    return elapsed


def import_torch() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - t0


def timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def log_cost(root: Path, tensorboard: bool, calls: int = 2000) -> float:
    """Seconds per log_metrics call, with the file writes and flushes it does."""
    with start("watch", root=root, tensorboard=tensorboard, html=False) as run:
        t0 = time.perf_counter()
        for step in range(calls):
            run.log_metrics(step, {"train/loss": 1.0, "lr": 1e-3, "grad_norm": 2.0, "acc": 0.5})
        return (time.perf_counter() - t0) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="number of runs")
    parser.add_argument("-r", "--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        make_runs(base, args.n)
        root, empty = base / "runs", base / "empty"
        empty.mkdir()
        print(f"{args.n} run records made in {time.perf_counter() - t0:.1f} s under {root}")
        assert lazy_table(root) == args.n
        lazy, eager, with_runs, without, torch_only = [], [], [], [], []
        for _ in range(args.rounds):  # A B A B: load changes on a shared machine hit both alike
            lazy.append(timed(lazy_table, root))
            eager.append(timed(eager_table, root))
            with_runs.append(cli(root, args.n))
            without.append(cli(empty, 0))
            torch_only.append(import_torch())
        med = statistics.median
        print(f"\ntable of {args.n} runs, in process (median of {args.rounds}):")
        print(f"  lazy  (run.json only)          {med(lazy) * 1000:8.1f} ms")
        print(f"  eager (+ metrics, findings)    {med(eager) * 1000:8.1f} ms   "
              f"eager/lazy = {med(eager) / med(lazy):.1f}x")  # fmt: skip
        print(f"\n`trainwise runs --csv`, end to end (median of {args.rounds}):")
        print(f"  {args.n} runs                      {med(with_runs):8.2f} s")
        print(f"  empty folder (start-up only)   {med(without):8.2f} s")
        cost = [a - b for a, b in zip(with_runs, without, strict=True)]
        print(f"  cost of the {args.n} runs           {med(cost):8.2f} s   "
              f"ratio {med(with_runs) / med(without):.2f}x")  # fmt: skip
        print(f"  for scale: `python -c 'import torch'` {med(torch_only):.2f} s, which "
              "`trainwise runs` avoids (the public API imports lazily)")  # fmt: skip
        with_tb, without_tb = [], []
        for _ in range(args.rounds):
            with_tb.append(log_cost(base / "log", tensorboard=True))
            without_tb.append(log_cost(base / "log", tensorboard=False))
        print(f"\nrun.log_metrics, 4 scalars (median of {args.rounds} x 2000 calls):")
        print(f"  files + TensorBoard            {med(with_tb) * 1e6:8.1f} us per call")
        print(f"  files only                     {med(without_tb) * 1e6:8.1f} us per call   "
              f"ratio {med(with_tb) / med(without_tb):.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
