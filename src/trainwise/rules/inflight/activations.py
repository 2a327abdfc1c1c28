"""Activations (sampled steps): ReLU layers whose units died, sigmoid/tanh layers pinned at their limits."""

from __future__ import annotations

import math
from dataclasses import replace

from trainwise.rules.inflight.base import Detector, median
from trainwise.rules.registry import rule
from trainwise.signals import ACT_DEAD_FRAC, ACT_SAT_FRAC, UPDATE_RATIO, Signal


class _ActivationShare(Detector):
    family: Signal = ACT_DEAD_FRAC  # the per-module share this rule reads
    SHARE = 0.5  # half of the units gone: the layer works at half its width or worse
    SAMPLES = 3

    def check(self, view):
        for layer, series in view.history.layers(self.family):
            recent = series.finite_last(5)
            if len(recent) < self.SAMPLES or median(recent) < self.SHARE:
                continue
            yield self.finding(
                self.message(layer, median(recent), len(recent)),
                where=layer,
                evidence={"share": median(recent), "samples": len(recent)},
            )


@rule(
    "dead-relu",
    severity="warning",
    category="in-flight",
    summary="Half or more of a ReLU layer's units output 0 for every input",
    why="A ReLU unit whose input is negative for every sample passes no gradient and never recovers. "
    "A too-high learning rate or a large negative bias kills them in a few steps; the layer then "
    "works at a fraction of its width.",
    fix="Lower the learning rate, use LeakyReLU (negative_slope=0.01) or GELU, check the bias init, "
    "add normalization before the activation.",
    example="optimizer = torch.optim.SGD(model.parameters(), lr=5.0)  # kills the ReLUs\n\n"
    "optimizer = torch.optim.SGD(model.parameters(), lr=0.05); act = nn.LeakyReLU(0.01)",
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (LeakyReLU)",
)
class DeadRelu(_ActivationShare):
    family = ACT_DEAD_FRAC
    reads = (ACT_DEAD_FRAC, UPDATE_RATIO)
    # Steps that changed a layer by over 10% of its norm (100x the healthy ~1e-3) before the
    # units died: the LR killed them, and their later tiny updates are not an LR too low.
    LARGE_STEP = 0.1

    def __init__(self, rule):
        super().__init__(rule)
        self.largest = 0.0  # the largest update ratio seen so far, any layer
        self._read: dict[str, int] = {}  # per layer: how many of its ratios are in `largest`

    def check(self, view):
        for layer, series in view.history.layers(UPDATE_RATIO):  # only the values new since
            start = self._read.get(layer, 0)  # the last round: the cost stays flat over a run
            self._read[layer] = len(series)
            new = [v for v in series.values[start:] if math.isfinite(v)]
            if new:
                self.largest = max(self.largest, *new)
        for finding in super().check(view):
            if self.largest > self.LARGE_STEP:  # the evidence that the LR killed them
                finding = replace(
                    finding, evidence={**finding.evidence, "largest_update_ratio": self.largest}
                )
            yield finding

    def message(self, layer, share, n):
        text = (
            f"{share:.0%} of the units of `{layer}` output 0 for every input of the batch "
            f"(median of {n} sampled steps)"
        )
        if self.largest > self.LARGE_STEP:
            text += (
                f"; before that, steps changed a layer by up to {self.largest:.2g} of its norm "
                "(healthy ~1e-3): steps that large killed them (the learning rate is too high, "
                "unless another finding explains the large steps)"
            )
        return text


@rule(
    "saturated-activations",
    severity="warning",
    category="in-flight",
    summary="Sigmoid/tanh (or hard clamp) outputs pinned at their limits, where the gradient is ~0",
    why="A sigmoid at 0.99 passes back 1% of the gradient it passes at 0.5; when most units of a "
    "layer sit at the limits the layer stops learning. Large inputs (no normalization, big init "
    "or learning rate) push them there. Hidden layers only: a layer whose output is the model's "
    "(a decoder's sigmoid predicting a black background at ~0) is the model being sure, and the "
    "loss's gradient does not pass through its flat ends (BCE on a sigmoid gives p - y).",
    fix="Normalize the inputs of the layer (BatchNorm/LayerNorm), scale the init down, or use ReLU.",
    example="nn.Sequential(nn.Linear(64, 256), nn.Tanh())  # raw inputs in 0..255\n\n"
    "nn.Sequential(nn.Linear(64, 256), nn.LayerNorm(256), nn.Tanh())  # and normalized inputs",
    source="Deep Learning Tips & Tricks (a tips list) (activation functions)",
)
class SaturatedActivations(_ActivationShare):
    family = ACT_SAT_FRAC
    reads = (ACT_SAT_FRAC,)

    def message(self, layer, share, n):
        return (
            f"{share:.0%} of the outputs of `{layer}` sit at the activation's limits (a "
            f"sigmoid's or tanh's: within 1% of them), where its gradient is 0 or nearly "
            f"(median of {n} sampled steps)"
        )
