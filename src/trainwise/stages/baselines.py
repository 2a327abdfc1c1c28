"""Short training vs dumb baselines: a bounded run with validation must beat predicting the
majority class (or the mean target); a linear model on the flattened inputs is the next bar.
Judged by `no-better-than-baseline` (rules/protocol.py)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from trainwise.data import DataSample, sole_input, take
from trainwise.loss_kinds import REGRESSION
from trainwise.measurements import ShortTraining
from trainwise.stages import experiment as ex
from trainwise.stages.base import CheckRun, StageOutcome, Trained

VAL_MAX = 256  # validation samples evaluated at each point of the curve (±3% accuracy)
CURVE_POINTS = 6  # validation evaluations along the short training (the first at step 0)
QUICK_CURVE_POINTS = 3
HOLDOUT = 0.2  # of the training sample, when the setup has no validation set
LINEAR_MAX_FEATURES = 4096


class BaselinesStage:
    name = "baselines"
    title = "Short training vs baselines"

    def run(self, run: CheckRun) -> StageOutcome:
        if (reason := ex.training_skip_reason(run)) is not None:
            return ex.skipped(reason)
        train, val, val_from = _split(run)
        if len(train) < 2 or len(val) < 2:
            return ex.skipped("too few samples for a training/validation split")
        b = ex.budgets(run)
        size = min(run.setup.effective_batch_size, len(train))
        vx, vy = ex.rows(val, min(len(val), VAL_MAX), run)
        with ex.isolated(run):
            model, optimizer = ex.fresh(run)
            gen = torch.Generator().manual_seed(run.seed)
            stream = ex.batches(train, size, run, gen)
            deadline = ex.Deadline(b.train_seconds)
            points = QUICK_CURVE_POINTS if run.quick else CURVE_POINTS
            every = max(1, b.train_steps // (points - 1))
            curve: list[dict[str, float]] = [_evaluate(run, model, vx, vy, 0, math.nan, self.name)]
            recent: list[float] = []
            step = 0
            for step in range(1, b.train_steps + 1):
                x, y = next(stream)
                recent.append(ex.train_step(run, model, optimizer, x, y, self.name))
                ex.show_progress(run, f"training: loss {recent[-1]:.3g}", step, b.train_steps)
                if step % every == 0 or step == b.train_steps or deadline.passed:
                    train_loss = sum(recent[-every:]) / len(recent[-every:])
                    curve.append(_evaluate(run, model, vx, vy, step, train_loss, self.name))
                if deadline.passed or not math.isfinite(recent[-1]):
                    break
            run.short_training = Trained(model, x, y)  # for the train-eval stage
        trivial = _trivial(run, train, vx, vy)
        linear = _linear(run, train, val)
        measured = ShortTraining(step, curve[-1], trivial, linear, len(ex.first_tensor(vy)))
        outcome = StageOutcome(
            metrics={
                "steps": step,
                "validation": val_from,
                "curve": curve,
                "trivial": trivial,
                "linear": linear,
            },
            summary=_summary(measured),
            measurement=measured,
        )
        if step < b.train_steps and any(f.severity == "error" for f in outcome.findings):
            # The time budget cut the run short: too few steps to call it a failure.
            return ex.skipped(
                f"inconclusive: the time budget ({ex.fmt(b.train_seconds)}s) ran out after "
                f"{step} of {b.train_steps} steps ({outcome.summary})"
            )
        return outcome


def _split(run: CheckRun):
    ctx = run.context
    if ctx.val_sample is not None:
        return ctx.train_sample, ctx.val_sample, "the validation set"
    sample = ctx.train_sample
    n_val = max(1, int(len(sample) * HOLDOUT))
    cut = len(sample) - n_val

    def part(sl):
        return DataSample(
            sample.indices[sl],
            take(sample.inputs, sl),
            take(sample.targets, sl),
            sample.dataset_size,
        )

    return part(slice(0, cut)), part(slice(cut, None)), f"{n_val} held-out training samples"


def _classes(y: Any, out: Any) -> bool:
    return (
        isinstance(y, torch.Tensor)
        and not torch.is_floating_point(y)
        and isinstance(out, torch.Tensor)
        and out.dim() == y.dim() + 1
    )


@torch.no_grad()
def _evaluate(run, model, vx, vy, step, train_loss, stage) -> dict[str, float]:
    was = model.training
    model.eval()
    out, val_loss = ex.evaluate(run, model, vx, vy, stage)
    point = {"step": step, "train_loss": train_loss, "val_loss": val_loss}
    if _classes(vy, out):
        point["val_accuracy"] = float((out.argmax(dim=1) == vy).float().mean())
    model.train(was)
    return point


@torch.no_grad()
def _trivial(run, train, vx, vy) -> dict[str, Any]:
    """The majority class (or mean target), scored with the user's own loss on validation."""
    ty = train.targets
    out = run.context.output
    if (
        isinstance(ty, torch.Tensor)
        and not torch.is_floating_point(ty)
        and isinstance(out, torch.Tensor)
        and out.dim() == ty.dim() + 1
    ):
        c = out.shape[1]
        counts = torch.bincount(ty[(ty >= 0) & (ty < c)].flatten(), minlength=c).double()
        prior = (counts + 1e-3) / (counts + 1e-3).sum()
        shape = (vy.shape[0], c, *vy.shape[1:])
        logits = prior.log().float().view(1, c, *([1] * (vy.dim() - 1))).expand(shape)
        logits = logits.to(vy.device)
        majority = int(counts.argmax())
        return {
            "name": f"majority class ({majority})",
            "val_loss": _loss_or_nan(run, logits, vy),
            "val_accuracy": float((vy == majority).float().mean()),
        }
    if (
        isinstance(ty, torch.Tensor)
        and torch.is_floating_point(ty)
        and isinstance(vy, torch.Tensor)
    ):
        mean = ty.float().mean(dim=0, keepdim=True).to(vy.device).expand_as(vy)
        return {"name": "mean target", "val_loss": _loss_or_nan(run, mean, vy)}
    return {"name": "none", "val_loss": math.nan}


