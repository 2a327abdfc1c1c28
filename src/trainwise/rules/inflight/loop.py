"""Mistakes of the loop itself: frozen or unreachable weights, a missing zero_grad, train/eval mode
mix-ups, a schedule that ends too early, unbalanced loss terms, replicas out of sync."""

from __future__ import annotations

import math

from trainwise.rules.inflight.base import Detector, Phase, fmt, median
from trainwise.rules.registry import also_in_flight, rule
from trainwise.signals import (
    BACKWARD_PASSES,
    EVAL_MODE_LAYERS,
    FIRST_FORWARDS,
    GRAD_PARAMS,
    GRADS_KEPT,
    LR,
    REPLICAS,
    TRAIN,
    TRAIN_LOSS,
    UPDATE_RATIO,
    VAL_FORWARDS_TRAIN_MODE,
    VAL_LOSS,
)


@rule(
    "weights-not-updating",
    severity="error",
    category="in-flight",
    summary="Parameters the optimizer holds do not change (or never get a gradient)",
    why="A parameter held by the optimizer that never changes is dead weight. The usual cause is "
    "requires_grad=False (a freeze loop that caught more than intended: frozen-parameters names "
    "those); then a learning rate of 0, a forward that detaches it (.detach(), .data, "
    "torch.no_grad), or a copy of the module that the optimizer does not hold.",
    fix="Check `requires_grad` of the tensors named, the learning rate, remove the "
    ".detach()/no_grad in forward, and build the optimizer after freezing, replacing the head, "
    "moving and wrapping the model.",
    example="h = self.encoder(x).detach()  # the encoder never learns\n\nh = self.encoder(x)",
    source="TrainCheck (OSDI 2025), training invariants",
)
class WeightsNotUpdating(Detector):
    reads = (UPDATE_RATIO, GRAD_PARAMS, LR)
    SAMPLES = 3
    NO_GRAD_STEPS = 20  # steps with a gradient elsewhere but none for this parameter

    def __init__(self, rule):
        super().__init__(rule)
        self.ever_grad: set[str] = set()
        self.steps_seen = 0

    def check(self, view):
        frozen_now = []
        for info in view.model.trainable:
            vals = view.history.get(UPDATE_RATIO.at(info.name)).last(self.SAMPLES)
            if len(vals) == self.SAMPLES and all(v == 0 for v in vals):
                frozen_now.append(info.name)
        grads = view.history.event(GRAD_PARAMS)
        if grads:
            self.ever_grad.update(grads)
            self.steps_seen = view.step
        no_grad = [
            info.name
            for info in view.model.trainable
            if grads and view.step >= self.NO_GRAD_STEPS and info.name not in self.ever_grad
        ]
        lrs = {
            g: view.history.get(LR.at(str(g))).last(1) for g in {i.group for i in view.model.params}
        }
        if frozen_now and len(frozen_now) == len(view.model.trainable):
            yield self.finding(
                f"no parameter changed over the last {self.SAMPLES} sampled steps "
                f"(learning rates {[v[0] for v in lrs.values() if v]})",
                where="(all parameters)",
                evidence={"lr": [v[0] for v in lrs.values() if v]},
            )
            return
        for name in frozen_now:
            yield self.finding(
                f"`{name}` did not change over the last {self.SAMPLES} sampled steps although "
                "the optimizer holds it and it requires grad",
                where=name,
            )
        for name in no_grad:
            yield self.finding(
                f"`{name}` requires grad and the optimizer holds it, but it got no gradient in "
                f"{view.step} steps: it is not on the path from the loss (detached, unused, or "
                "replaced in forward)",
                where=name,
            )


@rule(
    "missing-zero-grad",
    severity="error",
    category="in-flight",
    summary="Gradients accumulate across optimizer steps because they are never reset",
    why="PyTorch adds each backward's gradient to .grad. Without optimizer.zero_grad() every step uses "
    "the sum of all past gradients, a huge stale direction. Intended gradient accumulation calls "
    "backward several times and resets after each optimizer step; the watch counts backward "
    "passes per step and checks whether the grads were reset between steps, so it tells the two "
    "apart.",
    fix="Call optimizer.zero_grad() once per optimizer step (before the first backward of the step).",
    example="for x, y in loader:\n    loss_fn(model(x), y).backward()\n    optimizer.step()\n\n"
    "for x, y in loader:\n    optimizer.zero_grad()\n    loss_fn(model(x), y).backward()\n    optimizer.step()",
    source="TrainCheck (OSDI 2025)",
)
class MissingZeroGrad(Detector):
    reads = (GRADS_KEPT, BACKWARD_PASSES)
    TIMES = 3  # in the last 10 steps: one miss may be a deliberate trick, three are a habit

    def check(self, view):
        kept = view.history.get(GRADS_KEPT.key).last(10)
        if sum(kept) < self.TIMES:
            return
        passes = median(view.history.get(BACKWARD_PASSES.key).last(10))
        yield self.finding(
            f"gradients were not reset after {int(sum(kept))} of the last {len(kept)} optimizer "
            f"steps, so each step adds to all the gradients before it ({passes:.0f} backward "
            "pass(es) per step). Intended accumulation resets after every optimizer step; this "
            "does not",
            evidence={"steps_not_reset": sum(kept), "backward_per_step": passes},
        )


