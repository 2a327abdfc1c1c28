"""Update size per step (sampled): layers whose learning rate is far too high or too low for them."""

from __future__ import annotations

import math

from trainwise.rules.inflight.base import HISTORY, Detector, median, weight_params
from trainwise.rules.registry import rule
from trainwise.signals import LR, UPDATE_RATIO


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
            peak_lr.setdefault(info.group, max(lr.values))
            lr_at = dict(zip(lr.steps[-HISTORY:], lr.values[-HISTORY:], strict=True))
            # Only steps at >= half the peak LR: a schedule's tail rightly makes updates small.
            vals = [
                r
                for t, r in zip(series.steps[-20:], series.values[-20:], strict=True)
                if lr_at.get(t, 0.0) >= 0.5 * peak_lr[info.group] and math.isfinite(r)
            ][-5:]
            if len(vals) >= self.SAMPLES:
                yield info, median(vals), lr_at.get(series.steps[-1], peak_lr[info.group])


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
