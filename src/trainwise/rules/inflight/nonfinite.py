"""Non-finite values: a NaN/Inf loss (naming the first module whose output went non-finite) and
non-finite gradients the optimizer stepped with (or AMP skipping most steps)."""

from __future__ import annotations

import math

from trainwise.rules.inflight.base import Detector, Phase
from trainwise.rules.registry import rule
from trainwise.signals import (
    GRAD_NORM,
    NONFINITE_GRAD,
    NONFINITE_OUTPUT,
    OUTPUT_CHECKED,
    SKIPPED_NONFINITE,
    TRAIN_LOSS,
)


def _value_kind(value: float, in_loss: bool = False) -> str:
    if in_loss and value == math.inf:
        # A loss negates log-probabilities: log(0) = -inf shows up as +inf.
        return (
            "+inf (most often a log of 0 negated by the loss, e.g. nll_loss(log(softmax(x))) "
            "with a probability underflowing to 0; else an overflow)"
        )
    if math.isnan(value):
        return "NaN (0/0, inf - inf, 0 * inf, or the log/sqrt of a negative number)"
    if value < 0:
        return "-inf (a log of 0, e.g. log(softmax) or log(sigmoid) underflowing to 0)"
    return "+inf (an overflow: exp of a large number, a division by ~0, or fp16 beyond 65504)"


def _op_fix(value: float, in_loss: bool = False) -> str:
    if in_loss and value == math.inf:
        return _op_fix(-math.inf) + " If it is an overflow instead: " + _op_fix(math.inf)
    if math.isnan(value):
        return (
            "Guard the division or root with an eps (x / (y + 1e-8), sqrt(x + 1e-8)); "
            "clamp inputs of log/sqrt to >= 1e-8; lower the learning rate and clip gradients "
            "(torch.nn.utils.clip_grad_norm_) if the weights themselves diverged."
        )
    if value < 0:
        return (
            "Compute log-probabilities with F.log_softmax / F.logsigmoid (or use "
            "nn.CrossEntropyLoss / nn.BCEWithLogitsLoss on raw logits) instead of log(softmax(x)); "
            "else torch.log(x.clamp_min(1e-8))."
        )
    return (
        "Clamp before exp (x.clamp(max=80)), add an eps to denominators, use "
        "torch.autocast with a GradScaler (fp16) or bfloat16, and lower the learning rate."
    )


@rule(
    "nonfinite-loss",
    severity="error",
    category="in-flight",
    summary="The loss became NaN or Inf; names the first module whose output went non-finite",
    why="Once a NaN enters the loss it reaches every gradient and, after one optimizer step, every "
    "weight: the run is lost and later numbers are meaningless. The first module whose output "
    "went non-finite (found with forward hooks in the same step) and the sign of the value (-inf: "
    "a log of 0; +inf: an overflow; NaN: 0/0 or inf - inf) point at the operation to guard.",
    fix="Guard the operation: log_softmax / logsigmoid instead of log(softmax), an eps in "
    "denominators and roots, a clamp before exp; lower the learning rate; clip gradients.",
    example="probs = model(x).softmax(-1)\nloss = -(probs.log() * onehot).sum(1).mean()  # log(0) = -inf\n\n"
    "loss = F.cross_entropy(model(x), y)  # log_softmax inside, stable",
    source="Deep Learning Practical Tricks (a tips list) (dealing with NaNs)",
)
class NonfiniteLoss(Detector):
    reads = (TRAIN_LOSS, NONFINITE_OUTPUT, OUTPUT_CHECKED)
    when = Phase.STEP

    def __init__(self, rule):
        super().__init__(rule)
        self.judged = 0  # losses judged so far: the steps between measured ones come in a batch

    def check(self, view):
        loss = view.history.get(TRAIN_LOSS.key)
        new = range(self.judged, len(loss))
        self.judged = len(loss)
        bad = next((i for i in new if not math.isfinite(loss.values[i])), None)
        if bad is None:
            return
        t, value = loss.steps[bad], loss.values[bad]
        seen = view.history.event(NONFINITE_OUTPUT)
        checked = view.history.get(OUTPUT_CHECKED.key)
        if seen is None and view.producing(NONFINITE_OUTPUT) and t not in checked.steps:
            # A step between the measured ones: the per-module check did not run on it. The
            # request makes every step measured from now on.
            view.request(NONFINITE_OUTPUT)
            where, what = "loss", "the module is not known yet (it came between measured steps); "
            what += "every step is checked from now on, so it will be named if it recurs"
            kind_value, in_loss = value, True
        elif seen is None:
            if not view.producing(NONFINITE_OUTPUT):
                # The cheap preset skips the per-module check: ask for it, to name the layer
                # if this happens again.
                view.request(NONFINITE_OUTPUT)
                where, what = "loss", "the module is not known yet (preset='cheap'); "
                what += "the per-module check is now on and will name it if it recurs"
            else:
                where = "loss"
                what = "every module output was finite: the loss computation itself produced it"
            kind_value, in_loss = value, True
        else:
            in_loss = False
            where, kind_value = seen.module, seen.value
            what = f"the first module whose output went non-finite is `{where}` ({seen.kind})"
            if not seen.weights_finite:
                what += "; its own weights are already non-finite (an earlier update diverged)"
        yield self.finding(
            f"loss is {value} at step {t}; {what}; its value is {_value_kind(kind_value, in_loss)}",
            where=where,
            evidence={"step": t, "loss": value, "module": where},
            fix=_op_fix(kind_value, in_loss),
        )