def _loss_or_nan(run, prediction, y) -> float:
    loss_fn = run.context.prediction_loss
    try:
        return float(loss_fn(prediction, y)) if loss_fn is not None else math.nan
    except Exception:  # a custom loss that wants the model's own output structure
        return math.nan


def _linear(run, train, val) -> dict[str, Any]:
    """Logistic or ridge regression on the flattened, standardized inputs (scikit-learn)."""
    x, y = sole_input(train.inputs), train.targets
    vx, vy = sole_input(val.inputs), val.targets
    if not all(isinstance(t, torch.Tensor) for t in (x, y, vx, vy)) or not torch.is_floating_point(
        x
    ):
        return {}
    xf, vxf = x.flatten(1).double().numpy(), vx.flatten(1).double().numpy()
    if xf.shape[1] > LINEAR_MAX_FEATURES:
        return {}
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings: a few hundred iterations do
        if not torch.is_floating_point(y) and y.dim() == 1:
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300))
            clf.fit(xf, y.numpy())
            return {
                "name": "logistic regression",
                "val_accuracy": float((clf.predict(vxf) == vy.numpy()).mean()),
            }
        if torch.is_floating_point(y) and run.context.loss_kind in REGRESSION:
            reg = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
            yf = y.reshape(len(y), -1).double().numpy()
            reg.fit(xf, yf)
            pred = torch.as_tensor(np.asarray(reg.predict(vxf)), dtype=vy.dtype).reshape(vy.shape)
            return {"name": "ridge regression", "val_loss": _loss_or_nan(run, pred, vy)}
    return {}


def _summary(m: ShortTraining) -> str:
    final, trivial, linear, steps = m.final, m.trivial, m.linear, m.steps
    acc = final.get("val_accuracy")
    if acc is not None and "val_accuracy" in trivial:
        return (
            f"{steps} steps: val accuracy {acc:.1%} vs {trivial['name']} "
            f"{trivial['val_accuracy']:.1%}"
            + (f", {linear['name']} {linear['val_accuracy']:.1%}" if linear else "")
            + f"; val loss {ex.fmt(final['val_loss'])}"
        )
    loss, base = final["val_loss"], trivial.get("val_loss", math.nan)
    summary = f"{steps} steps: val loss {ex.fmt(loss)} vs {trivial['name']} {ex.fmt(base)}" + (
        f", {linear['name']} {ex.fmt(linear['val_loss'])}" if linear else ""
    )
    if not math.isfinite(base):
        summary += " (no trivial baseline for this loss)"
    return summary
