"""`tw.fit`: train a Setup with a Recipe of the tips, watched, validated and recorded.

One loop on one screen, as pytorch/examples and nanoGPT write theirs: the tips enter as small
pieces (train/schedules.py, clipping.py, init.py, data.py), the watch a user puts in their own
loop judges it as it trains, and its run record (kind "fit") holds the curves, the recipe, the
findings and the checkpoints.

Per optimizer step: the training loss (the watch records every batch). Every `val_every` steps:
one random validation batch (about VAL_POINTS points per run, the seeds' "validate often"). At
each epoch's end: the whole validation set, the metrics of record (torchmetrics), and the best
and last checkpoints. An error finding (divergence, NaN) stops the run, keeping the last good
checkpoint; `early_stop` stops on the overfitting finding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from trainwise.context import StaticContext
from trainwise.data import to_device
from trainwise.errors import SetupError
from trainwise.findings import Finding
from trainwise.helpers import param_groups
from trainwise.loss_kinds import CROSS_ENTROPY
from trainwise.lr_loop import group_ratios, set_lrs
from trainwise.spec import Setup
from trainwise.train import checkpoints
from trainwise.train.clipping import GradientClipper, grad_params
from trainwise.train.data import class_labels, sampled, with_validation
from trainwise.train.init import output_bias_init
from trainwise.train.metrics import TaskMetrics
from trainwise.train.recipe import Recipe
from trainwise.train.schedules import build_schedule

VAL_POINTS = 50  # random-batch validations per run: a curve, not a handful of dots
CHECK_EVERY = 10  # steps between looks at the watch's findings (an error stops the run)
FALLBACK_LR = 1e-3  # AdamW's default, when the range test finds no LR
STOPPING_RULES = ("overfitting",)  # what `early_stop` stops on


@dataclass
class FitStatus:
    """What a progress display shows, handed to `on_progress` (the loss only at val points)."""

    epoch: int
    epochs: int | None
    step: int
    total: int
    loss: float | None = None
    val: dict[str, float] = field(default_factory=dict)


@dataclass
class FitResult:
    """What `tw.fit` returns. metrics: the final whole-validation-set numbers ("val_loss",
    "val_accuracy", ...); best: those at the best checkpoint, with its step and epoch."""

    model: nn.Module
    recipe: Recipe  # as applied: lr "auto" resolved to the number used
    metrics: dict[str, float]
    best: dict[str, float]
    record_path: Path | None
    checkpoint: Path | None  # the best checkpoint (a state dict: torch.load(weights_only=True))
    findings: list[Finding]
    steps: int
    stopped: str = ""  # "" when it ran to the end; else why it stopped
    notes: list[str] = field(default_factory=list)  # what fit decided (held-out split, ...)

    @property
    def last_checkpoint(self) -> Path | None:
        return self.record_path / checkpoints.LAST if self.record_path else None

    def to_dict(self) -> dict[str, Any]:
        """The --json contract: record, checkpoint, recipe, metrics, best, findings."""
        return {
            "record": str(self.record_path) if self.record_path else None,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "recipe": self.recipe.to_dict(),
            "metrics": self.metrics,
            "best": self.best,
            "steps": self.steps,
            "stopped": self.stopped,
            "notes": self.notes,
            "findings": [f.to_dict() for f in self.findings],
        }


def fit(
    setup: Setup,
    epochs: int | None = None,
    steps: int | None = None,
    recipe: Recipe | None = None,
    *,
    seed: int = 0,
    record: bool = True,
    runs_dir: str | Path | None = None,
    sample: float | int | None = None,
    monitor: str = "val_loss",
    early_stop: bool = False,
    resume: str | Path | None = None,
    preset: str = "standard",
    verbose: bool = True,
    on_progress: Callable[[FitStatus], None] | None = None,
) -> FitResult:
    """Train `setup` for `epochs` (or `steps`) with `recipe` (default: every tip, Recipe()).

    sample:     train and validate on a stratified sample: a count or a fraction (0.1)
    monitor:    the validation metric that picks the best checkpoint ("val_loss", lower is
                better; "val_accuracy", "val_f1", "val_r2", "val_iou": higher is better)
    early_stop: stop when the watch finds overfitting (the best checkpoint is kept)
    resume:     a fit run folder: continue from its last checkpoint (weights, optimizer,
                schedule, clipping, RNG, step); the recipe and length are the run's own
    """
    state = checkpoints.load_last(resume) if resume is not None else None
    if state is not None:  # the run's own recipe (lr resolved), length, seed and sample
        recipe, epochs, steps = Recipe(**state["recipe"]), state["epochs"], state["steps"]
        seed, sample = state["seed"], state["sample"]
    recipe = recipe or Recipe()
    if (epochs is None) == (steps is None):
        raise SetupError("fit: give epochs=N or steps=N (one of them)")
    for name, value in (("epochs", epochs), ("steps", steps)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise SetupError(f"fit: {name}={value!r}; expected a positive int")
    checkpoints.check_monitor(monitor)
    torch.manual_seed(seed)

    setup, ctx, train_setup, notes = _prepared(setup, sample, seed, recipe.label_smoothing)
    loader = setup.train if isinstance(setup.train, DataLoader) else setup.train_loader()
    per_epoch = _batches_per_epoch(loader)
    total = steps if steps is not None else epochs * per_epoch
    epochs_planned = epochs if epochs is not None else math.ceil(total / per_epoch)

    # -- the recipe, resolved -------------------------------------------------------------------
    if recipe.lr == "auto" and state is None:
        lr, note = _range_test_lr(setup, recipe, seed)
        recipe = recipe.replace(lr=lr)
        notes.append(note)
    device = setup.torch_device
    model = setup.build_model().train()
    if recipe.output_bias and state is None:
        done = output_bias_init(model, ctx)
        notes.append(done or "output bias left as built (no final Linear/Conv with a bias)")
    optimizer = _optimizer(setup, model, recipe)
    scheduler = build_schedule(recipe.schedule, optimizer, total)
    autocast, scaler = _precision(recipe.precision, device)
    clipper = GradientClipper(recipe.clip)
    params = grad_params(optimizer)
    step, epoch, skip, best = 0, 0, 0, {}
    if state is not None:
        step, epoch, skip, best = checkpoints.restore(
            state, model, optimizer, scheduler, scaler, clipper
        )
        notes.append(f"resumed from {resume} at step {step}")

    config = {
        "fit": {"epochs": epochs, "steps": steps, "total_steps": total, "seed": seed,
                "sample": sample, "monitor": monitor, "early_stop": early_stop},
        "recipe": recipe.to_dict(),
        "notes": notes,
    }  # fmt: skip
    from trainwise.watch import Watch

    watch = Watch(
        model, optimizer, preset, log_dir=runs_dir, name=setup.name, verbose=verbose,
        scaler=scaler, total_steps=total, record=record, record_kind="fit", record_config=config,
    )  # fmt: skip
    folder = watch.record_path
    saved = checkpoints.Saver(folder, recipe, epochs, steps, seed, sample)
    val_every = max(1, total // VAL_POINTS)
    val_batches = _random_batches(setup, seed)
    # One set of metrics for every point, without torchmetrics' per-call argument checks.
    batch_metrics = TaskMetrics(ctx.task, ctx.num_classes, device, checked=False)
    stopped, final = "", {}

    def validate_batch() -> dict[str, float]:
        x, y = next(val_batches)
        return _evaluate(setup, ctx, model, [(x, y)], autocast, batch_metrics)

    try:
        evaluated_at = -1  # the step of the last whole-set evaluation
        while step < total and not stopped:
            resuming = state is not None and skip > 0
            epoch_rng = state["epoch_rng"] if resuming else torch.get_rng_state()
            torch.set_rng_state(epoch_rng)
            batches = iter(loader)  # draws the epoch's order from the RNG (the default sampler)
            for _ in range(skip):  # resuming mid-epoch: the same order, the done batches skipped
                next(batches)
            if resuming:
                torch.set_rng_state(state["rng"])  # dropout goes on where it stopped
            for index, batch in enumerate(batches, start=skip):
                x, y = setup.split_batch(batch, index, "train")
                x, y = to_device(x, device), to_device(y, device)
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    loss = train_setup.batch_loss(model, x, y)
                _step(loss, optimizer, scheduler, scaler, clipper, params)
                watch.log(**_logged(train_setup.loss, loss))
                step += 1
                status = FitStatus(epoch + 1, epochs_planned, step, total)
                if step % val_every == 0 or step == total:
                    status.loss, status.val = float(loss.detach()), validate_batch()
                    watch.log_val(**status.val)
                    saved.last(model, optimizer, scheduler, scaler, clipper, step, epoch,
                               index + 1, epoch_rng, best)  # fmt: skip
                if on_progress is not None:
                    on_progress(status)
                if step % CHECK_EVERY == 0 or step == total:
                    stopped = _stop_reason(watch.findings, early_stop)
                if stopped or step >= total:
                    break
            if not stopped and step % per_epoch == 0:  # the epoch ran to its end
                epoch += 1
                final, evaluated_at = _epoch_end(setup, ctx, model, autocast, watch), step
                best = saved.epoch_end(model, optimizer, scheduler, scaler, clipper, step,
                                       epoch, final, best, monitor)  # fmt: skip
            skip, state = 0, None
        if evaluated_at != step:  # ended mid-epoch (steps=N, or stopped): the model as it is
            final = _epoch_end(setup, ctx, model, autocast, watch)
            best = saved.epoch_end(model, optimizer, scheduler, scaler, clipper, step, epoch,
                                   final, best, monitor, last=not stopped.startswith("error"))  # fmt: skip
    except BaseException as exc:
        word = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        watch.abort(word, f"{type(exc).__name__}: {exc}")
        raise
    findings = watch.close()
    metrics = {f"val_{k}": v for k, v in final.items()}
    return FitResult(
        model=model, recipe=recipe, metrics=metrics, best=best, record_path=folder,
        checkpoint=saved.best_path, findings=findings, steps=step, stopped=stopped, notes=notes,
    )  # fmt: skip


# -- pieces of the loop ----------------------------------------------------------------------------


def _prepared(
    setup: Setup, sample: float | int | None, seed: int, smoothing: float
) -> tuple[Setup, StaticContext, Setup, list[str]]:
    """(the setup to validate on, what the check knows of it, the setup to train with, notes):
    sampled when asked, with a held-out split when it has no validation set, refused when it
    cannot train (the loss rejects the output, NaN in the data), its cross-entropy smoothed."""
    notes: list[str] = []
    if sample is not None:
        setup, note = sampled(setup, sample, seed, class_labels(setup))
        notes.append(note)
    setup, note = with_validation(setup, seed)
    notes += [note] if note else []
    ctx = StaticContext(setup, seed=seed)
    ctx.check_loss_accepts_output()  # an unusable setup fails here, before any training
    _refuse_nonfinite_data(ctx)
    train_setup, note = _with_label_smoothing(setup, ctx, smoothing)
    notes += [note] if note else []
    return setup, ctx, train_setup, notes


def _step(loss, optimizer, scheduler, scaler, clipper, params) -> None:
    """backward, clip (on unscaled gradients under fp16), step the optimizer and the schedule."""
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # clipping reads the true gradient norms
    clipper.clip(params)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()


def _batches_per_epoch(loader: Any) -> int:
    try:
        n = len(loader)
    except TypeError:
        raise SetupError(
            "fit: the training loader has no length (an IterableDataset): give steps=N"
        ) from None
    if n < 1:
        raise SetupError("fit: the training loader yields no batches")
    return n


def _refuse_nonfinite_data(ctx: StaticContext) -> None:
    """NaN or Inf in the (sampled) inputs or targets: unusable input, refused before the
    first step would write NaN into the weights."""
    from trainwise.rules.dataset import nonfinite_inputs

    for hit in nonfinite_inputs.check(ctx):
        raise SetupError(f"fit: {hit.message} (trainwise explain {nonfinite_inputs.slug})")


def _range_test_lr(setup: Setup, recipe: Recipe, seed: int) -> tuple[float, str]:
    """The LR of trainwise's range test, run with the recipe's optimizer."""
    from trainwise.lr_find import lr_find

    probe = dataclasses.replace(setup, optimizer=_optimizer_factory(setup, recipe))
    found = lr_find(probe, seed=seed, record=False)
    if found.suggested_lr is None:
        return FALLBACK_LR, f"lr auto: the range test found no LR; {FALLBACK_LR:g} used"
    return float(found.suggested_lr), f"lr auto: {found.suggested_lr:.3g} from the LR range test"


def _optimizer_factory(setup: Setup, recipe: Recipe):
    if recipe.optimizer == "setup":
        return setup.optimizer
    lr = recipe.lr if isinstance(recipe.lr, float | int) else FALLBACK_LR
    return lambda params: torch.optim.AdamW(
        param_groups(params, weight_decay=recipe.weight_decay), lr=lr
    )


def _optimizer(setup: Setup, model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adamw":
        lr = recipe.lr if isinstance(recipe.lr, float | int) else FALLBACK_LR
        groups = param_groups(model, weight_decay=recipe.weight_decay)
        return torch.optim.AdamW(groups, lr=lr)
    optimizer = setup.build_optimizer(model)
    if isinstance(recipe.lr, float | int):  # the Setup's optimizer at the recipe's LR
        set_lrs(optimizer, float(recipe.lr), group_ratios(optimizer))
    return optimizer


def _with_label_smoothing(setup: Setup, ctx: StaticContext, smoothing: float) -> tuple[Setup, str]:
    """The setup to train with: its CrossEntropyLoss smoothed on single-label classification.
    Validation keeps the setup's own loss, so recipes are compared on the same number."""
    if smoothing <= 0:
        return setup, ""
    if ctx.task != "classification" or ctx.loss_kind != CROSS_ENTROPY:
        return setup, (
            f"label smoothing not applied: it is for single-label classification with "
            f"cross-entropy; this is {ctx.task} with {setup.loss_name}"
        )
    loss = setup.loss
    if isinstance(loss, nn.CrossEntropyLoss) and loss.label_smoothing == 0:
        smoothed = SmoothedCrossEntropy(loss, smoothing)
    elif loss is F.cross_entropy:
        smoothed = SmoothedCrossEntropy(nn.CrossEntropyLoss(), smoothing)
    else:
        return setup, (
            f"label smoothing not applied: {setup.loss_name} is not a CrossEntropyLoss fit can "
            "change"
        )
    return dataclasses.replace(setup, loss=smoothed), f"label smoothing {smoothing:g}"


