"""Update size per step (sampled): layers whose learning rate is far too high or too low for them."""

from __future__ import annotations

import math
from bisect import bisect_left

from trainwise.rules.inflight.base import HISTORY, Detector, median, weight_params
from trainwise.rules.registry import rule
from trainwise.signals import LR, UPDATE_RATIO, Series


def _lr_at(lr: Series, t: int, default: float) -> float:
    """The learning rate at iteration t among the last HISTORY ones (steps are increasing)."""
    n = len(lr.steps)
    i = bisect_left(lr.steps, t, max(0, n - HISTORY))
    return lr.values[i] if i < n and lr.steps[i] == t else default


class _UpdateRatio(Detector):
    reads = (UPDATE_RATIO, LR)
    # The healthy band is ~1e-4..1e-2 (seed 004, ~1e-3 typical); we fire a factor 10 beyond it,
    # because Adam's first steps on small-init weights legitimately reach a few 1e-2.
    HIGH, LOW = 1e-1, 1e-5
    SAMPLES = 3

    def ratios(self, view):
        peak_lr = {}
        for info in weight_params(view):
            series = view.history.get(UPDATE_RATIO.at(info.name))
            lr = view.history.get(LR.at(str(info.group)))
            if len(series) < self.SAMPLES or not len(lr):
                continue
            if info.group not in peak_lr:
                peak_lr[info.group] = max(lr.values)
            peak = peak_lr[info.group]
            # Only steps at >= half the peak LR: a schedule's tail rightly makes updates small.
            vals = [
                r
                for t, r in zip(series.steps[-20:], series.values[-20:], strict=True)
                if _lr_at(lr, t, 0.0) >= 0.5 * peak and math.isfinite(r)
            ][-5:]
            if len(vals) >= self.SAMPLES:
                yield info, median(vals), _lr_at(lr, series.steps[-1], peak)


@rule(
    "update-ratio-high",
    severity="warning",
    category="in-flight",
    summary="A layer's update/weight ratio is far above ~1e-3 per step (learning rate too high for it)",
    why="The ratio of the update norm to the weight norm says how fast a layer moves: ~1e-3 is "
    "healthy, 1e-4..1e-2 acceptable. Above 1e-1 (a factor 10 beyond the band; Adam's first "
    "steps on small weights reach a few 1e-2) the layer is rewritten every few steps and cannot "
    "settle.",
    fix="Lower the learning rate of that layer's parameter group by the factor given, or overall.",
    example="torch.optim.Adam(model.parameters(), lr=0.5)\n\ntorch.optim.Adam(model.parameters(), lr=1e-3)",
    source="seed 004 (babysitting: update/weight ratio ~1e-3); TIPS.md In flight",
)
class UpdateRatioHigh(_UpdateRatio):
    def check(self, view):
        for info, r, lr in self.ratios(view):
            if r > self.HIGH:
                factor = r / 1e-3
                yield self.finding(
                    f"each step changes `{info.name}` by {r:.2g} of its norm (median); healthy "
                    f"is ~1e-3, so its learning rate ({lr:.3g}) is ~{factor:.0f}x too high",
                    where=info.name,
                    evidence={"update_ratio": r, "lr": lr},
                    fix=f"Lower the learning rate of this layer's group ~{factor:.0f}x "
                    f"(to ~{lr / factor:.2g}), or give it its own parameter group.",
                )


@rule(
    "update-ratio-low",
    severity="warning",
    category="in-flight",
    summary="A layer's update/weight ratio is far below ~1e-3 per step (learning rate too low for it)",
    why="Below 1e-5 of its norm per step (a factor 10 under the 1e-4..1e-2 band) a layer needs "
    "hundreds of thousands of steps to change: training looks stuck. Only steps at >= half the "
    "peak learning rate are judged, so a decaying schedule's tail does not fire.",
    fix="Raise the learning rate of that layer's group by the factor given, or run an LR range test.",
    example="torch.optim.SGD(model.parameters(), lr=1e-6)\n\ntorch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)",
    source="seed 004 (babysitting: update/weight ratio); TIPS.md In flight",
)
class UpdateRatioLow(_UpdateRatio):
    def check(self, view):
        for info, r, lr in self.ratios(view):
            if 0 < r < self.LOW:
                factor = 1e-3 / r
                yield self.finding(
                    f"each step changes `{info.name}` by only {r:.2g} of its norm (median); "
                    f"healthy is ~1e-3, so its learning rate ({lr:.3g}) is ~{factor:.0f}x too low",
                    where=info.name,
                    evidence={"update_ratio": r, "lr": lr},
                    fix=f"Raise the learning rate of this layer's group ~{factor:.0f}x "
                    f"(to ~{lr * factor:.2g}), or run an LR range test.",
                )
