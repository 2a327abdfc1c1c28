"""Gradient magnitudes: spikes of the global norm, early layers starved of gradient, and gradients
that never change (a stale graph)."""

from __future__ import annotations

import math

from trainwise.rules.inflight.base import (
    Detector,
    Phase,
    finite_train_loss,
    fmt,
    median,
    percentile,
    weight_params,
)
from trainwise.rules.registry import rule
from trainwise.signals import (
    CLIPPED,
    GRAD_NORM,
    GRAD_NORM_LAYER,
    LR,
    STEPPED,
    TRAIN_LOSS,
    UPDATE_RATIO,
)


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
    source="Deep Learning Tips & Tricks (a tips list), A. Marcolini, Deep Learning Best Practices (fast.ai course notes), Deep Learning Practical Tricks (a tips list) (gradient clipping)",
)
class ExplodingGradients(Detector):
    reads = (GRAD_NORM, CLIPPED, TRAIN_LOSS)
    when = Phase.STEP
    MIN_HISTORY = 20  # steps of normal behaviour before a spike means anything
    WINDOW = 50
    SPIKE = 10.0  # 10x the running median: far outside minibatch noise (typically < 3x)
    # A run whose loss is down to 2% of its start has converged: its gradients are tiny, so a
    # hard batch reads as a 10x "spike" that moves the weights by little. Say so, don't alarm.
    CONVERGED = 0.02

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
        converged = self._converged(view)
        yield self.finding(
            f"gradient norm {fmt(current)} at step {t} is {current / level:.0f}x its running "
            f"median {fmt(level)}; the 90th percentile of the norms so far is {fmt(clip)}"
            + (
                f". The loss is down to {converged:.1%} of its start, so the run has converged: "
                "a late spike on a hard batch, harmless unless it repeats"
                if converged is not None
                else ""
            ),
            evidence={"step": t, "grad_norm": current, "median": level, "p90": clip},
            severity="info" if converged is not None else None,
            fix=(
                "Clip at the measured 90th percentile, between backward() and step():\n"
                f"    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={clip:.3g})\n"
                "and, if spikes persist, lower the learning rate or add warmup."
            ),
        )


    def _converged(self, view) -> float | None:
        """The recent loss as a share of the starting loss, when below CONVERGED."""
        loss = finite_train_loss(view)  # the run's first 10 and recent losses, shared per round
        if len(loss) < self.MIN_HISTORY:
            return None
        start, now = median(loss[:10]), median(loss[-10:])
        if not start > 0 or now < 0:
            return None
        share = now / start
        return share if share < self.CONVERGED else None


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
    source="Deep Learning Tips & Tricks (a tips list) (backpropagation, vanishing gradients)",
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


@rule(
    "stale-gradients",
    severity="error",
    category="in-flight",
    summary="Every gradient is bit-identical from step to step while the weights move: the loss "
    "comes from a stale graph",
    why="A gradient depends on the weights it is taken at: once the optimizer has moved them, the "
    "next backward gives different numbers. Bit-identical gradients over several steps while the "
    "learning rate is non-zero mean backward runs through the same graph again and again: the "
    "model's output (or the loss) was computed once outside the loop, and the 'backward through "
    "the graph a second time' error was silenced with retain_graph=True. The optimizer then "
    "pushes the weights along one direction forever, and the logged loss never changes.",
    fix="Run the forward pass inside the loop, once per step, and drop retain_graph=True unless "
    "you really backpropagate one graph twice within a step.",
    example="output = model(x)  # once\nfor step in range(n):\n    loss = loss_fn(output, y)\n"
    "    loss.backward(retain_graph=True)\n    optimizer.step()\n\n"
    "for step in range(n):\n    optimizer.zero_grad()\n    loss = loss_fn(model(x), y)\n"
    "    loss.backward()\n    optimizer.step()",
    source="https://discuss.pytorch.org/t/runtimeerror-trying-to-backward-through-the-graph-a-"
    "second-time-but-the-buffers-have-already-been-freed-specify-retain-graph-true-when-"
    "calling-backward-the-first-time/6795 (the error and the retain_graph=True answer); beyond: "
    "TrainCheck (OSDI 2025), training invariants (gradients change as the weights change)",
)
class StaleGradients(Detector):
    """Per-parameter gradient norms bit-identical over STEPS+1 consecutive iterations, every
    parameter that got a gradient, while the optimizer stepped with a non-zero learning rate and
    the sampled updates are non-zero. Float norms of gradients taken at different weights are
    never bit-identical in practice (full-batch, deterministic training included); the same graph
    gives the same bits. With a zero learning rate (or updates rounding to nothing) the weights
    do not move, the gradients rightly repeat, and weights-not-updating is the finding."""

    reads = (GRAD_NORM, GRAD_NORM_LAYER, STEPPED, LR, UPDATE_RATIO, TRAIN_LOSS)
    STEPS = 5  # five repeats in a row: ~impossible by chance across every parameter

    def __init__(self, rule):
        super().__init__(rule)
        self.fired = False

    def check(self, view):
        if self.fired:
            return
        k = self.STEPS + 1
        total = view.history.get(GRAD_NORM.key)
        if len(total) < k:
            return
        window = list(total.steps[-k:])
        norms = total.values[-k:]
        if window != list(range(window[0], window[0] + k)):
            return  # not consecutive iterations
        if not (math.isfinite(norms[0]) and norms[0] > 0) or any(v != norms[0] for v in norms):
            return  # the cheap screen: the global norm changed (or is zero / non-finite)
        params = []
        for name, series in view.history.layers(GRAD_NORM_LAYER):
            if series.steps[-1] != window[-1]:
                continue  # no gradient at the latest step (frozen or unused here)
            if len(series) < k or list(series.steps[-k:]) != window:
                return
            vals = series.values[-k:]
            if any(v != vals[0] for v in vals):
                return
            params.append(name)
        if not params or not self._weights_moved(view, window):
            return
        self.fired = True
        # The loss is logged every step, its series may run past the window's last measured step
        since = view.iteration - window[0]
        loss = [v for t, v in _tail(view.history.get(TRAIN_LOSS.key), since) if t in window]
        same_loss = len(loss) == k and all(v == loss[0] for v in loss)
        yield self.finding(
            f"the gradients of all {len(params)} parameters that get one are bit-identical over "
            f"the last {k} steps ({window[0]}-{window[-1]}, global norm {fmt(norms[0])}) while the "
            "optimizer moves the weights"
            + (f", and the logged loss is identical too ({fmt(loss[0])})" if same_loss else "")
            + ": backward runs through the same stale graph every step (an output or loss "
            "computed once outside the loop, backward(retain_graph=True))",
            evidence={
                "grad_norm": norms[0],
                "steps": [window[0], window[-1]],
                "parameters": params[:20],
                "loss_identical": same_loss,
            },
        )

    @staticmethod
    def _weights_moved(view, window) -> bool:
        """The optimizer stepped at a non-zero learning rate in the window, and the latest
        sampled updates (when any) are not all zero."""
        steps = _tail(view.history.get(STEPPED.key), 2 * len(window))
        stepped = [v for t, v in steps if t in window]
        if not stepped or not all(stepped):
            return False
        lrs = [s.values[-1] for _, s in view.history.layers(LR) if len(s)]
        if not lrs or not any(lr > 0 for lr in lrs):
            return False
        ratios = [s.values[-1] for _, s in view.history.layers(UPDATE_RATIO) if len(s)]
        return not ratios or any(r > 0 for r in ratios)


def _tail(series, n):
    return zip(series.steps[-n:], series.values[-n:], strict=True)
