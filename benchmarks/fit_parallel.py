"""Benchmark: `trainwise fit --devices 2` against one process at the same global batch, on CPU.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/fit_parallel.py [--reps 3] [--steps 300]

Each run is the whole command as a user types it (`python -m trainwise fit FILE --steps N
--lr 3e-3 --no-record --quiet --json OUT`): imports, torchrun's start for two processes, the
LR given (no range test), validation as fit does it. Two models: MNIST-1D's small CNN (~2.5 ms
steps) and the same CNN 4x wider (~8 ms steps), each one process at a batch of 64 against two
processes of 32 (one gloo process per core; this machine has 2). Interleaved, A B A B ...;
reported: the median wall time of each and the ratio two/one, and the final validation loss of
both (the same global batch in another data order: close, not equal). Results:
benchmarks/results/fit_parallel.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent

SETUP_FILE = f"""
import sys
sys.path.insert(0, {str(HERE)!r})
from torch import nn
import trainwise as tw
from healthy_setups import cnn1d, mnist1d_data


def _wide():
    return nn.Sequential(
        nn.Conv1d(1, 128, 5, padding=2), nn.ReLU(),
        nn.Conv1d(128, 128, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv1d(128, 128, 3, padding=1, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(1280, 10),
    )


def _setup(model, batch):
    train, val = mnist1d_data(n=4000)
    return tw.Setup(model=model, train=train, val=val, loss=nn.CrossEntropyLoss(),
                    batch_size=batch)


def small_one(): return _setup(cnn1d, 64)
def small_two(): return _setup(cnn1d, 32)
def wide_one(): return _setup(_wide, 64)
def wide_two(): return _setup(_wide, 32)
"""


def run(file: Path, function: str, devices: int, steps: int, out: Path) -> tuple[float, float]:
    """(wall seconds of the whole command, final validation loss)."""
    command = [sys.executable, "-m", "trainwise", "fit", f"{file}:{function}", "--steps",
               str(steps), "--lr", "3e-3", "--no-record", "--quiet", "--json", str(out)]  # fmt: skip
    if devices > 1:
        command += ["--devices", str(devices)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{function} on {devices}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return seconds, json.loads(out.read_text())["metrics"]["val_loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--models", default="small,wide")
    args = parser.parse_args()
    print(f"# fit_parallel  {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, "
          f"{args.steps} steps at a global batch of 64, {args.reps} interleaved repetitions\n")  # fmt: skip
    print(f"{'model':7} {'1 process s':>12} {'2 processes s':>14} {'ratio':>6}  val loss 1 / 2")
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "parallel_setups.py"
        file.write_text(SETUP_FILE)
        out = Path(tmp) / "out.json"
        for model in args.models.split(","):
            times: dict[int, list[float]] = {1: [], 2: []}
            losses: dict[int, float] = {}
            for rep in range(args.reps):
                for devices in (1, 2) if rep % 2 == 0 else (2, 1):
                    function = f"{model}_{'one' if devices == 1 else 'two'}"
                    seconds, losses[devices] = run(file, function, devices, args.steps, out)
                    times[devices].append(seconds)
            one, two = statistics.median(times[1]), statistics.median(times[2])
            print(f"{model:7} {one:12.1f} {two:14.1f} {two / one:5.2f}x  "
                  f"{losses[1]:.4f} / {losses[2]:.4f}", flush=True)


if __name__ == "__main__":
    main()
