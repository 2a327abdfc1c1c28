"""Benchmark: does the fine-tuning group of tips help a small CNN fine-tuned on new classes?

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/finetune.py            # ~2 min on a CPU
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/finetune.py --seeds 5 --per-class 10

Needs scikit-learn (its bundled 8x8 digits: nothing is downloaded). Issue 17, item 2.

Per seed:
1. Pretrain: a BatchNorm CNN (3 conv blocks, 64 features, a linear head) on the digits 0-4
   (every image of them, ~900), 15 epochs of AdamW(1e-3), batch 32.
2. Fine-tune on the digits 5-9 with a new 5-way head: `--per-class` training images per class
   (drawn by the seed), every other image of 5-9 (~800) held out for validation. Every arm
   starts from the same pretrained weights and the same new head, sees the same batches and
   trains the same number of epochs with AdamW, batch 16, a constant LR:
     without        every layer trains at the head LR from the first step, BatchNorm in train
                    mode (plain fine-tuning);
     with ratio R   the fine-tuning group: tw.discriminative_lrs(ratio=R, 3 groups: head LR,
                    / R, / R^2), tw.GradualUnfreezing (epoch 0: the head alone, i.e. the body
                    frozen for the first epoch; epoch 1: + the later body group; epoch 2 on:
                    everything), tw.freeze_batchnorm (statistics and affine from pretraining).
   At every cell of a grid: images per class x epochs x head LR (`--per-class`, `--epochs`,
   `--lr`), so that no arm is judged at an LR or budget that suits only the other.
3. Score: the accuracy on the held-out 5-9 images after the last epoch.

Printed: per cell the arms' mean accuracies and the differences (with - without, in points:
the mean over the seeds and the seeds' range), side by side; every seed's numbers are in
benchmarks/results/finetune.md.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trainwise as tw

RESULTS = Path(__file__).resolve().parent / "results" / "finetune.md"
PRETRAIN_EPOCHS, PRETRAIN_LR, PRETRAIN_BATCH = 15, 1e-3, 32
BATCH, GROUPS = 16, 3  # fastai's usual split: two body groups and the head
# The arms: None = plain fine-tuning; a number = the fine-tuning group with that LR ratio
# between neighbouring groups (the seeds: 3 to 10; fastai's fine_tune spreads 100x over 3
# groups, i.e. 10).
# Each arm: (LR ratio or None for one LR, gradual unfreezing, BatchNorm frozen).
ARMS = {"without": (None, False, False), "with ratio 10": (10.0, True, True),
        "with ratio 3": (3.0, True, True)}  # fmt: skip
# --components: each piece of the group alone (ratio 3), to see which one moves the result.
COMPONENTS = {"only LRs ratio 3": (3.0, False, False), "only gradual": (None, True, False),
              "only BN frozen": (None, False, True)}  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One setting both arms are compared at."""

    per_class: int  # training images per new class
    epochs: int
    lr: float  # the head's LR (every layer's, without the group)