class SmoothedCrossEntropy(nn.Module):
    """The setup's cross-entropy with label smoothing, for the gradient. `unsmoothed` keeps the
    plain loss of the same logits (no extra forward) for the watch and the record: a smoothed
    loss has a floor, the entropy of the smoothed targets (0.29 nats for 3 classes at 0.1), that
    the loss-curve rules would read as a plateau or underfitting, and that no validation loss
    shares."""

    def __init__(self, base: nn.CrossEntropyLoss, smoothing: float) -> None:
        super().__init__()
        self.base, self.smoothing = base, smoothing
        self.unsmoothed: torch.Tensor | None = None

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        weight, ignore = self.base.weight, self.base.ignore_index
        self.unsmoothed = F.cross_entropy(out.detach(), y, weight=weight, ignore_index=ignore)
        return F.cross_entropy(out, y, weight=weight, ignore_index=ignore,
                               reduction=self.base.reduction, label_smoothing=self.smoothing)  # fmt: skip


def _logged(loss_fn: Any, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the watch gets for a step: the loss, unsmoothed when smoothing is on (the smoothed
    one, which the gradient followed, as "smoothed_loss")."""
    if isinstance(loss_fn, SmoothedCrossEntropy) and loss_fn.unsmoothed is not None:
        return {"loss": loss_fn.unsmoothed, "smoothed_loss": loss.detach()}
    return {"loss": loss.detach()}


class _NoScaler:
    """GradScaler's calls, doing nothing (fp32 and bf16 need no loss scaling)."""

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        pass

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def update(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _precision(setting: str, device: torch.device):
    """(autocast context factory, scaler). auto: bf16 on GPUs that have it, fp16 with a
    GradScaler on older GPUs, fp32 elsewhere."""
    kind = device.type
    if setting == "auto":
        if kind == "cuda":
            setting = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            setting = "fp32"
    if setting == "fp32":
        return contextlib.nullcontext, _NoScaler()
    dtype = torch.bfloat16 if setting == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(kind) if setting == "fp16" else _NoScaler()
    return (lambda: torch.autocast(kind, dtype=dtype)), scaler


def _random_batches(setup: Setup, seed: int) -> Iterator[tuple[Any, Any]]:
    """Endless random validation batches, from a generator of their own (the training RNG and
    data order stay as they would be without validation)."""
    dataset = setup.val_dataset
    generator = torch.Generator().manual_seed(seed + 1)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=setup.effective_batch_size, shuffle=True, generator=generator,
        collate_fn=setup.collate_fn("val"),
    )  # fmt: skip
    device = setup.torch_device
    while True:
        for i, batch in enumerate(loader):
            x, y = setup.split_batch(batch, i, "val")
            yield to_device(x, device), to_device(y, device)


@torch.no_grad()
def _evaluate(setup, ctx, model, batches, autocast, metrics=None) -> dict[str, float]:
    """Loss and metrics over `batches`, in eval mode, with the setup's own loss (into
    `metrics`, emptied first, when given)."""
    was = model.training
    model.eval()
    if metrics is None:
        metrics = TaskMetrics(ctx.task, ctx.num_classes, setup.torch_device)
    metrics.reset()
    for x, y in batches:
        with autocast():
            prediction = setup.predict(model, x)
            loss = (
                float(setup.batch_loss(model, x, y))
                if _own(setup)
                else float(setup.loss_from_output(prediction, y))
            )
        metrics.update(prediction, y, loss)
    model.train(was)
    return metrics.compute()


def _own(setup: Setup) -> bool:
    """The loss comes from the model or a training step, not from the prediction alone."""
    return setup.loss is None or not callable(setup.loss)


def _epoch_end(setup, ctx, model, autocast, watch) -> dict[str, float]:
    """The whole validation set: the metrics of record, also in the run record ("epoch_*")."""
    device = setup.torch_device
    loader = setup.val_loader()
    batches = (
        tuple(to_device(v, device) for v in setup.split_batch(b, i, "val"))
        for i, b in enumerate(loader)
    )
    values = _evaluate(setup, ctx, model, batches, autocast)
    watch.log_val(**{f"epoch_{k}": v for k, v in values.items()})
    return values


def _stop_reason(findings: list[Finding], early_stop: bool) -> str:
    for f in findings:
        if f.severity == "error" and f.caused_by is None:
            return f"error: {f.rule}"
    if early_stop and any(f.rule in STOPPING_RULES for f in findings):
        return "early stop: overfitting"
    return ""