@rule(
    "eval-mode-during-training",
    severity="warning",
    category="in-flight",
    summary="Training steps run with every BatchNorm/Dropout layer in eval mode",
    why="After model.eval() for validation, forgetting model.train() leaves dropout off and BatchNorm "
    "using frozen running statistics: the model trains without regularization and with stale "
    "normalization. A model whose only some BN layers are in eval (a deliberate BN freeze for "
    "fine-tuning) is not reported.",
    fix="Call model.train() at the start of every training epoch (after validation).",
    example="for epoch in range(n):\n    validate(model)  # calls model.eval()\n    train_one_epoch(model)\n\n"
    "for epoch in range(n):\n    model.train(); train_one_epoch(model)\n    model.eval(); validate(model)",
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (BatchNorm at test time)",
)
class EvalModeDuringTraining(Detector):
    reads = (EVAL_MODE_LAYERS,)

    def check(self, view):
        n_layers = len(view.model.mode_layers)
        seen = view.history.get(EVAL_MODE_LAYERS.key).last(5)
        if n_layers and len(seen) == 5 and all(v == n_layers for v in seen):
            names = list(view.model.mode_layers[:3])
            yield self.finding(
                f"the model trained for 5+ steps with all {n_layers} BatchNorm/Dropout layers in "
                f"eval mode ({', '.join(names)}...): dropout is off and BN statistics are frozen",
                evidence={"layers_in_eval": n_layers},
            )


@rule(
    "train-mode-during-eval",
    severity="error",
    category="in-flight",
    summary="Validation forward passes run with BatchNorm/Dropout in train mode",
    why="Without model.eval(), dropout drops units during validation and BatchNorm normalizes with the "
    "validation batch's statistics and updates its running averages from validation data: the "
    "reported metrics are wrong and the model changes.",
    fix="Call model.eval() before validation and model.train() after it.",
    example="with torch.no_grad():\n    val_loss = loss_fn(model(xv), yv)\n\n"
    "model.eval()\nwith torch.no_grad():\n    val_loss = loss_fn(model(xv), yv)\nmodel.train()",
    source="A. Marcolini, Deep Learning Best Practices (fast.ai course notes) (BatchNorm at test time)",
)
class TrainModeDuringEval(Detector):
    reads = (VAL_FORWARDS_TRAIN_MODE,)
    when = Phase.VAL

    def check(self, view):
        n = view.history.event(VAL_FORWARDS_TRAIN_MODE)
        if n:
            yield self.finding(
                f"{n} no-grad (validation) forward passes ran with BatchNorm/Dropout in train mode: "
                "dropout dropped units and BN updated its statistics from validation data",
                evidence={"forwards": n},
            )


@rule(
    "lr-schedule-suspicious",
    severity="warning",
    category="in-flight",
    summary="The learning rate reached ~0 long before the end of training",
    why="A schedule built in epochs but stepped every batch (StepLR(step_size=30) with "
    "scheduler.step() in the batch loop) decays the LR to 1/1000 of its peak within a few hundred "
    "steps; the rest of the run cannot move the weights.",
    fix="Step epoch-based schedulers once per epoch, or build them in steps (T_max=total_steps).",
    example="scheduler = StepLR(optimizer, step_size=30)\nfor x, y in loader:\n    ...; scheduler.step()\n\n"
    "for epoch in range(epochs):\n    for x, y in loader: ...\n    scheduler.step()",
    source="Deep Learning Tips & Tricks (a tips list) (annealing)",
)
class LrScheduleSuspicious(Detector):
    reads = (LR,)
    NEAR_ZERO = 1e-3  # LR below 1/1000 of its peak does not move the weights any more
    TAIL = 0.1  # more than 10% of the steps so far spent there

    def __init__(self, rule):
        super().__init__(rule)
        # per LR series: (peak, values scanned, first index at <= NEAR_ZERO * peak, their count)
        self._scans: dict[str, tuple[float, int, int | None, int]] = {}

    def check(self, view):
        for key, series in view.history.layers(LR):
            n = len(series)
            if n < 20:
                continue
            peak, first_low, n_low = self._scan(key, series.values)
            if peak <= 0 or first_low is None:
                continue
            if view.model.total_steps:
                early = first_low < 0.9 * view.model.total_steps and view.step > first_low + 10
            else:
                early = n - first_low >= max(20, self.TAIL * n) and n_low > 0.9 * (n - first_low)
            if early:
                yield self.finding(
                    f"the learning rate of {key} fell from {peak:.3g} to "
                    f"{series.values[first_low]:.3g} by step {series.steps[first_low]} and "
                    f"training went on for {n - first_low} more steps that cannot change the weights",
                    where=key,
                    evidence={"peak": peak, "step_near_zero": series.steps[first_low]},
                )

    def _scan(self, key, values):
        """(peak, first index at <= NEAR_ZERO * peak, how many there are) over all the values,
        reading only the ones new since the last call (all again when the peak rose)."""
        n = len(values)
        peak, seen, first_low, n_low = self._scans.get(key, (-math.inf, 0, None, 0))
        if seen < n:
            new_peak = max(values[seen:n])
            if new_peak > peak:  # the threshold moved: count from the start
                peak, seen, first_low, n_low = new_peak, 0, None, 0
            threshold = self.NEAR_ZERO * peak
            for i in range(seen, n):
                if values[i] <= threshold:
                    n_low += 1
                    if first_low is None:
                        first_low = i
            self._scans[key] = (peak, n, first_low, n_low)
        return peak, first_low, n_low


