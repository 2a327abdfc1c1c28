"""Gradient magnitudes: spikes of the global norm, and early layers starved of gradient."""

from __future__ import annotations

import math

from trainwise.rules.inflight.base import Detector, Phase, fmt, median, percentile, weight_params
from trainwise.rules.registry import rule
from trainwise.signals import CLIPPED, GRAD_NORM, GRAD_NORM_LAYER


@rule(
    "exploding-gradients",
    severity="warning",
    category="in-flight",
    summary="The gradient norm spiked far above its running level; gives the clip value measured from your norms",
    why="A gradient norm ten times its running median moves the weights by a step the loss surface "
    "was never measured for; loss spikes and NaNs follow. Clipping at a threshold taken from the "
    "run's own gradient norms (their 90th percentile) removes the spikes and leaves normal steps "
    "untouched, unlike a guessed max_norm=1.0.",
    fix="torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=<measured p90>) between "
    "backward() and step(); if spikes persist, lower the learning rate or add warmup.",
    example="loss.backward()\noptimizer.step()  # no clipping, occasional norm spikes\n\n"
    "loss.backward()\ntorch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=2.4)\noptimizer.step()",
    source="seeds 001, 002, 004 (gradient clipping); TIPS.md In flight",
)
class ExplodingGradients(Detector):
    reads = (GRAD_NORM, CLIPPED)
    when = Phase.STEP
    MIN_HISTORY = 20  # steps of normal behaviour before a spike means anything
    WINDOW = 50
    SPIKE = 10.0  # 10x the running median: far outside minibatch noise (typically < 3x)

    def check(self, view):
        norms = view.history.get(GRAD_NORM.key)
        if len(norms) <= self.MIN_HISTORY:
            return
        current = norms.values[-1]
        window = norms.values[-self.WINDOW - 1 : -1]
        if math.isfinite(sum(window)) and current < self.SPIKE * min(window):
            return  # all finite and below 10x the smallest, so below 10x the median: the usual step
        history = [v for v in window if math.isfinite(v)]
        if len(history) < self.MIN_HISTORY or not math.isfinite(current):
            return
        level = median(history)
        if level <= 0 or current < self.SPIKE * level:
            return
        t = norms.steps[-1]
        clipped = view.history.get(CLIPPED.key)
        if len(clipped) and clipped.steps[-1] == t:
            return  # the loop already clips: the spike never reached the weights
        clip = percentile([v for v in norms.values[:-1] if math.isfinite(v)], 90)
        yield self.finding(
            f"gradient norm {fmt(current)} at step {t} is {current / level:.0f}x its running "
            f"median {fmt(level)}; the 90th percentile of the norms so far is {fmt(clip)}",
            evidence={"step": t, "grad_norm": current, "median": level, "p90": clip},
            fix=(
                "Clip at the measured 90th percentile, between backward() and step():\n"
                f"    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={clip:.3g})\n"
                "and, if spikes persist, lower the learning rate or add warmup."
            ),
        )


@rule(
    "vanishing-gradients",
    severity="warning",
    category="in-flight",
    summary="Early layers get gradients orders of magnitude smaller than late layers",
    why="When the per-element gradient of the first third of the weight layers is a thousand times "
    "smaller than that of the last third (the output layer left out), the early layers barely learn: the network behaves like a shallow one on fixed random "
    "features. Saturating activations (sigmoid/tanh) in deep stacks and missing normalization or "
    "skip connections are the usual causes.",
    fix="Use ReLU-family activations, add BatchNorm/LayerNorm, residual connections, and Kaiming init.",
    example="nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.Sigmoid()) for _ in range(12)])\n\n"
    "nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64), nn.ReLU()) for _ in range(12)])",
    source="seed 001 (backpropagation, vanishing gradients); TIPS.md In flight",
)
class VanishingGradients(Detector):
    reads = (GRAD_NORM_LAYER,)
    RATIO = 1e-3  # three orders of magnitude between the early and the late layers
    WINDOW = 20

    def check(self, view):
        # The output layer is left out: its gradient comes straight from the loss and is large
        # in healthy models too (a classifier head on a transformer gets ~1000x its encoder's).
        layers = sorted(weight_params(view), key=lambda i: i.position)[:-1]
        if len(layers) < 3:
            return
        rms = {}  # per layer: median gradient RMS per element (so sizes do not decide)
        for info in layers:
            g = view.history.get(GRAD_NORM_LAYER.at(info.name)).finite_last(self.WINDOW)
            if len(g) < 10:
                return
            rms[info.name] = median(g) / math.sqrt(info.numel)
        # The first and last third of the layers, each summarized by its median, so that one
        # odd layer (attention query/key weights get tiny gradients at init) decides nothing.
        k = max(1, len(layers) // 3)
        early = [layers[i].name for i in range(k)]
        late = [layers[-1 - i].name for i in range(k)]
        rms_early = median([rms[n] for n in early])
        rms_late = median([rms[n] for n in late])
        if rms_late <= 0 or rms_early >= self.RATIO * rms_late:
            return
        yield self.finding(
            f"the first {k} weight layer(s) ({', '.join(early[:3])}) get gradients "
            f"{rms_late / max(rms_early, 1e-30):.2g}x smaller per element (RMS {fmt(rms_early)}) "
            f"than the last {k} ({', '.join(late[:3])}, RMS {fmt(rms_late)}), median of the "
            f"last {self.WINDOW} steps",
            where=early[0],
            evidence={"early_rms": rms_early, "late_rms": rms_late, "early_layers": early},
        )
