"""How long the preflight protocol takes: the default and --quick, on a ~1M-parameter CNN with
32x32 inputs (the issue's targets: under 60 s and under 15 s on 2 CPU cores), and on the small
healthy examples (what the CI fault suite pays per case).

Runs are interleaved (default, quick, default, quick ...) so that a change in the machine's
load hits both alike; medians per stage and the quick/default ratio are printed. The machine
load average is printed too: on a shared machine the absolute numbers move with it.

    python benchmarks/protocol_speed.py              # 2 rounds on the 1M CNN
    python benchmarks/protocol_speed.py --rounds 3 --examples
    python benchmarks/protocol_speed.py --threads 1   # CPU seconds free of spin-waiting
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw

sys.path.insert(0, str(Path(__file__).parent))
from healthy_setups import HEALTHY  # noqa: E402


def cnn_1m(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),  # (B, 32, 32, 32)
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # (B, 64, 16, 16)
        nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),  # (B, 128, 8, 8)
        nn.Conv2d(128, 256, 3, stride=2, padding=1), nn.ReLU(),  # (B, 256, 4, 4)
        nn.Flatten(), nn.Linear(256 * 16, 128), nn.ReLU(), nn.Linear(128, classes),
    )  # fmt: skip


def images_32(n: int, seed: int, classes: int = 10) -> TensorDataset:
    """Class templates (smooth random 3x32x32 patterns) plus noise: learnable, standardized."""
    g = torch.Generator().manual_seed(0)  # the same templates for train and val
    templates = nn.functional.interpolate(torch.randn(classes, 3, 8, 8, generator=g), size=32)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = templates[y] + 1.5 * torch.randn(n, 3, 32, 32, generator=g)
    return TensorDataset((x - x.mean()) / x.std(), y)


def cnn_setup() -> tw.Setup:
    return tw.Setup(
        model=cnn_1m,
        train=images_32(2000, 1),
        val=images_32(500, 2),
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3),
        name="cnn-1m-32x32",
    )


def timed(make, quick: bool) -> tuple[float, dict[str, float], str, float]:
    """(wall seconds, seconds per stage, verdict, CPU seconds of this process)."""
    setup = make()
    t0, c0 = time.perf_counter(), time.process_time()
    report = tw.check(setup, quick=quick, record=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, {s.name: s.seconds for s in report.stages}, report.verdict, cpu


def measure(make, rounds: int) -> dict[str, list]:
    runs: dict[str, list] = {"default": [], "quick": []}
    for _ in range(rounds):  # A B A B: default and quick alternate
        for mode in ("default", "quick"):
            runs[mode].append(timed(make, quick=mode == "quick"))
    return runs


def print_runs(console: Console, name: str, params: int, runs: dict[str, list]) -> None:
    table = Table(
        title=f"{name} ({params / 1e6:.2f}M parameters): seconds, median of "
        f"{len(runs['default'])} interleaved runs",
        title_justify="left",
    )
    table.add_column("stage")
    table.add_column("default", justify="right")
    table.add_column("--quick", justify="right")
    stages = list(runs["default"][0][1])
    for stage in stages:
        cells = [
            f"{statistics.median(r[1].get(stage, 0.0) for r in runs[m]):.2f}"
            for m in ("default", "quick")
        ]
        table.add_row(stage, *cells)
    totals = {m: statistics.median(r[0] for r in runs[m]) for m in runs}
    table.add_row("[bold]total", f"[bold]{totals['default']:.1f}", f"[bold]{totals['quick']:.1f}")
    cpu = {m: statistics.median(r[3] for r in runs[m]) for m in runs}
    # CPU time does not grow with other processes' load the way wall time does: with 2 threads
    # on an idle 2-core machine, wall time lies between CPU/2 and CPU.
    table.add_row("CPU seconds", f"{cpu['default']:.1f}", f"{cpu['quick']:.1f}")
    table.add_row(
        "verdicts",
        ", ".join(sorted({r[2] for r in runs["default"]})),
        ", ".join(sorted({r[2] for r in runs["quick"]})),
    )
    console.print(table)
    console.print(
        f"all runs (s): default {[round(r[0], 1) for r in runs['default']]}, quick "
        f"{[round(r[0], 1) for r in runs['quick']]}; quick/default = "
        f"{totals['quick'] / totals['default']:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--examples", action="store_true", help="also the six healthy examples")
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads (2: the target machine). With 1, CPU seconds are free of thread "
        "spin-waiting and bound the wall time an idle machine would need",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # the target is 2 CPU cores
    console = Console()
    console.print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average before: {os.getloadavg()[0]:.1f}"
    )
    params = sum(p.numel() for p in cnn_1m().parameters())
    print_runs(console, "cnn-1m-32x32", params, measure(cnn_setup, args.rounds))
    if args.examples:
        for name, make in HEALTHY.items():
            params = sum(p.numel() for p in make().build_model().parameters())
            print_runs(console, name, params, measure(make, 1))
    console.print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
