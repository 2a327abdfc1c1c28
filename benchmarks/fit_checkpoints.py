"""What fit's checkpoints cost in a run with its record (the default for users): the time spent
writing last.pt, against the run's whole time, for MLPs of growing size.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/fit_checkpoints.py [--widths 256 1024 2048]

Each run: synthetic 10-class data (2800 train, 400 validation, 256 features), 2 epochs of 32,
the default recipe at a fixed LR (no range test), the record in a temporary folder. fit
validates a random batch ~50 times a run and may write last.pt at each; `checkpoints._save` is
timed in place (every write, best.pt too, is reported by file).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset, random_split

import trainwise as tw
from trainwise.train import checkpoints


def setup(width: int) -> tw.Setup:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3200, 256, generator=g), torch.randint(0, 10, (3200,), generator=g)
    train, val = random_split(TensorDataset(x, y), [2800, 400], generator=g)
    model = lambda: nn.Sequential(  # noqa: E731
        nn.Linear(256, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, 10),
    )  # fmt: skip
    return tw.Setup(model=model, train=train, val=val, loss=nn.CrossEntropyLoss(),
                    batch_size=32, device="cpu")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 1024, 2048])
    args = parser.parse_args()
    torch.set_num_threads(1)
    seconds: dict[str, float] = collections.defaultdict(float)
    writes: collections.Counter[str] = collections.Counter()
    save = checkpoints._save

    def timed_save(state, path: Path) -> None:
        start = time.perf_counter()
        save(state, path)
        seconds[path.name] += time.perf_counter() - start
        writes[path.name] += 1

    checkpoints._save = timed_save
    print(f"{'weights':>8} {'last.pt':>8} {'steps':>6} {'run s':>6} {'last.pt writes':>15} "
          f"{'s':>6} {'share':>6}")  # fmt: skip
    for width in args.widths:
        seconds.clear()
        writes.clear()
        with tempfile.TemporaryDirectory() as runs:
            start = time.perf_counter()
            result = tw.fit(setup(width), epochs=2, recipe=tw.Recipe(lr=1e-3), runs_dir=runs,
                            verbose=False)  # fmt: skip
            total = time.perf_counter() - start
            size = result.last_checkpoint.stat().st_size
        weights = sum(p.numel() for p in result.model.parameters())
        print(f"{weights / 1e6:7.1f}M {size / 2**20:6.1f}MB {result.steps:6d} {total:6.1f} "
              f"{writes['last.pt']:15d} {seconds['last.pt']:6.2f} "
              f"{seconds['last.pt'] / total:6.0%}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