@dataclass(frozen=True)
class Arm:
    lr: float
    epochs: int
    ratio: float | None  # None: one LR for every layer
    gradual: bool
    batchnorm_frozen: bool


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """x (1797, 1, 8, 8) standardized, y (1797,) in 0..9: scikit-learn's bundled digits."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1)
    return (x - x.mean()) / x.std(), torch.tensor(d.target)


def body() -> nn.Sequential:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(1, 16), *block(16, 32), nn.MaxPool2d(2),  # (N, 32, 4, 4)
        *block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # (N, 64)
    )  # fmt: skip


def pretrained(x: torch.Tensor, y: torch.Tensor, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(body(), nn.Linear(64, 5))
    opt = torch.optim.AdamW(model.parameters(), lr=PRETRAIN_LR)
    loader = DataLoader(TensorDataset(x, y), batch_size=PRETRAIN_BATCH, shuffle=True)
    for _ in range(PRETRAIN_EPOCHS):
        run_epoch(model, loader, opt)
    return model


def run_epoch(model: nn.Module, loader: DataLoader, opt: torch.optim.Optimizer) -> None:
    model.train()
    for xb, yb in loader:
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def finetuned(model: nn.Module, train: TensorDataset, arm: Arm, seed: int) -> nn.Module:
    """`model` (a fresh copy of the pretrained body + the new head) fine-tuned as `arm` says."""
    if arm.batchnorm_frozen:
        tw.freeze_batchnorm(model)
    if arm.ratio is not None:
        opt = torch.optim.AdamW(tw.discriminative_lrs(model, arm.lr, arm.ratio, groups=GROUPS))
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=arm.lr)
    schedule = tw.GradualUnfreezing(model, groups=GROUPS) if arm.gradual else None
    order = torch.Generator().manual_seed(seed)  # the same batches for every arm
    loader = DataLoader(train, batch_size=BATCH, shuffle=True, generator=order)
    for epoch in range(arm.epochs):
        if schedule is not None:
            schedule.on_epoch_start(epoch)
        run_epoch(model, loader, opt)
    return model


def split_new_classes(x, y, per_class: int, seed: int):
    """(train, val) of the digits 5-9 relabelled 0-4: per_class training images per class."""
    g = torch.Generator().manual_seed(1000 + seed)
    train_idx, val_idx = [], []
    for c in range(5, 10):
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        train_idx.append(idx[:per_class])
        val_idx.append(idx[per_class:])
    tr, va = torch.cat(train_idx), torch.cat(val_idx)
    return TensorDataset(x[tr], y[tr] - 5), (x[va], y[va] - 5)


def scores(x, y, cell: Cell, seed: int, base: nn.Sequential, arms: dict) -> dict[str, float]:
    """Accuracy on the held-out 5-9 images of each arm of `cell`, for one seed."""
    train, (vx, vy) = split_new_classes(x, y, cell.per_class, seed)
    torch.manual_seed(10_000 + seed)
    head = nn.Linear(64, 5)  # the new head, the same for every arm
    out = {}
    for name, pieces in arms.items():
        model = nn.Sequential(copy.deepcopy(base[0]), copy.deepcopy(head))
        arm = Arm(cell.lr, cell.epochs, *pieces)
        out[name] = accuracy(finetuned(model, train, arm, seed), vx, vy)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--per-class", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--epochs", type=int, nargs="+", default=[8, 30])
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3, 1e-2])
    parser.add_argument(
        "--components",
        action="store_true",
        help="also each piece of the group alone (written to finetune_components.md)",
    )
    args = parser.parse_args()
    arms = {**ARMS, **(COMPONENTS if args.components else {})}
    results = RESULTS.with_name("finetune_components.md") if args.components else RESULTS
    torch.set_num_threads(1)
    x, y = digits()
    started = time.perf_counter()
    cells = [Cell(p, e, lr) for p in args.per_class for e in args.epochs for lr in args.lr]
    found: dict[Cell, list[dict[str, float]]] = {cell: [] for cell in cells}
    raw = ["| images/class | epochs | head LR | seed | " + " | ".join(arms) + " |",
           "|---|---|---|---|" + "---|" * len(arms)]  # fmt: skip
    for seed in range(args.seeds):
        old = y < 5
        base = pretrained(x[old], y[old], seed)
        print(
            f"seed {seed}: pretrained, accuracy on 0-4 {100 * accuracy(base, x[old], y[old]):.1f}%"
        )
        for cell in cells:
            found[cell].append(scores(x, y, cell, seed, base, arms))
            shown = " | ".join(f"{100 * found[cell][-1][a]:.1f}%" for a in arms)
            raw.append(f"| {cell.per_class} | {cell.epochs} | {cell.lr:g} | {seed} | {shown} |")
    compared = [a for a in arms if a != "without"]
    table = [
        "| images/class | epochs | head LR | without | "
        + " | ".join(f"{a} | - without" for a in compared)
        + " |",
        "|---|---|---|---|" + "---|---|" * len(compared),
    ]
    for cell in cells:
        runs = found[cell]
        mean = {a: 100 * statistics.mean(r[a] for r in runs) for a in arms}
        row = f"| {cell.per_class} | {cell.epochs} | {cell.lr:g} | {mean['without']:.1f}% |"
        for arm in compared:
            diffs = [100 * (r[arm] - r["without"]) for r in runs]
            row += (
                f" {mean[arm]:.1f}% | {statistics.mean(diffs):+.1f} pts "
                f"({min(diffs):+.1f} to {max(diffs):+.1f}) |"
            )
        table.append(row)
    took = time.perf_counter() - started
    lines = [
        "# Fine-tuning with and without the fine-tuning group (benchmarks/finetune.py)",
        "",
        f"Pretrained on digits 0-4, fine-tuned on 5-9 (new head); {args.seeds} seeds, accuracy"
        " on the held-out 5-9 images, mean over the seeds (differences: mean, and the seeds'"
        " range). without = every layer at the head LR from the first step; with = the"
        f" fine-tuning group: discriminative LRs ({GROUPS} groups, ratio 10 or 3), gradual"
        " unfreezing (body frozen in epoch 0), BatchNorm frozen. Same epochs, batches and new"
        " head for every arm.",
        "",
        *table,
        "",
        "Per seed:",
        "",
        *raw,
        "",
        f"Took {took:.0f} s (one CPU thread).",
    ]
    print("\n".join(table))
    results.parent.mkdir(exist_ok=True)
    results.write_text("\n".join(lines) + "\n")
    print(f"took {took:.0f} s; written to {results}")


if __name__ == "__main__":
    main()