@rule(
    "nonfinite-gradient",
    severity="error",
    category="in-flight",
    summary="The optimizer stepped with NaN/Inf gradients (or AMP keeps skipping steps); names the parameter",
    why="A non-finite gradient turns the weights it touches into NaN at the next step. Under AMP the "
    "GradScaler skips such steps and lowers its scale, which is normal a few times; skipping most "
    "steps means the model itself produces inf/NaN and training has stopped moving.",
    fix="Find the operation with the nonfinite-loss hints (eps, clamp, log_softmax); lower the "
    "learning rate; clip gradients; with fp16 use torch.amp.GradScaler (or bfloat16).",
    example="loss = (pred - y).pow(2).sum() / mask.sum()  # mask.sum() == 0 -> inf gradients\n\n"
    "loss = (pred - y).pow(2).sum() / mask.sum().clamp_min(1)",
    source="Deep Learning Practical Tricks (a tips list) (NaNs)",
)
class NonfiniteGradient(Detector):
    reads = (NONFINITE_GRAD, SKIPPED_NONFINITE, GRAD_NORM)
    when = Phase.STEP
    # GradScaler skips a step whose grads overflow and halves its scale; a few skips are its
    # normal calibration, 10 in the last 20 steps mean the model itself produces inf/NaN.
    MAX_SKIPS = 10

    def check(self, view):
        seen = view.history.event(NONFINITE_GRAD)
        if seen is not None:
            t, names, total = seen.step, list(seen.params), seen.total
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            yield self.finding(
                f"the optimizer stepped with non-finite gradients at step {t} (global norm "
                f"{total}); parameters: {shown}",
                where=names[0] if names else None,
                evidence={"step": t, "parameters": names[:20]},
            )
        # Skips are seen on measured steps only: judged over the last 20 of those (every step
        # under preset "full", every 10th after the first 20 otherwise).
        skipped = view.history.get(SKIPPED_NONFINITE.key)
        measured = view.history.get(GRAD_NORM.key).steps[-20:]
        recent = [s for s in skipped.steps[-20:] if len(measured) and s >= measured[0]]
        if len(recent) >= self.MAX_SKIPS:
            yield self.finding(
                f"{len(recent)} of the last {len(measured)} measured steps had non-finite "
                "gradients and took no optimizer step (GradScaler skipped them)",
                where="GradScaler",
                evidence={"skipped_steps": len(recent)},
            )
