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
from torch.utils.data import DataLoader, DistributedSampler

from trainwise.context import StaticContext
from trainwise.errors import SetupError
from trainwise.findings import Finding
from trainwise.helpers import param_groups
from trainwise.loss_kinds import CROSS_ENTROPY
from trainwise.lr_loop import group_ratios, set_lrs
from trainwise.spec import Setup
from trainwise.steps import TrainingStep
from trainwise.train import checkpoints, recipe_tips
from trainwise.train.clipping import GradientClipper, grad_params
from trainwise.train.data import class_labels, sampled, with_validation
from trainwise.train.init import output_bias_init
from trainwise.train.metrics import PointMetrics, TaskMetrics
from trainwise.train.parallel import Parallel
from trainwise.train.recipe import Recipe
from trainwise.train.schedules import build_schedule

VAL_POINTS = 50  # random-batch validations per run: a curve, not a handful of dots
CHECK_EVERY = 10  # steps between looks at the watch's findings (an error stops the run)
FALLBACK_LR = 1e-3  # AdamW's default, when the range test finds no LR
# lr "auto"'s trial runs: an eighth of the run each (benchmarks/fit_lr_auto.py), at least
# lr_trials' minimum, at most 250 steps (a bound on their cost in long runs, not a tuned value)
TRIAL_SHARE, TRIAL_STEPS = 8, (10, 250)
STOPPING_RULES = ("overfitting",)  # what `early_stop` stops on
# lr "auto"'s trial runs are short, and on a short horizon the largest stable LR tends to win
# (a tiny BERT trained from scratch: in 15-step trials only the top two LRs learned at all, and
# the pick, 0.011, diverged at step 60 of 125 where 0.003-0.0055 reach 99.5-100%). When the
# run it picked diverges, fit trains once more from the start, half a decade lower.
LR_RETRY_FACTOR = 10**0.5
DIVERGED = ("loss-diverging", "nonfinite-loss")  # the errors that say "the LR is too high"


@dataclass
class FitStatus:
    """What a progress display shows, handed to `on_progress` (the loss only at val points)."""

    epoch: int
    epochs: int | None
    step: int
    total: int
    loss: float | None = None
    val: dict[str, float] = field(default_factory=dict)  # a random validation batch's
    # the whole validation set's, on the step that ended an epoch (else None)
    epoch_metrics: dict[str, float] | None = None
    # the whole validation set now, on demand, with no effect on the run (no checkpoint, not
    # in the record, the best unchanged): what a sweep's pruner compares trials on at its rungs
    evaluate: Callable[[], dict[str, float]] | None = field(default=None, repr=False)


@dataclass
class FitResult:
    """What `tw.fit` returns. metrics: the final whole-validation-set numbers ("val_loss",
    "val_accuracy", ...; of the TTA predictions when the recipe has tta); best: those at the
    best checkpoint, with its step and epoch (without TTA). With final_fit, model and
    checkpoint are the final run's (trained on train + val) and metrics / best the first
    run's: nothing is left to validate the final model on (notes say so)."""

    model: nn.Module
    recipe: Recipe  # as applied: lr and precision "auto" resolved to what was used
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