@rule(
    "loss-weights-unbalanced",
    severity="info",
    category="in-flight",
    summary="Loss terms logged as loss_* / *_loss differ by orders of magnitude",
    why="When one term of a summed loss is a hundred times another, the gradient follows the large "
    "term and the small one is effectively switched off. Weighting the terms to equal magnitude "
    "is the starting point the tips recommend; tune from there.",
    fix="Multiply each term by the weight given (largest magnitude / its magnitude).",
    example="loss = loss_recon + loss_kl  # ~300 vs ~0.5\nwatch.log(loss=loss, loss_recon=loss_recon, loss_kl=loss_kl)\n\n"
    "loss = loss_recon + 600 * loss_kl",
    source="Deep Learning Practical Tricks (a tips list) (multiple losses of equal magnitude)",
)
class LossWeightsUnbalanced(Detector):
    reads = (TRAIN,)
    RATIO = 100.0  # two orders of magnitude: the small term barely moves the gradient

    def check(self, view):
        terms = {}
        for fields, series in view.history.matching(TRAIN):
            name = fields["metric"]
            if name != "loss" and (name.startswith("loss_") or name.endswith("_loss")):
                vals = [abs(v) for v in series.finite_last(20)]
                if len(vals) >= 10:
                    terms[name] = median(vals)
        if len(terms) < 2:
            return
        big = max(terms, key=terms.get)
        small = min(terms, key=terms.get)
        if terms[small] <= 0 or terms[big] / terms[small] < self.RATIO:
            return
        weights = {k: terms[big] / v for k, v in terms.items() if v > 0}
        code = " + ".join(f"{weights[k]:.3g} * {k}" for k in terms if k in weights)
        yield self.finding(
            f"loss terms differ by {terms[big] / terms[small]:.0f}x: `{big}` ~{fmt(terms[big])} "
            f"vs `{small}` ~{fmt(terms[small])} (medians of the last steps)",
            where=small,
            evidence={"magnitudes": terms, "weights": weights},
            fix=f"Weight the terms to equal magnitude: loss = {code}, then tune from there.",
        )


@rule(
    "ddp-out-of-sync",
    severity="error",
    category="in-flight",
    summary="Data-parallel replicas hold different parameter values",
    why="Data parallelism assumes every replica holds the same weights; if gradients are not averaged "
    "(model not wrapped in DistributedDataParallel, a custom hook that skips the all-reduce, "
    "different seeds for init), each rank trains its own model and the saved one is arbitrary.",
    fix="Wrap the model with torch.nn.parallel.DistributedDataParallel before building the optimizer, "
    "and seed every rank identically for initialization.",
    example="model = Net(); opt = SGD(model.parameters())  # under torchrun, no DDP\n\n"
    "model = DDP(Net()); opt = SGD(model.parameters())",
    source="TrainCheck (OSDI 2025)",
)
class DdpOutOfSync(Detector):
    reads = (REPLICAS,)
    when = Phase.STEP
    TOLERANCE = 1e-6  # DDP replicas are bit-identical; float noise alone stays far below this

    def check(self, view):
        seen = view.history.event(REPLICAS)
        if seen is None:
            return
        t, spread = seen.step, seen.spread
        bad = [
            (info.name, s)
            for info, s in zip(view.model.params, spread, strict=False)
            if s > self.TOLERANCE
        ]
        if bad:
            yield self.finding(
                f"at step {t} the replicas hold different values for {len(bad)} parameter(s), "
                f"e.g. `{bad[0][0]}` (relative difference {bad[0][1]:.2g})",
                where=bad[0][0],
                evidence={"step": t, "parameters": [n for n, _ in bad[:20]]},
            )


