"""In-flight rules: detectors that read the watch's signal history and yield Findings.

Each detector is one small class: its slug, when it runs ("step": after every step, "window":
every few steps and at close, "val": after each `watch.log_val`, "close": once at the end), and
a `check(watch)` that reads `watch.signals` (plain numbers) and `watch.facts`. Thresholds are
named constants with the reason for their value. The documentation of every rule is registered
below the detectors with `register(Rule(...))`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from trainwise.findings import Finding
from trainwise.probes.signals import median, percentile
from trainwise.rules.registry import CATALOGUE, Rule, register

if TYPE_CHECKING:
    from trainwise.watch import Watch


class Detector:
    slug = ""
    when = "window"

    def check(self, w: Watch) -> Iterator[Finding]:
        raise NotImplementedError

    def finding(self, message, where=None, evidence=None, fix="", severity=None) -> Finding:
        return CATALOGUE[self.slug].finding(message, where, evidence, fix, severity)


HISTORY = 1000  # loss-curve rules read the first 10 and the last 1000 steps: bounded cost


def _loss(w: Watch) -> list[float]:
    values = w.signals.get("train/loss").values
    if len(values) <= HISTORY + 10:
        return list(values)
    return list(values[:10]) + list(values[-HISTORY:])


def _weight_params(w: Watch):
    """Matrices and kernels of layers that transform features (not embeddings or norms)."""
    return [
        info
        for info in w.param_info
        if info.ndim >= 2 and "Embedding" not in info.module_kind and "Norm" not in info.module_kind
    ]


def _fmt(x: float) -> str:
    return f"{x:.3g}"


# -- non-finite values ------------------------------------------------------------------------
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


class NonfiniteLoss(Detector):
    slug, when = "nonfinite-loss", "step"

    def check(self, w):
        loss = w.signals.get("train/loss")
        if not len(loss) or math.isfinite(loss.values[-1]):
            return
        t, value = loss.steps[-1], loss.values[-1]
        seen = w.facts.get("nonfinite_output")
        if seen is None:
            if not w._acts.check_finite:
                # The cheap preset skips the per-module check: switch it on to name the layer
                # if this happens again.
                w._acts.check_finite = True
                where, what = "loss", "the module is not known yet (preset='cheap'); "
                what += "the per-module check is now on and will name it if it recurs"
            else:
                where = "loss"
                what = "every module output was finite: the loss computation itself produced it"
            kind_value, in_loss = value, True
        else:
            in_loss = False
            _, where, kind, out_value = seen
            kind_value = out_value
            what = f"the first module whose output went non-finite is `{where}` ({kind})"
            module = dict(w._acts.modules).get(where)
            if module is not None and any(
                not bool(torch.isfinite(p).all()) for p in module.parameters(recurse=False)
            ):
                what += "; its own weights are already non-finite (an earlier update diverged)"
        yield self.finding(
            f"loss is {value} at step {t}; {what}; its value is {_value_kind(kind_value, in_loss)}",
            where=where,
            evidence={"step": t, "loss": value, "module": where},
            fix=_op_fix(kind_value, in_loss),
        )


class NonfiniteGradient(Detector):
    slug, when = "nonfinite-gradient", "step"
    # GradScaler skips a step whose grads overflow and halves its scale; a few skips are its
    # normal calibration, 10 in the last 20 steps mean the model itself produces inf/NaN.
    MAX_SKIPS = 10

    def check(self, w):
        seen = w.facts.get("nonfinite_grad")
        if seen is not None:
            t, names, total = seen
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            yield self.finding(
                f"the optimizer stepped with non-finite gradients at step {t} (global norm "
                f"{total}); parameters: {shown}",
                where=names[0] if names else None,
                evidence={"step": t, "parameters": names[:20]},
            )
        skipped = w.signals.get("skipped_nonfinite")
        recent = [s for s in skipped.steps if s > w.iteration - 20]
        if len(recent) >= self.MAX_SKIPS:
            yield self.finding(
                f"{len(recent)} of the last 20 steps had non-finite gradients and took no "
                "optimizer step (GradScaler skipped them)",
                where="GradScaler",
                evidence={"skipped_steps": len(recent)},
            )


# -- gradients --------------------------------------------------------------------------------
class ExplodingGradients(Detector):
    slug, when = "exploding-gradients", "step"
    MIN_HISTORY = 20  # steps of normal behaviour before a spike means anything
    WINDOW = 50
    SPIKE = 10.0  # 10x the running median: far outside minibatch noise (typically < 3x)

    def check(self, w):
        norms = w.signals.get("grad_norm")
        if len(norms) <= self.MIN_HISTORY:
            return
        current = norms.values[-1]
        history = [v for v in norms.values[-self.WINDOW - 1 : -1] if math.isfinite(v)]
        if len(history) < self.MIN_HISTORY or not math.isfinite(current):
            return
        level = median(history)
        if level <= 0 or current < self.SPIKE * level:
            return
        t = norms.steps[-1]
        clipped = w.signals.get("clipped")
        if len(clipped) and clipped.steps[-1] == t:
            return  # the loop already clips: the spike never reached the weights
        clip = percentile([v for v in norms.values[:-1] if math.isfinite(v)], 90)
        yield self.finding(
            f"gradient norm {_fmt(current)} at step {t} is {current / level:.0f}x its running "
            f"median {_fmt(level)}; the 90th percentile of the norms so far is {_fmt(clip)}",
            evidence={"step": t, "grad_norm": current, "median": level, "p90": clip},
            fix=(
                "Clip at the measured 90th percentile, between backward() and step():\n"
                f"    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={clip:.3g})\n"
                "and, if spikes persist, lower the learning rate or add warmup."
            ),
        )


class VanishingGradients(Detector):
    slug = "vanishing-gradients"
    RATIO = 1e-3  # three orders of magnitude between the early and the late layers
    WINDOW = 20

    def check(self, w):
        # The output layer is left out: its gradient comes straight from the loss and is large
        # in healthy models too (a classifier head on a transformer gets ~1000x its encoder's).
        layers = sorted(_weight_params(w), key=lambda i: i.position)[:-1]
        if len(layers) < 3:
            return
        rms = {}  # per layer: median gradient RMS per element (so sizes do not decide)
        for info in layers:
            g = w.signals.get(f"grad_norm/{info.name}").finite_last(self.WINDOW)
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
            f"{rms_late / max(rms_early, 1e-30):.2g}x smaller per element (RMS {_fmt(rms_early)}) "
            f"than the last {k} ({', '.join(late[:3])}, RMS {_fmt(rms_late)}), median of the "
            f"last {self.WINDOW} steps",
            where=early[0],
            evidence={"early_rms": rms_early, "late_rms": rms_late, "early_layers": early},
        )


# -- activations ------------------------------------------------------------------------------
class _ActivationShare(Detector):
    family = ""
    SHARE = 0.5  # half of the units gone: the layer works at half its width or worse
    SAMPLES = 3

    def check(self, w):
        for layer, series in w.signals.layers(self.family):
            recent = series.finite_last(5)
            if len(recent) < self.SAMPLES or median(recent) < self.SHARE:
                continue
            yield self.finding(
                self.message(layer, median(recent), len(recent)),
                where=layer,
                evidence={"share": median(recent), "samples": len(recent)},
            )


class DeadRelu(_ActivationShare):
    slug, family = "dead-relu", "act_dead_frac"

    def message(self, layer, share, n):
        return (
            f"{share:.0%} of the units of `{layer}` output 0 for every input of the batch "
            f"(median of {n} sampled steps)"
        )


class SaturatedActivations(_ActivationShare):
    slug, family = "saturated-activations", "act_sat_frac"

    def message(self, layer, share, n):
        return (
            f"{share:.0%} of the outputs of `{layer}` sit within 1% of the activation's "
            f"limits, where its gradient is nearly 0 (median of {n} sampled steps)"
        )


# -- updates ----------------------------------------------------------------------------------
class _UpdateRatio(Detector):
    # The healthy band is ~1e-4..1e-2 (seed 004, ~1e-3 typical); we fire a factor 10 beyond it,
    # because Adam's first steps on small-init weights legitimately reach a few 1e-2.
    HIGH, LOW = 1e-1, 1e-5
    SAMPLES = 3

    def ratios(self, w):
        peak_lr = {}
        for info in _weight_params(w):
            series = w.signals.get(f"update_ratio/{info.name}")
            lr = w.signals.get(f"lr/group{info.group}")
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


class UpdateRatioHigh(_UpdateRatio):
    slug = "update-ratio-high"

    def check(self, w):
        for info, r, lr in self.ratios(w):
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


class UpdateRatioLow(_UpdateRatio):
    slug = "update-ratio-low"

    def check(self, w):
        for info, r, lr in self.ratios(w):
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


class WeightsNotUpdating(Detector):
    slug = "weights-not-updating"
    SAMPLES = 3
    NO_GRAD_STEPS = 20  # steps with a gradient elsewhere but none for this parameter

    def __init__(self):
        self.ever_grad: set[str] = set()
        self.steps_seen = 0

    def check(self, w):
        frozen_now = []
        for i in w._trainable:
            info = w.param_info[i]
            vals = w.signals.get(f"update_ratio/{info.name}").last(self.SAMPLES)
            if len(vals) == self.SAMPLES and all(v == 0 for v in vals):
                frozen_now.append(info.name)
        grads = w.facts.get("grad_params")
        if grads:
            self.ever_grad.update(grads)
            self.steps_seen = w.step
        no_grad = [
            w.param_info[i].name
            for i in w._trainable
            if grads and w.step >= self.NO_GRAD_STEPS and w.param_info[i].name not in self.ever_grad
        ]
        lrs = {g: w.signals.get(f"lr/group{g}").last(1) for g in {i.group for i in w.param_info}}
        if frozen_now and len(frozen_now) == len(w._trainable):
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
                f"{w.step} steps: it is not on the path from the loss (detached, unused, or "
                "replaced in forward)",
                where=name,
            )


class MissingZeroGrad(Detector):
    slug = "missing-zero-grad"
    TIMES = 3  # in the last 10 steps: one miss may be a deliberate trick, three are a habit

    def check(self, w):
        kept = w.signals.get("grads_kept").last(10)
        if sum(kept) < self.TIMES:
            return
        passes = median(w.signals.get("backward_passes").last(10))
        yield self.finding(
            f"gradients were not reset after {int(sum(kept))} of the last {len(kept)} optimizer "
            f"steps, so each step adds to all the gradients before it ({passes:.0f} backward "
            "pass(es) per step). Intended accumulation resets after every optimizer step; this "
            "does not",
            evidence={"steps_not_reset": sum(kept), "backward_per_step": passes},
        )


# -- loss curve -------------------------------------------------------------------------------
def _medians(values: list[float], width: int) -> list[float]:
    """Medians of consecutive non-overlapping windows (smooths minibatch noise)."""
    return [median(values[i : i + width]) for i in range(0, len(values) - width + 1, width)]


class LossDiverging(Detector):
    slug = "loss-diverging"
    MIN_STEPS = 30

    def check(self, w):
        loss = [v for v in _loss(w) if math.isfinite(v)]
        if len(loss) < self.MIN_STEPS:
            return
        first, recent = median(loss[:10]), median(loss[-10:])
        best = min(_medians(loss, 10))
        previous = median(loss[-20:-10])
        # Twice its best, back above halfway to where it started, and still climbing.
        if recent > 2 * best and recent > best + 0.5 * (first - best) and recent > previous:
            yield self.finding(
                f"the loss climbed to {_fmt(recent)} (median of the last 10 steps) from its best "
                f"{_fmt(best)}; it started at {_fmt(first)}",
                evidence={"recent": recent, "best": best, "first": first},
            )


class LossOscillating(Detector):
    slug = "loss-oscillating"
    WINDOW = 50
    SPREAD = 0.25  # std over the window above a quarter of the starting loss: not noise

    def check(self, w):
        loss = [v for v in _loss(w) if math.isfinite(v)]
        if len(loss) < self.WINDOW + 10:
            return
        first = median(loss[:10])
        window = loss[-self.WINDOW :]
        mean = sum(window) / len(window)
        std = math.sqrt(sum((v - mean) ** 2 for v in window) / len(window))
        half = len(window) // 2
        falling = median(window[half:]) < 0.9 * median(window[:half])
        if first > 0 and std > self.SPREAD * first and not falling and mean > 0.3 * first:
            yield self.finding(
                f"the loss jumps around {_fmt(mean)} ± {_fmt(std)} over the last {self.WINDOW} "
                f"steps without a downward trend (it started at {_fmt(first)})",
                evidence={"mean": mean, "std": std, "first": first},
            )


class LossPlateau(Detector):
    slug = "loss-plateau"
    WINDOW = 50
    GAIN = 0.01  # under 1% better than the best before the window

    def check(self, w):
        loss = [v for v in _loss(w) if math.isfinite(v)]
        if len(loss) < 2 * self.WINDOW:
            return
        first = median(loss[:10])
        before = min(_medians(loss[: -self.WINDOW], 5))
        recent = min(_medians(loss[-self.WINDOW :], 5))
        if recent < before * (1 - self.GAIN) and before > 0:
            return
        if recent < 1e-3 * max(first, 1e-12):
            return  # converged to ~0: nothing left to gain
        stuck_at_start = recent > 0.9 * first
        yield self.finding(
            f"no improvement over the last {self.WINDOW} steps: best {_fmt(recent)} vs "
            f"{_fmt(before)} before"
            + (" (it has barely moved from the start)" if stuck_at_start else ""),
            evidence={"best_recent": recent, "best_before": before, "first": first},
            severity="warning" if stuck_at_start else "info",
        )


def _regularizers(w: Watch) -> str:
    from torch import nn

    tips = []
    if not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in w.model.modules()):
        tips.append("add dropout (p=0.1-0.5) before the last layers")
    if all(g.get("weight_decay", 0) == 0 for g in w.optimizer.param_groups):
        tips.append("add weight decay (AdamW weight_decay=1e-2, SGD 5e-4)")
    if any(isinstance(m, nn.Conv2d) for m in w.model.modules()):
        tips.append("augment the training images (flips, crops)")
    tips.append("use a smaller head or fewer parameters")
    return "; ".join(tips)


class Overfitting(Detector):
    slug, when = "overfitting", "val"
    # Validation loss 5% above its best at the last two evaluations, still rising: more than
    # the evaluation noise of a few hundred samples, and not a single unlucky evaluation.
    RISE = 0.05

    def check(self, w):
        val, train = w.signals.get("val/loss"), w.signals.get("train/loss")
        if len(val) < 4 or len(train) < 10:
            return
        best_i = min(range(len(val)), key=lambda i: val.values[i])
        best, last, prev = val.values[best_i], val.values[-1], val.values[-2]
        if best_i >= len(val) - 2 or prev < best * (1 + self.RISE) or last <= prev:
            return
        t_best = val.steps[best_i]
        train_at_best = median(
            [v for s, v in zip(train.steps, train.values, strict=True) if s <= t_best][-10:]
            or [math.nan]
        )
        train_now = median(train.last(10))
        if not train_now < train_at_best:
            return
        yield self.finding(
            f"validation loss rose from {_fmt(best)} (step {t_best}) to {_fmt(last)} while the "
            f"training loss fell from {_fmt(train_at_best)} to {_fmt(train_now)}",
            evidence={
                "val_best": best,
                "val_best_step": t_best,
                "val_last": last,
                "train_at_best": train_at_best,
                "train_now": train_now,
            },
            fix=f"Stop early at step {t_best} (keep that checkpoint); {_regularizers(w)}.",
        )


class Underfitting(Detector):
    slug, when = "underfitting", "val"
    GAP = 0.1  # train and validation within 10%
    HIGH = 0.5  # still above half the starting loss
    STALLED = 0.05  # the last validation improved less than 5%

    def check(self, w):
        val, train = w.signals.get("val/loss"), _loss(w)
        if len(val) < 3 or len(train) < 20:
            return
        first, train_now = median(train[:10]), median(train[-10:])
        last, prev = val.values[-1], val.values[-2]
        close = abs(last - train_now) <= self.GAP * max(train_now, 1e-12)
        high = train_now > self.HIGH * first and last > self.HIGH * first
        stalled = last > prev * (1 - self.STALLED)
        if close and high and stalled:
            yield self.finding(
                f"train loss {_fmt(train_now)} and validation loss {_fmt(last)} are close and "
                f"both above half the starting loss {_fmt(first)}, and no longer improving",
                evidence={"train": train_now, "val": last, "first": first},
            )


# -- modes, schedule, loss terms, replicas ----------------------------------------------------
class EvalModeDuringTraining(Detector):
    slug = "eval-mode-during-training"

    def check(self, w):
        n_layers = len(w._mode_layers)
        seen = w.signals.get("eval_mode_layers").last(5)
        if n_layers and len(seen) == 5 and all(v == n_layers for v in seen):
            names = [type(m).__name__ for m in w._mode_layers[:3]]
            yield self.finding(
                f"the model trained for 5+ steps with all {n_layers} BatchNorm/Dropout layers in "
                f"eval mode ({', '.join(names)}...): dropout is off and BN statistics are frozen",
                evidence={"layers_in_eval": n_layers},
            )


class TrainModeDuringEval(Detector):
    slug, when = "train-mode-during-eval", "val"

    def check(self, w):
        n = w.facts.pop("val_forwards_train_mode", 0)
        if n:
            yield self.finding(
                f"{n} no-grad (validation) forward passes ran with BatchNorm/Dropout in train mode: "
                "dropout dropped units and BN updated its statistics from validation data",
                evidence={"forwards": n},
            )


class CloseTrainModeDuringEval(TrainModeDuringEval):
    when = "close"


class LrScheduleSuspicious(Detector):
    slug = "lr-schedule-suspicious"
    NEAR_ZERO = 1e-3  # LR below 1/1000 of its peak does not move the weights any more
    TAIL = 0.1  # more than 10% of the steps so far spent there

    def check(self, w):
        for key, series in w.signals.layers("lr"):
            lrs = list(series.values)
            if len(lrs) < 20:
                continue
            peak = max(lrs)
            if peak <= 0:
                continue
            low = [i for i, v in enumerate(lrs) if v <= self.NEAR_ZERO * peak]
            if not low:
                continue
            first_low = low[0]
            if w.total_steps:
                early = first_low < 0.9 * w.total_steps and w.step > first_low + 10
            else:
                early = len(lrs) - first_low >= max(20, self.TAIL * len(lrs)) and len(low) > 0.9 * (
                    len(lrs) - first_low
                )
            if early:
                yield self.finding(
                    f"the learning rate of {key} fell from {peak:.3g} to {lrs[first_low]:.3g} by "
                    f"step {series.steps[first_low]} and training went on for "
                    f"{len(lrs) - first_low} more steps that cannot change the weights",
                    where=key,
                    evidence={"peak": peak, "step_near_zero": series.steps[first_low]},
                )


class LossWeightsUnbalanced(Detector):
    slug = "loss-weights-unbalanced"
    RATIO = 100.0  # two orders of magnitude: the small term barely moves the gradient

    def check(self, w):
        terms = {}
        for key, series in w.signals.series.items():
            name = key.removeprefix("train/")
            if (
                key.startswith("train/")
                and name != "loss"
                and (name.startswith("loss_") or name.endswith("_loss"))
            ):
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
            f"loss terms differ by {terms[big] / terms[small]:.0f}x: `{big}` ~{_fmt(terms[big])} "
            f"vs `{small}` ~{_fmt(terms[small])} (medians of the last steps)",
            where=small,
            evidence={"magnitudes": terms, "weights": weights},
            fix=f"Weight the terms to equal magnitude: loss = {code}, then tune from there.",
        )


class DdpOutOfSync(Detector):
    slug, when = "ddp-out-of-sync", "step"
    TOLERANCE = 1e-6  # DDP replicas are bit-identical; float noise alone stays far below this

    def check(self, w):
        seen = w.facts.get("replica_spread")
        if seen is None:
            return
        t, spread = seen
        bad = [(w.param_info[i].name, s) for i, s in enumerate(spread) if s > self.TOLERANCE]
        if bad:
            yield self.finding(
                f"at step {t} the replicas hold different values for {len(bad)} parameter(s), "
                f"e.g. `{bad[0][0]}` (relative difference {bad[0][1]:.2g})",
                where=bad[0][0],
                evidence={"step": t, "parameters": [n for n, _ in bad[:20]]},
            )


DETECTORS = [
    NonfiniteLoss,
    NonfiniteGradient,
    ExplodingGradients,
    VanishingGradients,
    DeadRelu,
    SaturatedActivations,
    UpdateRatioHigh,
    UpdateRatioLow,
    LossDiverging,
    LossOscillating,
    LossPlateau,
    Overfitting,
    Underfitting,
    WeightsNotUpdating,
    MissingZeroGrad,
    EvalModeDuringTraining,
    TrainModeDuringEval,
    CloseTrainModeDuringEval,
    LrScheduleSuspicious,
    LossWeightsUnbalanced,
    DdpOutOfSync,
]


def make_detectors() -> list[Detector]:
    """Fresh detectors (some keep state) for one watched run."""
    return [cls() for cls in DETECTORS]


# -- the catalogue entries ----------------------------------------------------------------------
def _doc(slug, severity, summary, why, fix, example, source):
    register(Rule(slug, severity, "in-flight", summary, why, fix, example, source))


_doc(
    "nonfinite-loss",
    "error",
    "The loss became NaN or Inf; names the first module whose output went non-finite",
    "Once a NaN enters the loss it reaches every gradient and, after one optimizer step, every "
    "weight: the run is lost and later numbers are meaningless. The first module whose output "
    "went non-finite (found with forward hooks in the same step) and the sign of the value (-inf: "
    "a log of 0; +inf: an overflow; NaN: 0/0 or inf - inf) point at the operation to guard.",
    "Guard the operation: log_softmax / logsigmoid instead of log(softmax), an eps in "
    "denominators and roots, a clamp before exp; lower the learning rate; clip gradients.",
    "probs = model(x).softmax(-1)\nloss = -(probs.log() * onehot).sum(1).mean()  # log(0) = -inf\n\n"
    "loss = F.cross_entropy(model(x), y)  # log_softmax inside, stable",
    "seed 004 (dealing with NaNs); TIPS.md In flight",
)
_doc(
    "nonfinite-gradient",
    "error",
    "The optimizer stepped with NaN/Inf gradients (or AMP keeps skipping steps); names the parameter",
    "A non-finite gradient turns the weights it touches into NaN at the next step. Under AMP the "
    "GradScaler skips such steps and lowers its scale, which is normal a few times; skipping most "
    "steps means the model itself produces inf/NaN and training has stopped moving.",
    "Find the operation with the nonfinite-loss hints (eps, clamp, log_softmax); lower the "
    "learning rate; clip gradients; with fp16 use torch.amp.GradScaler (or bfloat16).",
    "loss = (pred - y).pow(2).sum() / mask.sum()  # mask.sum() == 0 -> inf gradients\n\n"
    "loss = (pred - y).pow(2).sum() / mask.sum().clamp_min(1)",
    "seed 004 (NaNs); TIPS.md In flight",
)
_doc(
    "exploding-gradients",
    "warning",
    "The gradient norm spiked far above its running level; gives the clip value measured from your norms",
    "A gradient norm ten times its running median moves the weights by a step the loss surface "
    "was never measured for; loss spikes and NaNs follow. Clipping at a threshold taken from the "
    "run's own gradient norms (their 90th percentile) removes the spikes and leaves normal steps "
    "untouched, unlike a guessed max_norm=1.0.",
    "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=<measured p90>) between "
    "backward() and step(); if spikes persist, lower the learning rate or add warmup.",
    "loss.backward()\noptimizer.step()  # no clipping, occasional norm spikes\n\n"
    "loss.backward()\ntorch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=2.4)\noptimizer.step()",
    "seeds 001, 002, 004 (gradient clipping); TIPS.md In flight",
)
_doc(
    "vanishing-gradients",
    "warning",
    "Early layers get gradients orders of magnitude smaller than late layers",
    "When the per-element gradient of the first third of the weight layers is a thousand times "
    "smaller than that of the last third (the output layer left out), the early layers barely learn: the network behaves like a shallow one on fixed random "
    "features. Saturating activations (sigmoid/tanh) in deep stacks and missing normalization or "
    "skip connections are the usual causes.",
    "Use ReLU-family activations, add BatchNorm/LayerNorm, residual connections, and Kaiming init.",
    "nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.Sigmoid()) for _ in range(12)])\n\n"
    "nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64), nn.ReLU()) for _ in range(12)])",
    "seed 001 (backpropagation, vanishing gradients); TIPS.md In flight",
)
_doc(
    "dead-relu",
    "warning",
    "Half or more of a ReLU layer's units output 0 for every input",
    "A ReLU unit whose input is negative for every sample passes no gradient and never recovers. "
    "A too-high learning rate or a large negative bias kills them in a few steps; the layer then "
    "works at a fraction of its width.",
    "Lower the learning rate, use LeakyReLU (negative_slope=0.01) or GELU, check the bias init, "
    "add normalization before the activation.",
    "optimizer = torch.optim.SGD(model.parameters(), lr=5.0)  # kills the ReLUs\n\n"
    "optimizer = torch.optim.SGD(model.parameters(), lr=0.05); act = nn.LeakyReLU(0.01)",
    "seed 002 (LeakyReLU); TIPS.md In flight",
)
_doc(
    "saturated-activations",
    "warning",
    "Sigmoid/tanh outputs pinned at their limits, where the gradient is ~0",
    "A sigmoid at 0.99 passes back 1% of the gradient it passes at 0.5; when most units of a "
    "layer sit at the limits the layer stops learning. Large inputs (no normalization, big init "
    "or learning rate) push them there.",
    "Normalize the inputs of the layer (BatchNorm/LayerNorm), scale the init down, or use ReLU.",
    "nn.Sequential(nn.Linear(64, 256), nn.Tanh())  # raw inputs in 0..255\n\n"
    "nn.Sequential(nn.Linear(64, 256), nn.LayerNorm(256), nn.Tanh())  # and normalized inputs",
    "seed 001 (activation functions); TIPS.md In flight",
)
_doc(
    "update-ratio-high",
    "warning",
    "A layer's update/weight ratio is far above ~1e-3 per step (learning rate too high for it)",
    "The ratio of the update norm to the weight norm says how fast a layer moves: ~1e-3 is "
    "healthy, 1e-4..1e-2 acceptable. Above 1e-1 (a factor 10 beyond the band; Adam's first "
    "steps on small weights reach a few 1e-2) the layer is rewritten every few steps and cannot "
    "settle.",
    "Lower the learning rate of that layer's parameter group by the factor given, or overall.",
    "torch.optim.Adam(model.parameters(), lr=0.5)\n\ntorch.optim.Adam(model.parameters(), lr=1e-3)",
    "seed 004 (babysitting: update/weight ratio ~1e-3); TIPS.md In flight",
)
_doc(
    "update-ratio-low",
    "warning",
    "A layer's update/weight ratio is far below ~1e-3 per step (learning rate too low for it)",
    "Below 1e-5 of its norm per step (a factor 10 under the 1e-4..1e-2 band) a layer needs "
    "hundreds of thousands of steps to change: training looks stuck. Only steps at >= half the "
    "peak learning rate are judged, so a decaying schedule's tail does not fire.",
    "Raise the learning rate of that layer's group by the factor given, or run an LR range test.",
    "torch.optim.SGD(model.parameters(), lr=1e-6)\n\ntorch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)",
    "seed 004 (babysitting: update/weight ratio); TIPS.md In flight",
)
_doc(
    "loss-diverging",
    "error",
    "The loss climbs well above its best value",
    "A loss that doubles from its best and climbs back toward (or past) where it started has left "
    "the region the optimizer can handle: usually a learning rate too high for this phase, a "
    "gradient spike, or bad data in a part of the stream.",
    "Lower the learning rate (or add warmup), clip gradients at the measured percentile, and "
    "look at the batches where it began.",
    "optimizer = torch.optim.SGD(model.parameters(), lr=2.0)\n\n"
    "optimizer = torch.optim.SGD(model.parameters(), lr=0.05)",
    "seed 004 (loss curves); TIPS.md In flight",
)
_doc(
    "loss-oscillating",
    "warning",
    "The loss jumps up and down with no downward trend",
    "Minibatch noise makes the loss wiggle around a falling trend; a loss whose spread is a "
    "quarter of its starting value with no trend means the steps overshoot: the learning rate is "
    "too high, the batches are not shuffled (ordered by class), or the batch is tiny.",
    "Lower the learning rate, shuffle the training data, grow the batch, or clip gradients.",
    "DataLoader(train, batch_size=32, shuffle=False)  # sorted by label\n\n"
    "DataLoader(train, batch_size=32, shuffle=True)",
    "seed 004 (loss curves); TIPS.md In flight",
)
_doc(
    "loss-plateau",
    "warning",
    "The loss has not improved over a window of steps",
    "No 1% gain in 50 steps means the run spends compute for nothing: a learning rate too low (or "
    "annealed too early), too little capacity, or a bug that cuts the gradient. A plateau at the "
    "starting loss is a warning; one after learning is reported as info (annealing may help).",
    "Anneal (cosine, step decay) or restart the LR schedule, run an LR range test, grow the model.",
    "optimizer = torch.optim.SGD(model.parameters(), lr=1e-5)  # flat from the start\n\n"
    "scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)",
    "seed 001 (learning-rate annealing); TIPS.md In flight",
)
_doc(
    "overfitting",
    "warning",
    "Validation loss rises while training loss falls",
    "When the validation loss has risen 5% above its best (two evaluations in a row) while the training loss keeps falling, "
    "the model is memorizing the training set; every further step makes the model you would ship "
    "worse.",
    "Keep the checkpoint of the best validation step (early stopping) and regularize: dropout, "
    "weight decay, augmentation, a smaller head.",
    "model = nn.Sequential(nn.Linear(64, 2048), nn.ReLU(), nn.Linear(2048, 10))  # 200 samples\n\n"
    "model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))",
    "seeds 004, 001 (overfitting, early stopping); TIPS.md In flight",
)
_doc(
    "underfitting",
    "warning",
    "Training and validation loss are close, both high, and no longer improving",
    "No gap between training and validation while both stay above half the starting loss means the "
    "model cannot even fit the training data: too little capacity, too much regularization, or "
    "too short/slow training.",
    "Grow the model, train longer or with a higher learning rate, and remove regularization.",
    "model = nn.Linear(64, 10); optimizer = SGD(..., weight_decay=0.1)\n\n"
    "model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))",
    "seed 004 (no gap between train and validation); TIPS.md In flight",
)
_doc(
    "weights-not-updating",
    "error",
    "Parameters the optimizer holds do not change (or never get a gradient)",
    "A parameter that requires grad and is held by the optimizer but never changes is dead weight: "
    "the learning rate is 0, the forward detaches it (.detach(), .data, torch.no_grad), or it is "
    "replaced by a copy that the optimizer does not hold.",
    "Check the learning rate, remove the .detach()/no_grad in forward, and build the optimizer "
    "after moving and wrapping the model.",
    "h = self.encoder(x).detach()  # the encoder never learns\n\nh = self.encoder(x)",
    "beyond: TrainCheck (OSDI 2025), training invariants; TIPS.md In flight",
)
_doc(
    "missing-zero-grad",
    "error",
    "Gradients accumulate across optimizer steps because they are never reset",
    "PyTorch adds each backward's gradient to .grad. Without optimizer.zero_grad() every step uses "
    "the sum of all past gradients, a huge stale direction. Intended gradient accumulation calls "
    "backward several times and resets after each optimizer step; the watch counts backward "
    "passes per step and checks whether the grads were reset between steps, so it tells the two "
    "apart.",
    "Call optimizer.zero_grad() once per optimizer step (before the first backward of the step).",
    "for x, y in loader:\n    loss_fn(model(x), y).backward()\n    optimizer.step()\n\n"
    "for x, y in loader:\n    optimizer.zero_grad()\n    loss_fn(model(x), y).backward()\n    optimizer.step()",
    "beyond: TrainCheck (OSDI 2025); TIPS.md In flight",
)
_doc(
    "eval-mode-during-training",
    "warning",
    "Training steps run with every BatchNorm/Dropout layer in eval mode",
    "After model.eval() for validation, forgetting model.train() leaves dropout off and BatchNorm "
    "using frozen running statistics: the model trains without regularization and with stale "
    "normalization. A model whose only some BN layers are in eval (a deliberate BN freeze for "
    "fine-tuning) is not reported.",
    "Call model.train() at the start of every training epoch (after validation).",
    "for epoch in range(n):\n    validate(model)  # calls model.eval()\n    train_one_epoch(model)\n\n"
    "for epoch in range(n):\n    model.train(); train_one_epoch(model)\n    model.eval(); validate(model)",
    "seed 002 (BatchNorm at test time); TIPS.md In flight",
)
_doc(
    "train-mode-during-eval",
    "error",
    "Validation forward passes run with BatchNorm/Dropout in train mode",
    "Without model.eval(), dropout drops units during validation and BatchNorm normalizes with the "
    "validation batch's statistics and updates its running averages from validation data: the "
    "reported metrics are wrong and the model changes.",
    "Call model.eval() before validation and model.train() after it.",
    "with torch.no_grad():\n    val_loss = loss_fn(model(xv), yv)\n\n"
    "model.eval()\nwith torch.no_grad():\n    val_loss = loss_fn(model(xv), yv)\nmodel.train()",
    "seed 002 (BatchNorm at test time); TIPS.md In flight",
)
_doc(
    "lr-schedule-suspicious",
    "warning",
    "The learning rate reached ~0 long before the end of training",
    "A schedule built in epochs but stepped every batch (StepLR(step_size=30) with "
    "scheduler.step() in the batch loop) decays the LR to 1/1000 of its peak within a few hundred "
    "steps; the rest of the run cannot move the weights.",
    "Step epoch-based schedulers once per epoch, or build them in steps (T_max=total_steps).",
    "scheduler = StepLR(optimizer, step_size=30)\nfor x, y in loader:\n    ...; scheduler.step()\n\n"
    "for epoch in range(epochs):\n    for x, y in loader: ...\n    scheduler.step()",
    "seed 001 (annealing); TIPS.md In flight",
)
_doc(
    "loss-weights-unbalanced",
    "info",
    "Loss terms logged as loss_* / *_loss differ by orders of magnitude",
    "When one term of a summed loss is a hundred times another, the gradient follows the large "
    "term and the small one is effectively switched off. Weighting the terms to equal magnitude "
    "is the starting point the tips recommend; tune from there.",
    "Multiply each term by the weight given (largest magnitude / its magnitude).",
    "loss = loss_recon + loss_kl  # ~300 vs ~0.5\nwatch.log(loss=loss, loss_recon=loss_recon, loss_kl=loss_kl)\n\n"
    "loss = loss_recon + 600 * loss_kl",
    "seed 004 (multiple losses of equal magnitude); TIPS.md In flight",
)
_doc(
    "ddp-out-of-sync",
    "error",
    "Data-parallel replicas hold different parameter values",
    "Data parallelism assumes every replica holds the same weights; if gradients are not averaged "
    "(model not wrapped in DistributedDataParallel, a custom hook that skips the all-reduce, "
    "different seeds for init), each rank trains its own model and the saved one is arbitrary.",
    "Wrap the model with torch.nn.parallel.DistributedDataParallel before building the optimizer, "
    "and seed every rank identically for initialization.",
    "model = Net(); opt = SGD(model.parameters())  # under torchrun, no DDP\n\n"
    "model = DDP(Net()); opt = SGD(model.parameters())",
    "beyond: TrainCheck (OSDI 2025); TIPS.md In flight",
)