class StopFit(Exception):
    """Raised by an `on_progress` callback to end a fit early and cleanly (a sweep pruning a
    trial): the model is evaluated as it is, the checkpoints and the record are kept, and
    `FitResult.stopped` is `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason or "stopped by on_progress"


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
    name: str | None = None,
    record_info: dict[str, Any] | None = None,
    on_progress: Callable[[FitStatus], None] | None = None,
    lr_retry: bool = True,
) -> FitResult:
    """Train `setup` for `epochs` (or `steps`) with `recipe` (default: every tip, Recipe()).

    sample:      train and validate on a stratified sample: a count or a fraction (0.1)
    monitor:     the validation metric that picks the best checkpoint ("val_loss", lower is
                 better; "val_accuracy", "val_f1", "val_r2", "val_iou": higher is better)
    early_stop:  stop when the watch finds overfitting (the best checkpoint is kept)
    resume:      a fit run folder: continue from its last checkpoint (weights, optimizer,
                 schedule, clipping, RNG, step); the recipe and length are the run's own
    name:        the run record's name (default: the setup's)
    record_info: more settings for the run record's config (a sweep's study and trial)
    on_progress: called after every step with a FitStatus (with the whole validation set's
                 metrics on an epoch's last step); it may raise StopFit to end the run
    lr_retry:    with lr "auto", a run that diverges at the LR picked trains once more from
                 the start half a decade lower (off for a sweep's trials: each is judged on
                 its own run, and the pruner has seen its steps)
    """
    state = checkpoints.load_last(resume) if resume is not None else None
    if state is not None:  # the run's own recipe (lr resolved), length, seed and sample
        recipe, epochs, steps = Recipe(**state["recipe"]), state["epochs"], state["steps"]
        seed, sample = state["seed"], state["sample"]
    plan = _Plan(epochs, steps, seed, sample, monitor, early_stop)
    torch.manual_seed(seed)
    run = _FitRun(setup, recipe or Recipe(), plan, state, on_progress)
    if state is not None:
        run.notes.append(f"resumed from {resume} at step {run.step}")
    watched = (preset, runs_dir, name or setup.name, verbose, record, record_info or {})
    run.open_watch(*watched)
    run.train()
    result = run.finish()
    if lr_retry and state is None and (recipe or Recipe()).lr == "auto" and _diverged(result):
        run, result = _retry_lower(setup, run, result, watched, on_progress)
    if run.recipe.final_fit and not result.stopped:
        result = _final_fit(run, result, watched, on_progress)
    return result


def _diverged(result: FitResult) -> bool:
    return result.stopped in {f"error: {rule}" for rule in DIVERGED}


def _retry_lower(setup: Setup, first: _FitRun, result: FitResult, watched: tuple, on_progress
                 ) -> tuple[_FitRun, FitResult]:  # fmt: skip
    """lr "auto" picked an LR the run diverged at: the same run once more from the start
    (the user's setup, sampled and split as before: the same seed, so the same data, initial
    weights and data order), at LR_RETRY_FACTOR lower.
    Its record is a run of its own that names the first; the result is the retry's (its
    findings too: the first run's are in its own record), with a note of what happened."""
    too_high = float(first.recipe.lr)
    lr = too_high / LR_RETRY_FACTOR
    preset, runs_dir, name, verbose, record, record_info = watched
    if verbose:  # said now: the run starts over, and its progress with it
        from rich.console import Console

        Console(stderr=True).print(
            f"[yellow]trainwise fit[/yellow]: the run diverged at lr {too_high:.3g} "
            f"({result.stopped}); training again from the start at {lr:.3g}", highlight=False
        )
    torch.manual_seed(first.plan.seed)
    run = _FitRun(setup, first.recipe.replace(lr=lr), first.plan, None, on_progress)
    info = {**record_info, "lr_retry": {"after": str(result.record_path), "diverged_at": too_high,
                                        "stopped": result.stopped}}  # fmt: skip
    run.open_watch(preset, runs_dir, name, verbose, record, info)
    run.train()
    retried = run.finish()
    where = f" ({result.record_path})" if result.record_path else ""
    note = (f"lr auto: the run at {too_high:.3g} stopped at step {result.steps} "
            f"({result.stopped}){where}; trained again from the start at {lr:.3g}, "
            f"{LR_RETRY_FACTOR:.2g}x lower")  # fmt: skip
    return run, dataclasses.replace(
        retried, notes=result.notes + [note] + [n for n in retried.notes if n not in result.notes],
    )  # fmt: skip


def _final_fit(first: _FitRun, result: FitResult, watched: tuple, on_progress) -> FitResult:
    """Recipe.final_fit: a second run from a fresh model on the training and validation data
    together (tw.train_plus_val), for the epoch count (or step) of the first run's best
    checkpoint, with the first run's recipe as applied. Nothing is left to validate it on: the
    result keeps the first run's validation numbers (metrics, best), says so in its notes,
    and its model and checkpoint (checkpoints/final.pt) are the final run's."""
    from trainwise.train.final_fit import train_plus_val

    plan, best = first.plan, result.best
    if plan.epochs is not None:
        epochs, steps = max(1, int(best.get("epoch") or plan.epochs)), None
    else:
        epochs, steps = None, max(1, int(best.get("step") or plan.steps))
    final_plan = _Plan(epochs, steps, plan.seed, None, plan.monitor, False)
    torch.manual_seed(plan.seed)
    recipe = result.recipe.replace(final_fit=False, tta=None)  # lr, y_range as resolved
    run = _FitRun(train_plus_val(first.setup), recipe, final_plan, None, on_progress,
                  validate=False)  # fmt: skip
    preset, runs_dir, name, verbose, record, record_info = watched
    info = {**record_info, "final_fit": {"after": str(result.record_path), "epochs": epochs,
                                         "steps": steps}}  # fmt: skip
    run.open_watch(preset, runs_dir, f"{name}-final", verbose, record, info)
    run.train()
    final = run.finish()
    length = f"{epochs} epoch(s)" if epochs else f"{steps} steps"
    where = f" ({result.record_path})" if result.record_path else ""
    note = (f"final fit: trained again on train + validation ({len(run.setup.train_dataset)} "
            f"samples) for {length}, the first run's best; no validation data is left, so "
            f"metrics and best are the first run's{where} and the final model has no held-out "
            "measure")  # fmt: skip
    checkpoint = final.record_path / checkpoints.FINAL if final.record_path else None
    if checkpoint is not None:
        checkpoints.save_model(final.model, checkpoint)
    return dataclasses.replace(
        final, recipe=result.recipe, metrics=result.metrics, best=result.best,
        checkpoint=checkpoint, findings=result.findings + final.findings,
        notes=result.notes + [note] + [f"final fit run: {n}" for n in final.notes],
    )  # fmt: skip


@dataclass(frozen=True)
class _Plan:
    """What was asked of a run (a resumed run's own, from its checkpoint)."""

    epochs: int | None
    steps: int | None
    seed: int
    sample: float | int | None
    monitor: str
    early_stop: bool

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise SetupError("fit: give epochs=N or steps=N (one of them)")
        for name, value in (("epochs", self.epochs), ("steps", self.steps)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SetupError(f"fit: {name}={value!r}; expected a positive int")
        checkpoints.check_monitor(self.monitor)


class _FitRun:
    """One fit: made ready in __init__ (data, the recipe resolved, model, optimizer, schedule),
    watched from open_watch(), trained by train(), summed up by finish()."""

    def __init__(self, setup: Setup, recipe: Recipe, plan: _Plan, state: dict | None,
                 on_progress: Callable[[FitStatus], None] | None, validate: bool = True
                 ) -> None:  # fmt: skip
        self.plan, self.state, self.on_progress = plan, state, on_progress
        # Joined first: under nccl each process then works on its own GPU from its first
        # tensor on (the checks below would otherwise all open cuda:0). None on one process.
        self.parallel = Parallel.from_env(setup.torch_device)
        smoothing = 0.0 if recipe.distill_from else recipe.label_smoothing  # distilling: the
        # teacher's soft targets take label smoothing's place
        self.setup, self.ctx, self.train_setup, self.notes = _prepared(
            setup, plan.sample, plan.seed, smoothing, validate
        )
        setup = self.setup
        # the helper tips that do not apply turned off (noted), "auto" settings resolved
        recipe, distilled, notes = recipe_tips.applicable(recipe, self.ctx)
        self.train_setup, self.notes = distilled or self.train_setup, self.notes + notes
        self.processes = self.parallel.world if self.parallel is not None else 1
        self.loader = self._train_loader()
        self.per_epoch = _batches_per_epoch(self.loader)
        self.total = plan.steps if plan.steps is not None else plan.epochs * self.per_epoch
        self.epochs_planned = plan.epochs or math.ceil(self.total / self.per_epoch)
        if recipe.lr == "auto" and state is None:
            # Several processes: rank 0 alone runs the range test and its trials (the others
            # would repeat the same work on the same cores), and every process trains at its LR.
            leader = self.parallel is None or self.parallel.leader
            lr, note = _range_test_lr(setup, recipe, plan.seed, self.total) if leader else (0, "")
            if self.parallel is not None:
                lr, note = self.parallel.agree((lr, note))
            recipe = recipe.replace(lr=lr)
            self.notes.append(note)
        self.device = setup.torch_device
        if recipe.precision == "auto":  # resolved, as lr "auto" is: the record says what ran
            precision, note = _auto_precision(self.device)
            recipe = recipe.replace(precision=precision)
            self.notes += [note] if note else []
        self.recipe = recipe
        self.pieces = self._build(recipe)
        # What the training step calls: the model, or its DDP wrapper (gradients averaged).
        self.trained = self.parallel.wrap(self.pieces.model) if self.parallel else self.pieces.model
        self.params = grad_params(self.pieces.optimizer)
        self.step, self.epoch, self.skip, self.best = 0, 0, 0, {}
        if state is not None:
            _check_processes(state, self.processes)
            self.step, self.epoch, self.skip, self.best = checkpoints.restore(state, self.pieces)
        self.val_every = max(1, self.total // VAL_POINTS)
        self.val_batches = _random_batches(setup, plan.seed) if validate else None
        # The loss and headline metric of each one-batch point (all metrics: whole-set passes).
        self.batch_metrics = PointMetrics(self.ctx.task, self.ctx.num_classes)
        self.requested = ""  # a stop asked for here (a finding, StopFit), not yet agreed
        self.stopped = ""  # why the run stopped early ("" while it goes on)
        self.final: dict[str, float] = {}  # the last whole-set validation
        self.evaluated_at = -1  # the step of the last whole-set validation

    def _train_loader(self) -> Any:
        setup = self.setup
        if self.parallel is not None:
            self.parallel.check(setup)
            self.notes.append(self.parallel.note(setup))
            return self.parallel.loader(setup, self.plan.seed)
        return setup.train if isinstance(setup.train, DataLoader) else setup.train_loader()

    def _build(self, recipe: Recipe) -> checkpoints.Pieces:
        """The model (output bias set on a fresh run), optimizer, schedule, scaler, clipper."""
        model = self.setup.build_model().train()
        if recipe.output_bias and self.state is None:
            done = output_bias_init(model, self.ctx, recipe.y_range)
            self.notes.append(
                done or "output bias left as built (no final Linear/Conv with a bias)"
            )
        if recipe.y_range is not None:
            self.notes.append(recipe_tips.bound_outputs(model, *recipe.y_range))
        self.unfreezing, notes = recipe_tips.fine_tuning(model, recipe, self.parallel is not None)
        self.notes += notes
        self.resize = None
        if recipe.progressive_resize:
            self.resize, note = recipe_tips.progressive_resize(
                self.ctx, recipe.progressive_resize, self.epochs_planned)
            self.notes.append(note)
        optimizer = _optimizer(self.setup, model, recipe)
        self.autocast, scaler = _precision(recipe.precision, self.device)
        schedule = build_schedule(recipe.schedule, optimizer, self.total)
        return checkpoints.Pieces(model, optimizer, schedule, scaler, GradientClipper(recipe.clip))

    def open_watch(self, preset: str, runs_dir, name: str | None, verbose: bool, record: bool,
                   record_info: dict[str, Any]) -> None:  # fmt: skip
        """The watch, whose run record (kind "fit") holds the recipe, the notes, the curves,
        the findings and the checkpoints."""
        from trainwise.watch import Watch

        plan = self.plan
        config = {
            "fit": {"epochs": plan.epochs, "steps": plan.steps, "total_steps": self.total,
                    "seed": plan.seed, "sample": plan.sample, "monitor": plan.monitor,
                    "early_stop": plan.early_stop},
            "recipe": self.recipe.to_dict(),
            "notes": self.notes,
            **record_info,
        }  # fmt: skip
        leader = self.parallel is None or self.parallel.leader  # writes the record, shows
        self.watch = Watch(
            self.pieces.model, self.pieces.optimizer, preset, log_dir=runs_dir, name=name,
            verbose=verbose and leader, scaler=self.pieces.scaler, total_steps=self.total,
            record=record and leader, record_kind="fit", record_config=config,
        )  # fmt: skip
        self.saved = checkpoints.Saver(self.watch.record_path, self.recipe, plan.epochs,
                                       plan.steps, plan.seed, plan.sample, self.processes,
                                       self.total)  # fmt: skip

    # -- training ---------------------------------------------------------------------------
    def train(self) -> None:
        try:
            while self.step < self.total and not self.stopped:
                self._epoch()
            if self.evaluated_at != self.step:  # ended mid-epoch (steps=N, or stopped)
                self._validate_all(last=not self.stopped.startswith("error"))
        except BaseException as exc:
            word = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            self.watch.abort(word, f"{type(exc).__name__}: {exc}")
            raise

    def _epoch(self) -> None:
        batches, epoch_rng = self._epoch_batches()
        for schedule in (self.unfreezing, self.resize):  # set the whole state: resumable
            if schedule is not None:
                schedule.on_epoch_start(self.epoch)
        for index, batch in enumerate(batches, start=self.skip):
            loss = self._train_step(batch, index)
            status = FitStatus(self.epoch + 1, self.epochs_planned, self.step, self.total,
                               evaluate=self._peek_all)  # fmt: skip
            if self.step % self.val_every == 0 or self.step == self.total:
                status.loss, status.val = float(loss.detach()), self._validate_batch()
                self.saved.last(self.pieces, self.step, self.epoch, index + 1, epoch_rng,
                                self.best, mid_epoch=self.step != self.total)  # fmt: skip
            epoch_end = self.step % self.per_epoch == 0  # the epoch's last batch
            checking = self.step % CHECK_EVERY == 0 or self.step == self.total or epoch_end
            if checking:
                self.requested = self.requested or _stop_reason(self.watch.findings,
                                                                self.plan.early_stop)  # fmt: skip
                self.stopped = self._agreed(self.requested)
            if not self.stopped and epoch_end:
                self.epoch += 1
                status.epoch_metrics = self._validate_all()
            self._report(status)  # may ask to stop (StopFit)
            if self.parallel is None:  # one process: a stop asked for now is taken now
                self.stopped = self.requested
            if self.stopped or self.step >= self.total:
                break
        self.skip, self.state = 0, None

    def _agreed(self, reason: str) -> str:
        """The stop every process takes: rank 0's (all ranks ask at the same steps)."""
        return reason if self.parallel is None else self.parallel.agree(reason)

    def _epoch_batches(self) -> tuple[Iterator[Any], torch.Tensor]:
        """The epoch's batches and the RNG state that drew their order (the default sampler
        draws it from torch's RNG); resuming mid-epoch, the same order with the done batches
        skipped, and the RNG put back where the killed run was (dropout goes on from there)."""
        resuming = self.state is not None and self.skip > 0
        epoch_rng = self.state["epoch_rng"] if resuming else torch.get_rng_state()
        torch.set_rng_state(epoch_rng)
        sampler = getattr(self.loader, "sampler", None)
        if isinstance(sampler, DistributedSampler):  # its order is a function of the epoch
            sampler.set_epoch(self.epoch)
        batches = iter(self.loader)
        for _ in range(self.skip):
            next(batches)
        if resuming:
            torch.set_rng_state(self.state["rng"])
        return batches, epoch_rng

    def _train_step(self, batch: Any, index: int) -> torch.Tensor:
        x, y = self.setup.batch_on_device(batch, index, "train", self.device)
        if self.resize is not None:
            x = self.resize(x)  # (N, C, *size of this epoch)
        pieces = self.pieces
        pieces.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.train_setup.batch_loss(self.trained, x, y)
        _step(loss, pieces, self.params)
        self.watch.log(**_logged(self.train_setup.loss, loss))
        self.step += 1
        return loss

    def _validate_batch(self) -> dict[str, float]:
        """One random validation batch: a point of the validation curve the watch judges."""
        if self.val_batches is None:  # a final fit: no validation data
            return {}
        values = _evaluate(self.setup, self.pieces.model, [next(self.val_batches)],
                           self.autocast, self.batch_metrics)  # fmt: skip
        self.watch.log_val(**values)
        return values

    def _validate_all(self, last: bool = True) -> dict[str, float]:
        """The whole validation set: the metrics of record (also in the record as "epoch_*"),
        and the checkpoints (last.pt unless `last` is False: the last good one stays)."""
        setup = self.setup
        if setup.val is not None:  # a final fit has none: only last.pt is saved
            indexed, sharded = enumerate(setup.val_loader()), False
            if self.parallel is not None:  # each rank evaluates a share; the sums are reduced
                indexed, sharded = self.parallel.shard(setup.val_loader())
            batches = (setup.batch_on_device(b, i, "val") for i, b in indexed)
            metrics = TaskMetrics(self.ctx.task, self.ctx.num_classes, self.device, sharded)
            self.final = _evaluate(setup, self.pieces.model, batches, self.autocast, metrics)
            self.watch.log_val(**{f"epoch_{k}": v for k, v in self.final.items()})
        self.evaluated_at = self.step
        self.best = self.saved.epoch_end(self.pieces, self.step, self.epoch, self.final,
                                         self.best, self.plan.monitor, last=last)  # fmt: skip
        return dict(self.final)

    def _peek_all(self) -> dict[str, float]:
        """The whole validation set's loss (and headline metric, as the one-batch points
        compute it) now, leaving the run as it was: the validation RNG, the checkpoints, the
        best and the record untouched. Not sharded: on several processes a rank that calls it
        evaluates the whole set alone (no collective, so ranks need not call it together)."""
        setup = self.setup
        # A DataLoader draws its base seed from torch's RNG when iterated: put the RNG back,
        # so the training after this (data order, dropout) is what it would have been.
        rng = torch.get_rng_state()
        batches = (setup.batch_on_device(b, i, "val") for i, b in enumerate(setup.val_loader()))
        try:
            return _evaluate(setup, self.pieces.model, batches, self.autocast, self.batch_metrics)
        finally:
            torch.set_rng_state(rng)

    def _report(self, status: FitStatus) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(status)
        except StopFit as stop:
            self.requested = self.requested or stop.reason

    def _with_tta(self) -> None:
        """Recipe.tta: the final metrics are those of the TTA predictions (the plain ones and
        the difference in the notes; `best` stays the plain best checkpoint's)."""
        if not self.recipe.tta or not self.final or self.setup.val is None:
            return
        metrics = TaskMetrics(self.ctx.task, self.ctx.num_classes, self.device)
        averaged, views = recipe_tips.tta_metrics(self.setup, self.ctx, self.pieces.model,
                                                  self.recipe.tta, metrics)  # fmt: skip
        shown = "; ".join(f"val_{k} {self.final[k]:.4g} -> {v:.4g}"
                          for k, v in averaged.items() if k in self.final)  # fmt: skip
        self.notes.append(f"tta over the identity and {views}: {shown} (without -> with)")
        self.watch.log_config(tta={"plain": self.final, "tta": averaged, "transforms": views})
        self.final = averaged

    def finish(self) -> FitResult:
        self._with_tta()
        self.watch.log_config(outcome={"steps": self.step, "stopped": self.stopped},
                              notes=self.notes)  # fmt: skip
        findings = self.watch.close()
        return FitResult(
            model=self.pieces.model, recipe=self.recipe,
            metrics={f"val_{k}": v for k, v in self.final.items()}, best=self.best,
            record_path=self.watch.record_path, checkpoint=self.saved.best_path,
            findings=findings, steps=self.step, stopped=self.stopped, notes=self.notes,
        )  # fmt: skip


# -- pieces of the loop ----------------------------------------------------------------------------


def _prepared(
    setup: Setup, sample: float | int | None, seed: int, smoothing: float, validate: bool = True
) -> tuple[Setup, StaticContext, Setup, list[str]]:
    """(the setup to validate on, what the check knows of it, the setup to train with, notes):
    sampled when asked, with a held-out split when it has no validation set (unless `validate`
    is False: a final fit), refused when it cannot train (the loss rejects the output, NaN in
    the data), its cross-entropy smoothed."""
    notes: list[str] = []
    if sample is not None:
        setup, note = sampled(setup, sample, seed, class_labels(setup))
        notes.append(note)
    if validate:
        setup, note = with_validation(setup, seed)
        notes += [note] if note else []
    ctx = StaticContext(setup, seed=seed)
    ctx.check_loss_accepts_output()  # an unusable setup fails here, before any training
    _refuse_untrainable_data(ctx)
    train_setup, note = _with_label_smoothing(setup, ctx, smoothing)
    notes += [note] if note else []
    return setup, ctx, train_setup, notes


def _step(loss: torch.Tensor, pieces: checkpoints.Pieces, params: list[torch.Tensor]) -> None:
    """backward, clip (on unscaled gradients under fp16), step the optimizer and the schedule."""
    scaler = pieces.scaler
    if isinstance(scaler, _NoScaler):  # fp32, bf16: the plain step (each call costs, small models)
        loss.backward()
        pieces.clipper.clip(params)
        pieces.optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(pieces.optimizer)  # clipping reads the true gradient norms
        pieces.clipper.clip(params)
        scaler.step(pieces.optimizer)
        scaler.update()
    pieces.scheduler.step()


def _check_processes(state: dict[str, Any], processes: int) -> None:
    """A run resumes on as many processes as it trained on: each one's share of the data, and
    the global batch, depend on it (every process loads the same checkpoint, rank 0's: the
    replicas were identical, and each process ran the same seed)."""
    trained_on = state.get("processes", 1)
    if trained_on != processes:
        raise SetupError(
            f"fit --resume: the run trained on {trained_on} process(es) and would go on on "
            f"{processes}: resume it with --devices {trained_on}"
        )


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


def _refuse_untrainable_data(ctx: StaticContext) -> None:
    """Unusable input, refused before the first step: NaN or Inf in the (sampled) inputs or
    targets (it would write NaN into the weights), class labels the model has no output for
    (the loss would raise an IndexError on the CPU and, on a GPU, a device-side assert that
    leaves the process unable to run anything on it)."""
    from trainwise.rules.data import labels_out_of_range
    from trainwise.rules.dataset import nonfinite_inputs

    for found in (nonfinite_inputs, labels_out_of_range):
        for hit in found.check(ctx):
            raise SetupError(f"fit: {hit.message} (trainwise explain {found.slug})")


def _range_test_lr(setup: Setup, recipe: Recipe, seed: int, total: int) -> tuple[float, str]:
    """lr "auto": trainwise's range test, run with the recipe's optimizer, then trial runs an
    eighth of this run long at candidate LRs under its divergence onset, the best of them.
    The range test alone picked 0.05-0.08 for the benchmark's transformer, which then diverged
    or stalled (88.3% against the oracle's 100%); with the trials it is 98.9% at +40-50% of a
    run's compute on the six tasks of benchmarks/fit_lr_auto.py."""
    from trainwise.lr_find import lr_find

    probe = dataclasses.replace(setup, optimizer=_optimizer_factory(setup, recipe))
    trial_steps = min(max(total // TRIAL_SHARE, TRIAL_STEPS[0]), TRIAL_STEPS[1])
    found = lr_find(probe, seed=seed, record=False, trial_steps=trial_steps)
    if found.suggested_lr is None:
        return FALLBACK_LR, f"lr auto: the range test found no LR; {FALLBACK_LR:g} used"
    lr = float(found.suggested_lr)
    if found.trials is None or found.trials.lr is None:  # every trial diverged
        return lr, f"lr auto: {lr:.3g} from the LR range test (every trial run diverged)"
    tried = len(found.trials.lrs)
    return lr, f"lr auto: {lr:.3g}, the best of {tried} trial runs of {trial_steps} steps"


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
        return torch.optim.AdamW(recipe_tips.optimizer_groups(model, recipe, lr), lr=lr)
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
    one, which the gradient followed, as "smoothed_loss"); distilling, the plain cross-entropy
    and the distillation mix as "distill_loss"."""
    source = loss_fn.fn if isinstance(loss_fn, TrainingStep) else loss_fn
    plain = getattr(source, "unsmoothed", None)
    if isinstance(source, SmoothedCrossEntropy | recipe_tips.DistillStep) and plain is not None:
        return {"loss": plain, getattr(source, "logged_as", "smoothed_loss"): loss.detach()}
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


def _auto_precision(device: torch.device) -> tuple[str, str]:
    """(precision, a note for a GPU) of precision "auto": bf16 on GPUs that have it, fp16 with
    a GradScaler on older GPUs, fp32 elsewhere (CPU autocast is slower than fp32 there)."""
    if device.type != "cuda":
        return "fp32", ""
    if torch.cuda.is_bf16_supported():
        return "bf16", f"precision auto: bf16 autocast on {torch.cuda.get_device_name(device)}"
    return "fp16", (
        f"precision auto: fp16 autocast with a GradScaler on {torch.cuda.get_device_name(device)}"
        " (no bfloat16 on this GPU)"
    )


def _precision(setting: str, device: torch.device):
    """(autocast context factory, scaler) of a resolved precision ("fp32", "bf16", "fp16";
    _FitRun resolves "auto" before it builds)."""
    kind = device.type
    if setting == "fp32":
        return contextlib.nullcontext, _NoScaler()
    dtype = torch.bfloat16 if setting == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(kind) if setting == "fp16" else _NoScaler()
    return (lambda: torch.autocast(kind, dtype=dtype)), scaler


def _random_batches(setup: Setup, seed: int) -> Iterator[tuple[Any, Any]]:
    """Endless random validation batches, from a generator of their own (the training RNG and
    data order stay as they would be without validation)."""
    generator = torch.Generator().manual_seed(seed + 1)
    device = setup.torch_device
    loader = torch.utils.data.DataLoader(
        setup.val_dataset, batch_size=setup.effective_batch_size, shuffle=True,
        generator=generator, collate_fn=setup.collate_fn("val"),
    )  # fmt: skip
    while True:
        for i, batch in enumerate(loader):
            yield setup.batch_on_device(batch, i, "val", device)


@torch.no_grad()
def _evaluate(setup: Setup, model: nn.Module, batches, autocast,
              metrics: TaskMetrics | PointMetrics) -> dict[str, float]:  # fmt: skip
    """Loss and metrics over `batches`, in eval mode, with the setup's own loss (into
    `metrics`, emptied first)."""
    was = model.training
    model.eval()
    metrics.reset()
    for x, y in batches:
        with autocast():
            prediction = setup.predict(model, x)
            loss = (  # a 0-d tensor: metrics sum it on the device
                setup.batch_loss(model, x, y)
                if _own(setup)
                else setup.loss_from_output(prediction, y)
            )
        metrics.update(prediction, y, loss)
    model.train(was)
    return metrics.compute()


def _own(setup: Setup) -> bool:
    """The loss comes from the model or a training step, not from the prediction alone."""
    return setup.loss is None or not callable(setup.loss)


def _stop_reason(findings: list[Finding], early_stop: bool) -> str:
    for f in findings:
        if f.severity == "error" and f.caused_by is None:
            return f"error: {f.rule}"
    if early_stop and any(f.rule in STOPPING_RULES for f in findings):
        return "early stop: overfitting"
    return ""
