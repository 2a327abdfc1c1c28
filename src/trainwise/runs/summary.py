"""The numbers a run is remembered by (final and best metrics) and the histogram of a tensor.

Naming convention for metrics (what `trainwise runs` reads):
- validation metrics start with "val/" or "val_" (e.g. "val/acc", "val/loss");
- the training loss is "train/loss" (or "train_loss", "loss");
- a name containing loss/error/perplexity is better when lower, anything else when higher.
"""

from __future__ import annotations

import math
from typing import Any

TRAIN_LOSS_KEYS = ("train/loss", "train_loss", "loss")
LOWER_IS_BETTER = ("loss", "err", "perplexity", "ppl", "mse", "mae", "rmse", "nll")


def is_validation(key: str) -> bool:
    return key.startswith(("val/", "val_", "valid/", "validation/"))


def lower_is_better(key: str) -> bool:
    return any(word in key.lower() for word in LOWER_IS_BETTER)


class MetricSummary:
    """The last value of every metric, the best value (and its step) of every validation metric.

    Updated once per logged row, in O(number of metrics): the writer keeps it as it goes, and
    the reader replays metrics.jsonl through it for a record whose process was killed.
    """

    def __init__(self) -> None:
        self.final: dict[str, float] = {}
        self.best: dict[str, dict[str, float]] = {}  # key -> {"value", "step"}
        self.last_step: int | None = None

    def update(self, step: int, row: dict[str, Any]) -> None:
        self.last_step = step
        for key, value in row.items():
            self.final[key] = value
            if not is_validation(key) or not math.isfinite(value):
                continue
            held = self.best.get(key)
            if held is None or (
                value < held["value"] if lower_is_better(key) else value > held["value"]
            ):
                self.best[key] = {"value": value, "step": step}

    def to_dict(self) -> dict[str, Any]:
        return {"final": dict(self.final), "best": dict(self.best), "last_step": self.last_step}


def histogram(values: Any, bins: int) -> dict[str, Any]:
    """{"edges", "counts", "min", "max", "num", "sum", "sum_squares", "nonfinite"} of a tensor
    or array, over the range of its finite values, with a single device-to-host copy."""
    import torch  # here, not at the top: reading records (`trainwise runs`) needs no torch

    v = torch.as_tensor(values).detach().flatten().float()
    if v.numel() == 0:
        raise ValueError("the tensor is empty")
    finite = v[torch.isfinite(v)]
    if finite.numel() == 0:
        return {"edges": [], "counts": [], "min": None, "max": None, "num": 0, "sum": 0.0,
                "sum_squares": 0.0, "nonfinite": int(v.numel())}  # fmt: skip
    lo, hi = finite.min(), finite.max()
    span = torch.clamp(hi - lo, min=1e-12)
    counts = torch.histc((finite - lo) / span, bins=bins, min=0.0, max=1.0)  # (bins,)
    stats = torch.stack([lo, hi, finite.sum(), (finite * finite).sum()])
    packed = torch.cat([stats, counts]).tolist()  # the one sync
    lo_f, hi_f, total, squares = packed[:4]
    width = (hi_f - lo_f) / bins
    return {
        "edges": [lo_f + i * width for i in range(bins + 1)],
        "counts": [int(c) for c in packed[4:]],
        "min": lo_f,
        "max": hi_f,
        "num": int(finite.numel()),
        "sum": total,
        "sum_squares": squares,
        "nonfinite": int(v.numel() - finite.numel()),
    }
