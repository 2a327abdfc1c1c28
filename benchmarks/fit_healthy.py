"""`trainwise fit` on every healthy case of the fault suite: does the default recipe train each
one to a useful model? Prints, per case, the epochs, the LR the range test chose, the final and
best validation metrics, the trivial baseline's (majority class, or the mean target's loss),
whether the run was stopped, and the findings.

    python benchmarks/fit_healthy.py              # every healthy case, EPOCHS epochs each
    python benchmarks/fit_healthy.py -k bert --epochs 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import trainwise as tw
from trainwise.context import StaticContext
from trainwise.loader import load_setup

HEALTHY = Path(__file__).parent / "faults" / "healthy"
EPOCHS = 5


def trivial(setup: tw.Setup) -> str:
    """The majority class's accuracy, or the mean target's MSE, on the validation sample."""
    ctx = StaticContext(setup)
    val = ctx.val_sample or ctx.train_sample
    y = val.targets
    if not isinstance(y, torch.Tensor):
        return "-"
    if torch.is_floating_point(y):
        mean = ctx.train_sample.targets.float().mean(dim=0)
        return f"mse {float(((y.float() - mean) ** 2).mean()):.4g}"
    if ctx.task in ("classification", "segmentation"):
        counts = torch.bincount(y[y >= 0].flatten())
        return f"acc {float(counts.max() / counts.sum()):.3f}"
    return "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    table = Table(title=f"trainwise fit, default recipe, {args.epochs} epochs")
    for column in ("case", "lr", "val (final)", "val (best)", "trivial", "stopped", "findings",
                   "time"):  # fmt: skip
        table.add_column(column)
    for path in sorted(HEALTHY.glob("*.py")):
        if args.k not in path.stem:
            continue
        torch.manual_seed(0)  # the cases build their data at import
        setup = load_setup(str(path))
        start = time.perf_counter()
        result = tw.fit(setup, epochs=args.epochs, record=False, verbose=False)
        seconds = time.perf_counter() - start
        shown = {k: v for k, v in result.metrics.items() if k in ("val_loss", "val_accuracy",
                                                                    "val_r2", "val_iou")}  # fmt: skip
        best = {k: result.best.get(k) for k in shown}
        table.add_row(
            path.stem,
            f"{result.recipe.lr:.3g}",
            ", ".join(f"{k.removeprefix('val_')} {v:.3g}" for k, v in shown.items()),
            ", ".join(f"{k.removeprefix('val_')} {v:.3g}" for k, v in best.items() if v is not None),
            trivial(setup),
            result.stopped or "-",
            ", ".join(sorted({f.rule for f in result.findings})) or "-",
            f"{seconds:.0f}s",
        )
        print(f"{path.stem}: done", file=sys.stderr)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