import trainwise.rules.protocol  # noqa: E402,F401 - registers train-eval-mismatch, judged below

BN_HINT = (
    "BatchNorm normalizes with its running statistics in eval mode; before any training batch "
    "they are mean 0 and variance 1, whatever the data"
)
SN_HINT = (
    "torch.nn.utils.spectral_norm starts its power iteration at the first train-mode forward; "
    "an eval-mode forward before it divides the weight by a sigma estimated from random vectors"
)


@also_in_flight("train-eval-mismatch")
class TrainEvalMismatchInFlight(Detector):
    """The validation before training against the first training step, at the same weights.

    A baseline validation (watch.log_val at iteration 0) and the first training loss see the
    same weights and data of the same distribution: they agree within a small factor (dropout,
    a different batch). Orders of magnitude apart, some module computes something else in the
    no-grad (eval) forward; the first-forward probe names it: the module whose output/input
    RMS ratio, eval over train, jumps (its input agreed, its output does not)."""

    reads = (FIRST_FORWARDS, VAL_LOSS, TRAIN_LOSS)
    when = Phase.STEP
    # The losses disagree by 10x or more, either way (measured: 194x, 78x; healthy loops ~1x).
    RATIO = 10.0
    JUMP = math.log(3.0)  # a module's eval/train output ratio 3x its input's (dropout p=0.5: 1.4x)

    def __init__(self, rule):
        super().__init__(rule)
        self.done = False

    def check(self, view):
        if self.done or view.iteration == 0:
            return
        self.done = True  # judged once, at the first step
        first = view.history.event(FIRST_FORWARDS)
        val, train = view.history.get(VAL_LOSS.key), view.history.get(TRAIN_LOSS.key)
        if first is None or not len(val) or not len(train):
            return
        if val.steps[0] != 0 or train.steps[0] != first.step:
            return  # no validation before training, or the first training loss was not logged
        v, t = val.values[0], train.values[0]
        if not (math.isfinite(v) and math.isfinite(t) and v > 0 and t > 0):
            return
        ratio = v / t
        if 1 / self.RATIO < ratio < self.RATIO:
            return
        gaps = [g for g in first.modules if g.leaf and math.isfinite(g.jump())]
        gaps = gaps or [g for g in first.modules if math.isfinite(g.jump())]
        causes = sorted(
            (g for g in gaps if abs(g.jump()) >= self.JUMP), key=lambda g: -abs(g.jump())
        )
        if not causes:
            return  # the inputs differ, not the modules: a data matter, not this rule's
        named = causes[:5]
        listed = ", ".join(f"`{g.module}` ({g.kind}, {math.exp(g.jump()):.3g}x)" for g in named)
        hints = []
        if any("spectral_norm" in g.kind for g in named):
            hints.append(SN_HINT)
        if any("BatchNorm" in g.kind for g in named):
            hints.append(BN_HINT)
        yield self.finding(
            f"the validation before training gave loss {fmt(v)} but the first training step, at "
            f"the same weights, gave {fmt(t)} ({ratio:.3g}x). In the no-grad forward these "
            f"modules map their input to an output of another scale than in training "
            f"(eval/train ratio of the output over that of the input): {listed}"
            + (". " + "; ".join(hints) if hints else ""),
            where=named[0].module,
            evidence={
                "val_loss_before_training": v,
                "first_train_loss": t,
                "ratio": ratio,
                "modules": {g.module: math.exp(g.jump()) for g in causes[:20]},
                "eval_forwards": first.eval_forwards,
            },
            fix=_mismatch_fix(named),
        )


def _mismatch_fix(named) -> str:
    fixes = []
    if any("spectral_norm" in g.kind for g in named):
        fixes.append(
            "use torch.nn.utils.parametrizations.spectral_norm (it runs its power iteration "
            "when applied), or run one train-mode forward under torch.no_grad() before the "
            "first evaluation"
        )
    if any("BatchNorm" in g.kind for g in named):
        fixes.append(
            "normalize the inputs in the data pipeline instead of relying on a BatchNorm layer "
            "whose running statistics have not seen a batch, and read validations only after "
            "~1/momentum training steps (or set track_running_stats=False)"
        )
    if not fixes:
        fixes.append(
            "look at the named modules: they compute something else in eval/no-grad mode "
            "before any training step (lazy initialization, running statistics)"
        )
    return "; ".join(fixes).capitalize() + "."
