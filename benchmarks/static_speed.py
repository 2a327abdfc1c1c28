"""How long the static stage of `trainwise check` takes, next to what a training step costs.

Setup: a ~1M-parameter CNN (BatchNorm, 3x3 convs) on 32x32 RGB inputs, a 10k-sample training
set and a 2k-sample validation set, default `--sample 2000`. Target: under 5 s on 2 CPU cores.

A = the whole static stage on a fresh CheckRun (samples, trace, every rule);
B = 10 training steps (batch 32, SGD) of the same model, interleaved A B A B so both see the
same machine load. Prints the median of A, the ratio A / B, the first run in the process
separately (it pays one-off imports such as torch's optimizer machinery), and the median time
of each piece of the context and each rule, slowest first, so a slow rule stands out.

    python benchmarks/static_speed.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import TensorDataset

import trainwise as tw
from trainwise.context import StaticContext
from trainwise.rules import static_rules
from trainwise.stages.base import CheckRun
from trainwise.stages.static import StaticStage

TRAIN, VAL, SIZE, CLASSES = 10_000, 2_000, 32, 10
TRAIN_STEPS = 10


def conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


def cnn() -> nn.Module:
    # (B, 3, 32, 32) -> (B, 10); about 0.97M parameters
    return nn.Sequential(
        conv(3, 64), nn.MaxPool2d(2),  # 16x16
        conv(64, 128), nn.MaxPool2d(2),  # 8x8
        conv(128, 256), nn.MaxPool2d(2),  # 4x4
        conv(256, 256), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(256, CLASSES),
    )  # fmt: skip


def make_setup() -> tw.Setup:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(TRAIN + VAL, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, CLASSES, (TRAIN + VAL,), generator=g)
    return tw.Setup(
        model=cnn,
        train=torch.utils.data.DataLoader(
            TensorDataset(x[:TRAIN], y[:TRAIN]), batch_size=32, shuffle=True
        ),
        val=TensorDataset(x[TRAIN:], y[TRAIN:]),
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.SGD(
            tw.param_groups(p, weight_decay=5e-4), lr=0.05, momentum=0.9
        ),
        device="cpu",
    )


def static_stage(setup: tw.Setup) -> float:
    t0 = time.perf_counter()
    StaticStage().run(CheckRun(setup))
    return time.perf_counter() - t0


def training_steps(setup: tw.Setup) -> float:
    model = setup.build_model().train()
    opt = setup.build_optimizer(model)
    it = iter(setup.train)
    t0 = time.perf_counter()
    for _ in range(TRAIN_STEPS):
        x, y = next(it)
        opt.zero_grad(set_to_none=True)
        setup.loss(model(x), y).backward()
        opt.step()
    return time.perf_counter() - t0


def per_piece(setup: tw.Setup) -> dict[str, float]:
    """Seconds for each lazy piece of the context, then for each rule on the warmed context."""
    ctx = StaticContext(setup)
    times = {}
    for piece in ("train_sample", "val_sample", "batch", "trace", "optimizer"):
        t0 = time.perf_counter()
        getattr(ctx, piece)
        times[f"context: {piece}"] = time.perf_counter() - t0
    for rule in static_rules():
        t0 = time.perf_counter()
        list(rule.check(ctx))
        times[rule.slug] = time.perf_counter() - t0
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()
    setup = make_setup()
    params = sum(p.numel() for p in cnn().parameters())
    console.print(
        f"static stage: CNN {params:,} params, {TRAIN:,} train / {VAL:,} val samples of "
        f"3x{SIZE}x{SIZE}, sample 2000, {args.threads} threads, {args.repeats} repeats; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (on a loaded machine, "
        "OpenMP threads contend: compare --threads 1)"
    )
    cold = static_stage(setup)  # first in the process: one-off imports included
    a_times, b_times, pieces = [], [], []
    for _ in range(args.repeats):  # A B A B ...
        a_times.append(static_stage(setup))
        b_times.append(training_steps(setup))
        pieces.append(per_piece(setup))
    a, b = statistics.median(a_times), statistics.median(b_times)
    console.print(f"first run in a fresh process: {cold:.2f} s")
    console.print(
        f"static stage median: {a:.2f} s (min {min(a_times):.2f}, max {max(a_times):.2f})   "
        f"{TRAIN_STEPS} training steps median: {b:.2f} s   ratio: the static stage costs "
        f"{a / b * TRAIN_STEPS:.0f} training steps   target < 5 s: "
        + ("[green]met" if a < 5 else "[red]missed")
    )
    table = Table(title="median seconds per piece (rules run on a warmed context)")
    table.add_column("piece")
    table.add_column("median s", justify="right")
    table.add_column("share", justify="right")
    medians = {k: statistics.median(p[k] for p in pieces) for k in pieces[0]}
    total = sum(medians.values())
    for name, sec in sorted(medians.items(), key=lambda kv: -kv[1]):
        table.add_row(name, f"{sec:.4f}", f"{sec / total:.0%}")
    console.print(table)


if __name__ == "__main__":
    main()
