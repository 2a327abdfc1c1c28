"""The helper tips of a Recipe as `fit` applies them: finetune, freeze_batchnorm, tta,
distill_from, progressive_resize, y_range (final_fit is in loop.py: a second run).

Each tip is the helper a user would call in their own loop (layer_groups.py, freezing.py,
tta.py, distill.py, resize.py, heads.py), plus the one decision fit has to make for them:
- `applies(...)` functions say why a tip does not apply to a setup ("" when it does); fit then
  notes "X not applied: why" and trains without it, and ablate skips the tip with that reason;
- tta "auto" picks transforms by the input's kind (images and signals: one-step shifts; no
  default anywhere else: a flip changes what a digit or a word means, and no transform keeps a
  table row's label);
- y_range keeps the user's model as it is (a forward hook bounds its output), so the
  checkpoints stay the model's own state dict, loadable into the model the user built; the
  range is recorded in the run's recipe.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trainwise.context import StaticContext
from trainwise.errors import SetupError
from trainwise.helpers import param_groups
from trainwise.interpret.forms import input_form
from trainwise.loss_kinds import BCE_LOGITS, CLASS_INDEX
from trainwise.spec import Setup
from trainwise.steps import TrainingStep
from trainwise.train.distill import DistillationLoss
from trainwise.train.freezing import GradualUnfreezing, freeze_batchnorm
from trainwise.train.heads import YRange
from trainwise.train.layer_groups import discriminative_lrs, layer_groups
from trainwise.train.recipe import Recipe
from trainwise.train.resize import ProgressiveResize
from trainwise.train.tta import tta

FINETUNE_GROUPS = 3  # fastai's split (two body groups and the head); one group unfrozen per epoch
Y_RANGE_MARGIN = 0.1  # "auto": the targets' span widened by this share on each side (fastai's
# y_range=(0, 5.5) for ratings 0.5-5 is ~11%): the sigmoid reaches its ends only at infinity
PROGRESSIVE_RESIZE = (0.5, 0.75, 1.0)  # ablate's "on": half, three quarters, then the full size


def applicable(recipe: Recipe, ctx: StaticContext) -> tuple[Recipe, Setup | None, list[str]]:
    """(the recipe with the helper tips that do not apply to ctx's setup turned off, y_range
    "auto" resolved; the setup to train with when distilling, else None; notes: each tip
    left off and why, the teacher)."""
    checks = {
        "tta": lambda: tta_not_for(ctx, recipe.tta),
        "distill_from": lambda: distill_not_for(ctx),
        "progressive_resize": lambda: resize_not_for(ctx, recipe.progressive_resize),
        "y_range": lambda: y_range_not_for(ctx),
        "finetune": lambda: finetune_not_for(ctx.model),
        "freeze_batchnorm": lambda: batchnorm_not_for(ctx.model),
    }
    off: dict[str, Any] = {}
    notes = []
    for name, why_not in checks.items():
        reason = why_not() if getattr(recipe, name) else ""
        if reason:
            off[name] = False if name in ("finetune", "freeze_batchnorm") else None
            notes.append(f"{name} not applied: {reason}")
    if recipe.y_range is not None and "y_range" not in off:
        off["y_range"] = y_range_bounds(ctx, recipe.y_range)
    recipe = recipe.replace(**off) if off else recipe
    if not recipe.distill_from:
        return recipe, None, notes
    train_setup, note = distilled(ctx.setup, ctx, recipe)
    return recipe, train_setup, [*notes, note]


# -- finetune, freeze_batchnorm ------------------------------------------------------------------


def finetune_not_for(model: nn.Module) -> str:
    try:
        layer_groups(model, FINETUNE_GROUPS)
    except SetupError as exc:
        return f"finetune needs {FINETUNE_GROUPS} layer groups: {exc}"
    return ""


def batchnorm_not_for(model: nn.Module) -> str:
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return ""
    return "the model has no BatchNorm layer"


def optimizer_groups(model: nn.Module, recipe: Recipe, lr: float) -> list[dict[str, Any]]:
    """AdamW's parameter groups: tw.param_groups, or with finetune tw.discriminative_lrs
    (head at `lr`, each earlier group `finetune_ratio` times lower; frozen parameters included,
    so gradual unfreezing needs no new optimizer)."""
    if recipe.finetune:
        return discriminative_lrs(model, lr, ratio=recipe.finetune_ratio,
                                  groups=FINETUNE_GROUPS, weight_decay=recipe.weight_decay)  # fmt: skip
    return param_groups(model, weight_decay=recipe.weight_decay)


def fine_tuning(model: nn.Module, recipe: Recipe, parallel: bool) -> tuple[Any, list[str]]:
    """(the gradual-unfreezing schedule or None, notes); freezes BatchNorm when asked."""
    notes = []
    if recipe.freeze_batchnorm:
        freeze_batchnorm(model)
        notes.append("freeze_batchnorm: BatchNorm statistics and affine fixed")
    if not recipe.finetune:
        return None, notes
    if parallel:  # DDP registers the parameters that need gradients once, when it wraps
        raise SetupError("fit: finetune (gradual unfreezing) on several processes is not "
                         "supported: DDP cannot follow parameters that start training later")  # fmt: skip
    groups = layer_groups(model, FINETUNE_GROUPS)
    notes.append(
        f"finetune: {FINETUNE_GROUPS} layer groups ({'; '.join(', '.join(g.names) for g in groups)}), "
        f"LRs lr / {recipe.finetune_ratio:g}^k from the head back; the head alone in epoch 1, "
        "one more group each epoch"
    )
    return GradualUnfreezing(model, groups), notes


# -- tta -------------------------------------------------------------------------------------------


class Shift:
    """x rolled by `by` along dimension `dim` (a one-pixel / one-sample shift; rolling wraps the
    edge row round, which on images with a plain border is the shift itself)."""

    def __init__(self, by: int, dim: int) -> None:
        self.by, self.dim = by, dim

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.roll(self.by, self.dim)

    def __repr__(self) -> str:
        return f"shift {self.by:+d} on dim {self.dim}"


class Flip:
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1)

    def __repr__(self) -> str:
        return "horizontal flip"


def tta_transforms(setting: str, form: str, flat: bool = False) -> tuple[list[Callable], str]:
    """(transforms, why none): "auto" on images gives one-pixel shifts in the four directions,
    on signals one-sample shifts both ways; "flip", "shift", "flip+shift" name them (images and
    signals only); any other input kind gets none, with the reason. `flat`: samples are 1-D
    vectors, which interpret's forms call a signal from 32 values on, but which may as well be
    a table row (or a flattened image): "auto" leaves them alone, a named setting shifts them."""
    if form not in ("image", "signal"):
        return [], (
            f"tta has no transforms for {form} inputs (only images and signals: a shift keeps "
            "their label; nothing known keeps a table row's, a token sequence's or a mask's)"
        )
    if flat and setting == "auto":
        return [], (
            "tta auto does not shift 1-D inputs: a vector may be a table row or a flattened "
            "image as well as a signal (give tta 'shift' when it is a signal)"
        )
    dims = (-1, -2) if form == "image" else (-1,)
    shifts = [Shift(by, dim) for dim in dims for by in (1, -1)]
    chosen = {"auto": shifts, "shift": shifts, "flip": [Flip()], "flip+shift": [Flip(), *shifts]}
    return chosen[setting], ""


def tta_not_for(ctx: StaticContext, setting: str = "auto") -> str:
    if _own_loss(ctx.setup):
        return "tta averages predictions; this setup's model computes its own loss"
    x = ctx.batch[0]
    if not isinstance(x, torch.Tensor) or not isinstance(ctx.trace.output, torch.Tensor):
        return "tta needs tensor inputs and a model that returns a tensor"
    if ctx.output_form == "probabilities" and ctx.loss_kind in CLASS_INDEX:
        return "tta averages softmax probabilities; this model outputs probabilities already"
    return tta_transforms(setting, input_form(x[0], ctx.task), x[0].dim() == 1)[1]


def tta_metrics(setup: Setup, ctx: StaticContext, model: nn.Module, setting: str,
                metrics: Any) -> tuple[dict[str, float], str]:  # fmt: skip
    """The whole validation set's metrics with TTA: the mean over the identity and the
    transforms of the softmax (cross-entropy / NLL), the sigmoid (BCE with logits) or the raw
    output (anything else), turned back into logits (log p; logit p) for the setup's loss and
    the metrics, which read them as they read the model's own. (metrics, transforms' names)."""
    from trainwise.train.loop import _on_device  # the loop's own batch splitting

    sample = ctx.batch[0][0]
    transforms, _ = tta_transforms(setting, input_form(sample, ctx.task), sample.dim() == 1)
    activation = "softmax" if ctx.loss_kind in CLASS_INDEX else (
        "sigmoid" if ctx.loss_kind == BCE_LOGITS else None)  # fmt: skip
    device = setup.torch_device
    metrics.reset()
    for i, batch in enumerate(setup.val_loader()):
        x, y = _on_device(setup, batch, i, "val")
        mean, _ = tta(model, [x], transforms, activation)  # (N, ...) on the CPU
        mean = mean.to(device)
        if activation == "softmax":
            out = mean.clamp_min(1e-12).log()  # log p: softmax(log p) = p
        elif activation == "sigmoid":
            out = torch.logit(mean, eps=1e-7)
        else:
            out = mean
        with torch.no_grad():
            loss = float(setup.loss_from_output(out, y))
        metrics.update(out, y, loss)
    return metrics.compute(), ", ".join(map(repr, transforms))


# -- distill_from ----------------------------------------------------------------------------------


def distill_not_for(ctx: StaticContext) -> str:
    if ctx.task == "classification" and ctx.loss_kind in CLASS_INDEX and not _own_loss(ctx.setup):
        return ""
    return (f"distillation is for single-label classification with a cross-entropy loss; this "
            f"setup is {ctx.task} with {ctx.setup.loss_name}")  # fmt: skip


class DistillStep:
    """A TrainingStep's fn: the student's logits and the teacher's on the batch's input, mixed
    by tw.DistillationLoss. `unsmoothed` keeps the plain cross-entropy of the same logits for
    the watch (the mix has a floor of its own, as smoothed losses do; see loop._logged)."""

    logged_as = "distill_loss"

    def __init__(self, setup: Setup, loss: DistillationLoss) -> None:
        self.setup, self.loss = setup, loss
        self.unsmoothed: torch.Tensor | None = None

    def __call__(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = self.setup.split_batch(batch, 0, "train")
        student = self.setup.predict(model, x)  # (N, C) logits
        teacher = self.loss.teacher
        teacher.eval()  # every call: a loop's model.train() never reaches it, but a user's may
        with torch.no_grad():
            taught = self.setup.predict(teacher, x)
        self.unsmoothed = F.cross_entropy(student.detach(), y)
        return self.loss.mix(student, taught, y)


def distilled(setup: Setup, ctx: StaticContext, recipe: Recipe) -> tuple[Setup, str]:
    """The setup to train with: its loss replaced by the distillation mix, the teacher loaded
    from recipe.distill_from."""
    import dataclasses

    teacher, source = load_teacher(recipe.distill_from, setup)
    loss = DistillationLoss(teacher, T=recipe.distill_temperature, alpha=recipe.distill_alpha)
    step = TrainingStep(DistillStep(setup, loss), name=repr(loss))
    note = (f"distilled from {source} at T {recipe.distill_temperature:g}, alpha "
            f"{recipe.distill_alpha:g} (label smoothing off: the teacher's soft targets replace it)")  # fmt: skip
    return dataclasses.replace(setup, loss=step), note


def load_teacher(run: str, student: Setup) -> tuple[nn.Module, str]:
    """(the teacher in eval mode on the student's device, what it is). `run`: a fit run folder
    (its best checkpoint, into the model of the setup file its run.json names, else into the
    student's model: self-distillation), or a state-dict file (into the student's model)."""
    path = Path(run)
    if path.is_dir():
        weights = path / "checkpoints" / "best.pt"
        target = _recorded_setup(path)
    else:
        weights, target = path, None
    if not weights.is_file():
        raise SetupError(
            f"distill_from {run}: no checkpoint at {weights}; expected a fit run's folder "
            "(trainwise runs lists them) or a state-dict file"
        )
    if target is not None:
        from trainwise.loader import load_setup

        model, built_from = load_setup(target).build_model(), target
    else:
        model, built_from = student.build_model(), "the student's own model"
    try:
        state = torch.load(weights, weights_only=True, map_location=student.torch_device)
        model.load_state_dict(state)
    except Exception as exc:
        raise SetupError(
            f"distill_from {run}: {weights} does not load into {built_from} ({exc})"
        ) from exc
    return model.to(student.torch_device).eval(), f"{weights} ({built_from})"


def _recorded_setup(run: Path) -> str | None:
    """The setup file a CLI fit run recorded (config "setup"), if it still exists."""
    try:
        config = json.loads((run / "run.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return None
    target = config.get("setup") if isinstance(config, dict) else None
    if not isinstance(target, str) or not Path(target.rpartition(":")[0]).is_file():
        return None
    return target


# -- progressive_resize ----------------------------------------------------------------------------


def resize_not_for(ctx: StaticContext, fractions: tuple[float, ...] = PROGRESSIVE_RESIZE) -> str:
    """"" when the inputs are image / signal batches (N, C, *spatial) and the model gives
    outputs of the same shape on the smallest size."""
    x = ctx.batch[0]
    form = input_form(x[0], ctx.task) if isinstance(x, torch.Tensor) and len(x) else "other"
    if form not in ("image", "signal") or x.dim() not in (3, 4, 5):
        return (f"progressive resizing is for image or signal batches (N, C, H, W) / (N, C, L); "
                f"these inputs are {form}")  # fmt: skip
    small = _resized(x, fractions[0])
    try:
        with torch.no_grad():
            out = ctx.setup.predict(ctx.model, small)
    except Exception as exc:  # noqa: BLE001 - any failure means the model needs its one size
        return (f"the model fails on inputs of size {tuple(small.shape[2:])} ({type(exc).__name__}"
                f": {str(exc)[:120]}); it needs a model that takes any size (global pooling)")  # fmt: skip
    if not isinstance(out, torch.Tensor) or out.shape != ctx.output.shape:
        return f"the model's output changes shape on inputs of size {tuple(small.shape[2:])}"
    return ""


def progressive_resize(ctx: StaticContext, fractions: tuple[float, ...], epochs: int
                       ) -> tuple[ProgressiveResize, str]:  # fmt: skip
    """The schedule: each fraction of the full size for an even share of the epochs (the full
    size gets the remainder); fewer epochs than sizes keep the last sizes."""
    full = tuple(ctx.batch[0].shape[2:])
    kept = fractions[-epochs:] if epochs < len(fractions) else fractions
    sizes = [tuple(max(1, round(f * s)) for s in full) for f in kept]
    resize = ProgressiveResize(sizes, epochs)
    plan = ", ".join(f"{s} x {n} epoch(s)" for s, n in zip(sizes, resize.epochs, strict=True))
    return resize, f"progressive resize: {plan}"


def _resized(x: torch.Tensor, fraction: float) -> torch.Tensor:
    return ProgressiveResize([tuple(max(1, round(fraction * s)) for s in x.shape[2:])], 1)(x)


# -- y_range -------------------------------------------------------------------------------------


def y_range_not_for(ctx: StaticContext) -> str:
    if ctx.task != "regression":
        return f"y_range bounds a regression's outputs; this setup is {ctx.task}"
    if not isinstance(ctx.trace.output, torch.Tensor) or _own_loss(ctx.setup):
        return "y_range needs a model that returns its prediction as a tensor"
    return ""


def y_range_bounds(ctx: StaticContext, setting: Any) -> tuple[float, float]:
    """(lo, hi): the recipe's, or "auto": the training targets' range widened by Y_RANGE_MARGIN
    of the span on each side."""
    if setting != "auto":
        return setting
    y = ctx.train_sample.targets.float()
    lo, hi = float(y.min()), float(y.max())
    margin = Y_RANGE_MARGIN * max(hi - lo, 1e-6)
    return lo - margin, hi + margin


class Bounded:
    """A forward hook: the model's output through tw.YRange(lo, hi). A hook, not a wrapper
    module, so that the model's state dict (the checkpoints) keeps the user's own keys."""

    def __init__(self, lo: float, hi: float) -> None:
        self.head = YRange(lo, hi)

    def __call__(self, module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
        return self.head(out)


def bound_outputs(model: nn.Module, lo: float, hi: float) -> str:
    model.register_forward_hook(Bounded(lo, hi))
    return (f"y_range [{lo:.4g}, {hi:.4g}]: outputs = lo + (hi - lo) * sigmoid(model(x)); the "
            f"checkpoints hold the model's own weights: nn.Sequential(model, "
            f"tw.YRange({lo:.4g}, {hi:.4g})) predicts as trained")  # fmt: skip


def _own_loss(setup: Setup) -> bool:
    return setup.loss is None or isinstance(setup.loss, TrainingStep)

