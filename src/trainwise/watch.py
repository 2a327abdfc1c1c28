"""`trainwise.watch`: in-flight diagnosis attached to any training loop.

    watch = tw.watch(model, optimizer)
    for x, y in loader:
        ...
        optimizer.step()
        watch.log(loss=loss)

Probes (trainwise.probes) measure through PyTorch's hooks: optimizer step pre/post hooks mark
the steps (so gradient accumulation and GradScaler-skipped steps are handled), module forward
hooks see the outputs, parameter hooks see the end of each backward. Every step keeps its loss
(and the metrics logged with it), the learning rates, whether the optimizer stepped and its
timing. The probes measure on *measured* steps only: the first MEASURED_START steps, then every
`measure_every`-th step, after DENSE_UNTIL every `measure_every_later`-th (the preset's; every
step under "full"; further apart on steps so short that the measured steps would cost more than
their budget of the step time: trainwise.cadence), and every step once a loss has gone
non-finite (the write probe compares the gap before any step that follows a validation). On
the steps in between the activation and parameter hooks are removed; what remains is the step
hooks' bookkeeping and the write probe's fingerprint, and their losses stay on the device until
the next measured step, when everything comes back in one transfer (the only sync) and each
probe writes its declared signals (trainwise.signals) into `watch.signals`, step by step. The
judge runs the in-flight rules (trainwise.rules.inflight) on a read-only view of that history
after each measured step (the window and validation rules once per judging period).
Any probe or rule that raises is switched off with one warning; training goes on.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainwise.cadence import DENSE_UNTIL, JUDGE_EVERY, Cadence
from trainwise.causes import attribute, fold
from trainwise.errors import SetupError
from trainwise.findings import Finding
from trainwise.guard import Guard
from trainwise.judging import Judge
from trainwise.probes import (
    ActivationProbe,
    GradientProbe,
    ModeProbe,
    Pending,
    StepTimer,
    UpdateProbe,
    optimizer_params,
)
from trainwise.probes import distributed as dist_probe
from trainwise.probes.first_forwards import PIECE as FIRST_FORWARD_PROBE
from trainwise.probes.first_forwards import FirstForwardProbe
from trainwise.probes.gradients import PIECE as GRADIENT_PROBE
from trainwise.probes.params import clean_name
from trainwise.probes.timing import write_timing
from trainwise.probes.writes import PIECE as WRITE_PROBE
from trainwise.probes.writes import WriteProbe
from trainwise.rules.inflight import Phase, View, Watched
from trainwise.signals import (
    LR,
    STEPPED,
    TRAIN,
    VAL,
    VAL_FORWARDS_TRAIN_MODE,
    History,
    Producer,
    Signals,
)
from trainwise.train.frozen_marks import frozen_on_purpose

logger = logging.getLogger("trainwise.watch")


@dataclass(frozen=True)
class Preset:
    """How much the watch measures. `every`: period (in steps) of the sampled probes;
    `measure_every`: period of the measured steps (gradient norms, the output check, modes)
    until step DENSE_UNTIL, `measure_every_later` after it; the sampled steps are measured too."""

    every: int
    check_finite: bool  # sum of every module output on measured steps, to name the first NaN
    watch_writes: bool  # fingerprint the weights at each step's end and a measured step's start
    measure_every: int
    measure_every_later: int
    budgeted: bool  # the measured steps and judging rounds keep within a share of the step time


PRESETS = {
    # every step: loss, LR, timing; every 10th (20th after step 200): grad norms (global, per
    # layer), non-finite grads
    "cheap": Preset(
        every=100, check_finite=False, watch_writes=False, measure_every=10, measure_every_later=20,
        budgeted=True,
    ),
    # + every module output checked for NaN/Inf on measured steps, the weights fingerprinted at
    # each step's end (who writes them between steps); weights/updates/activations every 20.
    # Measuring every 10th step took it from 1.26x to 1.04x of a 4 ms CPU MLP step
    # (benchmarks/overhead.py); every 20th after step 200 (the sampled steps only) halves what
    # is left of the measured steps' cost; on steps under a few ms, the budget (cadence.py)
    # spaces them further. A non-finite loss makes every step measured.
    "standard": Preset(
        every=20, check_finite=True, watch_writes=True, measure_every=10, measure_every_later=20,
        budgeted=True,
    ),
    # everything every step
    "full": Preset(
        every=1, check_finite=True, watch_writes=True, measure_every=1, measure_every_later=1,
        budgeted=False,
    ),
}
WATCH_HOOKS = "watch's step and forward hooks"  # the guard's name for the watch's own hooks
MAX_PRINTED = 20  # findings printed while training runs; all are kept in watch.findings
STEP = frozenset({Phase.STEP})
STEP_AND_WINDOW = frozenset({Phase.STEP, Phase.WINDOW})
ALL_PHASES = frozenset(Phase)


class Watch:
    """Watches one model and optimizer. Create it with `trainwise.watch(...)`."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        preset: str = "standard",
        every: int | None = None,
        log_dir: str | None = None,
        name: str | None = None,
        verbose: bool = True,
        scaler: Any = None,
        total_steps: int | None = None,
        record: bool = True,
        budget: bool = True,
        *,
        record_kind: str = "watch",
        record_config: dict[str, Any] | None = None,
    ) -> None:
        """record_kind / record_config: the record's kind and extra settings, for a command
        that trains through the watch (fit: kind "fit", its recipe)."""
        _check_arguments(model, optimizer, preset, every)
        self.model, self.optimizer, self.preset = model, optimizer, PRESETS[preset]
        self.preset_name = preset
        self.every = every or self.preset.every
        # which steps are measured, when the window and validation rules judge (cadence.py)
        self._cadence = Cadence(
            min(self.preset.measure_every, self.every),
            min(self.preset.measure_every_later, self.every),
            self.every,
            budgeted=self.preset.budgeted and budget,
        )
        self.log_dir, self.name = log_dir, name  # log_dir: the runs folder of the record
        self.verbose = verbose and dist_probe.rank() == 0
        self.scaler, self.total_steps = scaler, total_steps

        self.signals = Signals()
        self.iteration = 0  # training iterations seen (one per step, skipped steps included)
        self.step = 0  # optimizer steps taken

        self._guard = Guard()  # before the probes: their hooks run through it
        self._acts = ActivationProbe(model, guard=self._guard)
        self._modes = ModeProbe(model)
        self._first = FirstForwardProbe(model, guard=self._guard)  # until the first step only
        self._timer = StepTimer()
        self._pending = Pending()
        self._writes = WriteProbe()
        self._grads: GradientProbe | None = None
        self._on: set[Producer] = set()  # the producers running now
        self._view = View(History(self.signals), None, self._on)
        self._track_params()  # the optimizer's tensors now; again whenever they change
        self._judge = Judge(self._view, self._guard, self._emit)
        self._printed = 0
        self._in_iteration = False
        self._stepped = False
        self._sampled = False
        self._measuring = True  # this iteration is a measured one (the first always is)
        self._next_measured = 0  # the next iteration to measure (decided as each one starts)
        self._started = -1  # the iteration _start_iteration last decided
        self._compare_writes = True  # ... or one whose start is compared (after a validation)
        self._quiet: list[_ClosedStep] = []  # closed steps between measured ones, not yet written
        self._last_window = 0  # iteration of the last WINDOW judging round
        self._last_val_round = -JUDGE_EVERY  # ... of the last VAL one (the first is judged)
        self._validated = False  # a validation ran since the last step's end (not clocked)
        self._lrs: list[float] = []
        self._lr_keys: list[str] = []
        self._metric_slots: list[tuple[str, int]] = []  # (key, Pending slot) of tensor metrics
        self._logged_values: dict[str, float] = {}
        self._metric_keys: dict[str, str] = {}  # "loss" -> "train/loss", built once per name
        self._replicas: list[float] | None = None
        self._closed = False

        self._record_writer = None
        if record:
            from trainwise.runs.watch_record import WatchRecord

            self._record_writer = WatchRecord.open(
                model, optimizer, name=name, root=log_dir, preset=preset, every=self.every,
                kind=record_kind, config=record_config,
            )  # fmt: skip
        self._switch_on(self._judge.producers() | self._drawn_producers())
        self._handles = [
            # The watch's own hooks run inside the user's step() and forward(): guarded too.
            optimizer.register_step_pre_hook(self._guard.wrap(WATCH_HOOKS, self._pre_step)),
            optimizer.register_step_post_hook(self._guard.wrap(WATCH_HOOKS, self._post_step)),
            model.register_forward_pre_hook(self._guard.wrap(WATCH_HOOKS, self._forward_pre)),
        ]
        self._guard(GRADIENT_PROBE, self._grads.attach)
        if self._acts.check_finite or self._acts.stats:
            self._guard("activation probe", self._acts.attach)
        if Producer.FIRST_FORWARDS in self._on:
            self._guard(FIRST_FORWARD_PROBE, self._first.attach)
        if self._record_writer is not None:
            self._record_writer.finalizer(self)

    # -- what is watched: the optimizer's groups, whatever their requires_grad ----------------
    def _groups_signature(self) -> tuple[int, ...]:
        """Changes when `add_param_group` adds tensors (cheap: read at every step)."""
        return tuple(len(g["params"]) for g in self.optimizer.param_groups)

    def _track_params(self) -> None:
        """Reads the optimizer's parameters and points every probe at them: at the start, and
        again when `add_param_group` adds tensors (a module replaced and handed to the
        optimizer, gradual unfreezing by groups)."""
        model = self.model
        pairs = optimizer_params(model, self.optimizer)
        self.params = [p for p, _ in pairs]
        self.param_info = [info for _, info in pairs]
        names = [info.name for info in self.param_info]
        rebuilt = self._grads is not None
        if rebuilt:  # the probes follow: hooks on the new tensors and the new modules
            self._guard(GRADIENT_PROBE, self._grads.detach)
            self._guard("activation probe", self._acts.rescan)
            self._modes = ModeProbe(model)
        self._grads = GradientProbe(self.params, names, self.scaler, guard=self._guard)
        if rebuilt:
            self._guard(GRADIENT_PROBE, self._grads.attach)
        self._updates = UpdateProbe(self.params, names)
        held = {id(p) for p in self.params}
        self._others = [(n, p) for n, p in _model_params(model) if id(p) not in held]
        self._writes.track(self.params + [p for _, p in self._others],
                           names + [n for n, _ in self._others])  # fmt: skip
        self._groups_now = self._groups_signature()
        self._read_requires_grad()

    def _read_requires_grad(self, now: tuple[bool, ...] | None = None) -> None:
        """What requires grad now (`now`, when the caller has just read it): the facts the
        rules read and the write probe's frozen set."""
        self._requires_grad = now or tuple(p.requires_grad for p in self.params)
        trainable = [i for i, rg in enumerate(self._requires_grad) if rg]
        self._writes.set_frozen([not rg for rg in self._requires_grad])
        self._view.model = _facts(
            self.model, self.optimizer, self.param_info, trainable, self._modes,
            self.total_steps, untracked=tuple(n for n, p in self._others if p.requires_grad),
        )  # fmt: skip

    def _follow_groups(self) -> None:
        """At the start of each iteration: tensors added to the optimizer get their hooks
        before this iteration's backward."""
        if self._groups_signature() != self._groups_now:
            self._track_params()

    def _follow_params(self) -> None:
        """When the optimizer steps: what requires grad then is what the step trains (read
        here, not at the forward: a GAN loop freezes D while G trains, and D's forward for G
        must not read as a D frozen for good)."""
        if self._groups_signature() != self._groups_now:
            self._track_params()
        elif (now := tuple(p.requires_grad for p in self.params)) != self._requires_grad:
            self._guard(GRADIENT_PROBE, self._grads.attach_unfrozen)
            self._read_requires_grad(now)

    def _drawn_producers(self) -> set[Producer]:
        """The producers of what the run record draws (its curves, heatmaps, histograms)."""
        if self._record_writer is None:
            return set()
        return {signal.producer for signal in self._record_writer.draws}

    def _switch_on(self, producers: set[Producer]) -> None:
        """Runs the probes of these producers (the preset decides the per-step output check)."""
        self._on |= producers
        acts = self._acts
        acts.stats = Producer.ACTIVATION_STATS in self._on
        acts.keep_samples = acts.stats and self._record_writer is not None
        acts.check_finite = self.preset.check_finite and Producer.OUTPUT_CHECK in self._on
        if not acts.check_finite:
            self._on.discard(Producer.OUTPUT_CHECK)  # the preset leaves it off ("cheap")
        if not self.preset.watch_writes:
            self._on.discard(Producer.WRITES)
        # read by the step hooks at every step (an Enum's hash is a Python call)
        self._writes_on = Producer.WRITES in self._on
        self._updates_on = Producer.UPDATES in self._on

    def _honour_requests(self) -> None:
        """A rule asked for a signal (the cheap preset's output check after a non-finite loss)."""
        requests, self._view.requests = self._view.requests, set()
        if Producer.OUTPUT_CHECK in requests:
            # something went non-finite: look at every step from now on
            self._cadence.every_step()
            self._next_measured = min(self._next_measured, self.iteration)
        if Producer.OUTPUT_CHECK in requests and not self._acts.check_finite:
            self._on.add(Producer.OUTPUT_CHECK)
            self._acts.check_finite = True
            if not self._acts.attached:
                self._guard("activation probe", self._acts.attach)

    # -- public API ------------------------------------------------------------------------
    def log(self, loss: Any = None, **metrics: Any) -> None:
        """Once per training step, after `optimizer.step()`: the loss and any extra metrics."""
        if self._closed:
            return
        if loss is not None:
            self._add_metric("loss", loss)
        for key, value in metrics.items():
            self._add_metric(key, value)
        self._guard("step read-out", self._flush)

    def log_val(self, **metrics: Any) -> None:
        """Whenever validation runs: validation loss and metrics (numbers or scalar tensors)."""
        if self._closed:
            return
        values = {VAL.at(key): _as_float(key, value) for key, value in metrics.items()}
        self._guard("step read-out", self._write_quiet_steps)  # the rules compare train to val
        for key, value in values.items():
            self.signals.add(key, self.iteration, value)
        self._writes.saw_eval()
        self._validated = True
        if self._record_writer is not None:
            self._record_writer.metrics(self.iteration, values)
        # The validation rules fit trends over both losses (~0.3 ms of Python a round): fit's
        # random validation batch every 7-30 steps made them the watch's largest cost on small
        # models. They judge as often as the window rules; the train/eval mode counts wait for
        # that round, and close judges whatever came after the last one.
        if self.iteration - self._last_val_round < self._cadence.judging_period(self.iteration):
            return
        self._last_val_round = self.iteration
        self._modes.hand_over(self.signals)
        self._run_judge(frozenset({Phase.VAL}))

    def log_latest(self, **metrics: Any) -> None:
        """Adds training metrics to the last closed step, for frameworks that report the loss
        after the step (the Hugging Face Trainer reports an average every `logging_steps`)."""
        if self._closed or self.iteration == 0:
            return
        values = {TRAIN.at(key): _as_float(key, value) for key, value in metrics.items()}
        self._guard("step read-out", self._write_quiet_steps)  # step iteration - 1 is written
        for key, value in values.items():
            self.signals.add(key, self.iteration - 1, value)
        if self._record_writer is not None:
            self._record_writer.metrics(self.iteration - 1, values)
        self._run_judge(frozenset({Phase.WINDOW}))

    def log_config(self, **settings: Any) -> None:
        """Add settings to the run record's config (fit: how the run ended)."""
        if self._record_writer is not None:
            self._record_writer.config(settings)

    @property
    def record_path(self):
        """The folder of this watch's run record (None with record=False or when it could not
        be opened)."""
        return self._record_writer.path if self._record_writer is not None else None

    @property
    def findings(self) -> list[Finding]:
        """Every finding so far, one per (rule, where), in the order they fired, each with
        `caused_by` / `explains` (trainwise.causes)."""
        return attribute(self._judge.findings)

    def close(self) -> list[Finding]:
        """Reads out the last step, runs the final checks, removes every hook, prints a summary,
        and finishes the run record."""
        return self._close("finished")

    def abort(self, status: str, error: str) -> list[Finding]:
        """Closes after the training code raised: the record ends "failed" ("interrupted" on
        Ctrl-C) with the error, as the `with watch(...)` block does."""
        return self._close(status, error)

    def _close(self, status: str, error: str | None = None) -> list[Finding]:
        if self._closed:
            return self.findings
        if self._in_iteration or self._stepped or (self._pending and not self._quiet):
            self._measuring = True  # the last step: everything measured so far comes back
            self._guard("step read-out", self._flush)
        self._guard("step read-out", self._write_quiet_steps)
        self._modes.hand_over(self.signals)
        self._run_judge(ALL_PHASES)
        for h in self._handles:
            h.remove()
        self._guard(GRADIENT_PROBE, self._grads.detach)
        self._guard("activation probe", self._acts.detach)
        self._first.detach()
        self._updates.discard()
        self._writes.discard()
        self._closed = True
        if self._record_writer is not None:
            self._record_writer.findings(self.findings)  # now with their causes
            self._record_writer.finish(status, error)
        if self.verbose:
            _print_summary(self.name, self.iteration, self.findings)
        return self.findings

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self._close("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.abort("interrupted", "KeyboardInterrupt")
        else:
            self.abort("failed", f"{exc_type.__name__}: {exc}")

    # -- hooks -----------------------------------------------------------------------------
    def _forward_pre(self, module: nn.Module, args: Any) -> None:
        if self._closed:
            return
        if not torch.is_grad_enabled():
            self._modes.no_grad_forward()
            self._writes.saw_eval()
            self._validated = True
            return
        if self._stepped:  # the previous step was never logged: close its record now
            self._guard("step read-out", self._flush)
        if not self._in_iteration:
            self._in_iteration = True
            self._timer.forward_started()
            self._start_iteration()
            if self._measuring:
                self._guard("parameter tracking", self._follow_groups)
                self._acts.begin_step(self._sampled)
                self._modes.step_started()

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        if not self._in_iteration:
            # The step starts before any forward: a closure (LBFGS, Lightning) runs forward and
            # backward inside step(). Decide sampling here so before/after measure the same.
            self._start_iteration()
        if self._compare_writes and self._writes_on:
            self._guard(WRITE_PROBE, self._writes.before_step, self._pending, self._sampled)
        if not self._measuring:
            return
        self._guard("parameter tracking", self._follow_params)
        self._guard(GRADIENT_PROBE, self._grads.before_step)
        if self._sampled and self._updates_on:
            self._guard("update probe", self._updates.before_step)

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        self.step += 1
        self._stepped = True
        self._timer.optimizer_stepped()
        self._lrs = [float(g.get("lr", math.nan)) for g in optimizer.param_groups]
        if self._writes_on:  # every step: a validation may come before the next
            self._guard(WRITE_PROBE, self._writes.after_step, self._pending)
        if self.iteration + 1 >= self._next_measured:
            # hooks on before the next backward (a loop may run it before any forward), and
            # what the grads were left as, for the next step's missing-zero-grad verdict
            self._guard(GRADIENT_PROBE, self._grads.set_measuring, True)
            self._guard(GRADIENT_PROBE, self._grads.after_step)
        if self._sampled:
            if self._updates_on:
                self._guard("update probe", self._updates.after_step, self._pending)
            if Producer.REPLICAS in self._on and dist_probe.active():
                self._replicas = self._guard(
                    "replica probe", dist_probe.replica_spread, self.params
                )

    @property
    def measure_every(self) -> int:
        """The period (steps) of the measured steps now (1 once a loss went non-finite)."""
        return self._cadence.period(self.iteration)

    def _start_iteration(self) -> None:
        """Decides what this iteration measures: sampled steps and measured steps as the preset
        says; after a validation, the comparison of the gap (who wrote the weights in it)."""
        i = self.iteration
        if i == self._started:  # a closure's forward, after step() began the iteration
            return
        self._started = i
        if i < self._next_measured:  # a step between measured ones: the short way
            self._measuring = self._sampled = False
            # after a validation the gap is compared (who wrote the weights), on any step
            self._compare_writes = self._writes.saw_eval_in_gap
            if self._grads.measuring or self._acts.attached:  # the measured step's hooks go
                self._set_hooks()
            return
        self._measuring = self._compare_writes = True
        self._sampled = i % self.every == 0  # sampled steps are measured ones
        if i >= DENSE_UNTIL:
            self._cadence.rebudget(i)  # the periods that fit the step time clocked so far
        self._next_measured = self._cadence.measured_after(i)
        self._set_hooks()

    def _set_hooks(self) -> None:
        """The activation and parameter hooks on for a measured step, off for the others.
        PyTorch's hooks cost a Python call each (and take modules off the fast path of
        Module.__call__) even when they return at once: on the steps between measured ones
        they are removed, not just idle."""
        if self._grads.measuring != self._measuring:
            self._guard(GRADIENT_PROBE, self._grads.set_measuring, self._measuring)
        acts = self._acts
        wanted = self._measuring and (acts.check_finite or (acts.stats and self._sampled))
        if wanted != acts.attached:
            self._guard("activation probe", acts.attach if wanted else acts.detach)

    # -- the end of a step -----------------------------------------------------------------
    def _add_metric(self, key: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise SetupError(
                    f"watch.log({key}=...): expected a scalar, got a tensor of shape {tuple(value.shape)}"
                )
            self._metric_slots.append((self._train_key(key), self._pending.add(value)))
        else:
            self._logged_values[key] = _as_float(key, value)

    def _train_key(self, name: str) -> str:
        key = self._metric_keys.get(name)
        if key is None:
            key = self._metric_keys[name] = TRAIN.at(name)
        return key

    def _flush(self) -> None:
        """Closes the current iteration. A step between measured ones is kept for later (its
        loss stays on the device); a measured step brings back everything since the last one
        in one read-out, each step's signals are written in order (the record takes each), and
        the rules judge."""
        if not self._measuring:
            self._quiet.append(self._close_step())
            self._measuring = True  # until the next iteration starts and decides
            self._clock_step(False)
            return
        t, sampled = self.iteration, self._sampled
        self._guard("activation probe", self._acts.collect, self._pending)
        self._guard(GRADIENT_PROBE, self._grads.collect, self._pending)
        if self._first.attached:  # the first step: its numbers come back now, its hooks go
            self._guard(FIRST_FORWARD_PROBE, self._first.collect, self._pending, t)
            self._first.detach()
        values = self._pending.read()  # the one device sync since the last measured step
        step = self._close_step()
        self._write_quiet(values)
        self._write_step(step, values)
        self._write_probes(t, step.stepped, values)
        if self._record_writer is not None:
            samples, self._acts.samples = self._acts.samples, []
            self._record_writer.step(self.signals, t, sampled, samples)
        window = self.iteration - self._last_window >= self._cadence.judging_period(self.iteration)
        if window:
            self._last_window = self.iteration
        self._run_judge(STEP_AND_WINDOW if window else STEP)
        self._clock_step(True)

    def _clock_step(self, measured: bool) -> None:
        """The step's end, for the cadence's budget (a step with a validation in it aside)."""
        self._cadence.step_ended(measured, self._validated)
        self._validated = False

    def _close_step(self) -> _ClosedStep:
        """What every step keeps, taken as it closes; the next iteration starts afresh."""
        step = _ClosedStep(self.iteration, self._metric_slots, self._logged_values,
                           self._stepped, self._lrs, self._timer.step_ended(),
                           self._writes.take())  # fmt: skip
        self._metric_slots, self._logged_values = [], {}
        self._in_iteration = self._stepped = False
        self.iteration += 1
        return step

    def _write_quiet_steps(self) -> None:
        """Writes the steps kept since the last measured one now (a validation or log_latest
        is judged against them). Not while a measured step is open: its slots are pending."""
        if self._quiet and not (self._measuring and (self._in_iteration or self._stepped)):
            self._write_quiet(self._pending.read())

    def _write_quiet(self, values: list[list[float]]) -> None:
        """The kept steps into the history and the record, each step whole before the next."""
        quiet, self._quiet = self._quiet, []
        for step in quiet:
            self._write_step(step, values)
            if self._record_writer is not None:
                self._record_writer.step(self.signals, step.t, False, [])

    def _write_step(self, step: _ClosedStep, values: list[list[float]]) -> None:
        """What every step has into the history (in a fixed order: the record's rows keep their
        column order): logged metrics, whether it stepped, timing, LRs, the write comparisons."""
        signals, add, t = self.signals, self.signals.add, step.t
        for key, slot in step.metric_slots:
            add(key, t, values[slot][0])
        for name, value in step.logged.items():
            add(self._train_key(name), t, value)
        add(STEPPED.key, t, 1.0 if step.stepped else 0.0)
        if step.timing is not None:
            write_timing(t, step.timing, signals)
        if step.stepped:
            self._write_lrs(t, step.lrs)
        outside, frozen, _ = step.writes
        if outside is not None or frozen is not None:  # this step's start or end was compared
            self._guard("weight-write read-out", self._writes.write, values, t, signals,
                        step.writes)  # fmt: skip

    def _write_probes(self, t: int, stepped: bool, values: list[list[float]]) -> None:
        """A measured step's probe numbers into the history, producer by producer."""
        signals, guard = self.signals, self._guard
        self._grads.write_counts(t, signals)
        self._modes.write(t, signals)
        guard("gradient read-out", self._grads.write, values, t, signals, stepped)
        guard("update read-out", self._updates.write, values, t, signals)
        guard("activation read-out", self._acts.write, values, t, signals)
        guard("first-forward read-out", self._first.write, values, signals)
        if self._replicas is not None:
            dist_probe.write(t, self._replicas, signals)
            self._replicas = None

    def _write_lrs(self, t: int, lrs: list[float]) -> None:
        lr_keys = self._lr_keys
        while len(lr_keys) < len(lrs):
            lr_keys.append(LR.at(str(len(lr_keys))))
        for key, lr in zip(lr_keys, lrs, strict=False):
            self.signals.add(key, t, lr)

    # -- judging ---------------------------------------------------------------------------
    def _run_judge(self, phases: frozenset[Phase]) -> None:
        view = self._view
        view.iteration, view.step = self.iteration, self.step
        start = time.perf_counter()
        self._judge(phases)
        if phases is not STEP:  # a round of the window or validation rules: clocked apart
            self._cadence.round_took(time.perf_counter() - start)
        view.memo.clear()
        self.signals.events.pop(VAL_FORWARDS_TRAIN_MODE, None)  # judged once, at its hand-over
        if view.requests:
            self._honour_requests()

    def _emit(self, finding: Finding) -> None:
        if self._record_writer is not None:
            self._record_writer.findings([finding])  # findings.json as they fire (crash-safe)
        if self.verbose and self._printed < MAX_PRINTED:
            self._printed += 1
            found = self._judge.findings
            index = next(i for i in range(len(found) - 1, -1, -1) if found[i] is finding)
            _show(attribute(found)[index], self.iteration)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is slower, once per step
class _ClosedStep:
    """What every step keeps: written with its read-out, at once on a measured step, at the
    next measured one otherwise."""

    t: int
    metric_slots: list[tuple[str, int]]  # (key, Pending slot) of the tensors given to log()
    logged: dict[str, float]  # numbers given to log()
    stepped: bool
    lrs: list[float]
    timing: tuple[float, float] | None  # (data wait, compute) seconds
    writes: tuple  # the write probe's comparisons (WriteProbe.take), read out with the step


def _print_summary(name: str | None, iteration: int, findings: list[Finding]) -> None:
    """Root causes first, worst first; each one's consequences folded into one line under it."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(stderr=True)
    title = f"trainwise.watch{f' [{name}]' if name else ''}: {iteration} steps"
    if not findings:
        console.print(f"[green]{escape(title)}, no findings[/green]")
        return
    table = Table(title=escape(title), show_lines=False)
    for col in ("severity", "rule", "where", "message"):
        table.add_column(col)
    for group in fold(findings):
        f = group.root
        message = escape(f.message)
        if group.consequences:
            slugs = ", ".join(dict.fromkeys(c.rule for c in group.consequences))
            message += (
                f"\n[dim]+ {len(group.consequences)} consequence(s), fix this first: "
                f"{escape(slugs)}[/dim]"
            )
        table.add_row(f.severity, f.rule, escape(str(f.where or "")), message)
    console.print(table)


def _model_params(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) of each distinct parameter of the model, wrapper prefixes removed."""
    return [(clean_name(n), p) for n, p in model.named_parameters()]


def _facts(model: nn.Module, optimizer: Any, infos: list, trainable: list[int], modes: ModeProbe,
           total_steps: int | None, untracked: tuple[str, ...] = ()) -> Watched:  # fmt: skip
    """The facts the in-flight rules may read about the watched model (taken again whenever
    the optimizer's tensors or their requires_grad change)."""
    chosen = set(trainable)
    deliberate = frozen_on_purpose(model)  # tw.freeze & co: not the frozen-parameters warning
    return Watched(
        params=tuple(infos),
        trainable=tuple(infos[i] for i in trainable),
        frozen=tuple(info for i, info in enumerate(infos) if i not in chosen),
        untracked_trainable=untracked,
        mode_layers=modes.kinds,
        has_dropout=any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()),
        has_conv2d=any(isinstance(m, nn.Conv2d) for m in model.modules()),
        weight_decay=any(g.get("weight_decay", 0) != 0 for g in optimizer.param_groups),
        total_steps=total_steps,
        frozen_on_purpose=frozenset(
            clean_name(n) for n, p in model.named_parameters() if id(p) in deliberate
        ),
    )


def _check_arguments(model: Any, optimizer: Any, preset: str, every: Any) -> None:
    if not isinstance(model, nn.Module):
        raise SetupError(
            f"trainwise.watch(model, ...): expected an nn.Module, got {type(model).__name__}"
        )
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise SetupError(
            f"trainwise.watch(..., optimizer): expected a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    if preset not in PRESETS:
        raise SetupError(
            f"trainwise.watch: preset must be one of {sorted(PRESETS)}, got {preset!r}"
        )
    if every is not None and (not isinstance(every, int) or every < 1):
        raise SetupError(f"trainwise.watch: every must be a positive int, got {every!r}")


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    preset: str = "standard",
    every: int | None = None,
    log_dir: str | None = None,
    name: str | None = None,
    verbose: bool = True,
    scaler: Any = None,
    total_steps: int | None = None,
    record: bool = True,
    budget: bool = True,
) -> Watch:
    """Attach in-flight diagnosis to your own training loop.

    preset:  "cheap" | "standard" | "full" (how much is measured; see PRESETS)
    every:   period in steps of the sampled probes (weights, updates, activations)
    log_dir: the runs folder of the run record (default $TRAINWISE_RUNS_DIR, else ./trainwise-runs)
    name:    a name for this run, shown in the summary
    verbose: print findings as they fire (rank 0 only) and a summary at close
    scaler:  your torch.amp.GradScaler, if any, to report unscaled gradient norms
    total_steps: the planned number of steps, if known (sharpens lr-schedule-suspicious)
    record:  keep a run record (metrics, per-layer signals, activation histograms, findings,
             TensorBoard events, report.html); finished by close() or the `with` block's end
    budget:  after step 200, space the measured steps and judging rounds further apart where
             they would take more than ~1% of the step time each (steps under a few ms); False
             keeps the preset's fixed cadence (trainwise.cadence)
    """
    return Watch(
        model, optimizer, preset, every, log_dir, name, verbose, scaler, total_steps, record,
        budget,
    )  # fmt: skip


def _as_float(key: str, value: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise SetupError(
                f"watch: {key}= must be a scalar, got a tensor of shape {tuple(value.shape)}"
            )
        return float(value.detach().float().item())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SetupError(
            f"watch: {key}= must be a number or a scalar tensor, got {type(value).__name__}"
        ) from None


def _show(finding: Finding, iteration: int) -> None:
    """One finding as it fires: its message and the fix (one line), or, for a consequence of a
    finding already shown, which one to fix first."""
    level = {"error": logging.ERROR, "warning": logging.WARNING}.get(finding.severity, logging.INFO)
    if finding.caused_by:
        advice = f"a consequence of `{finding.caused_by}`: fix that first"
    else:
        advice = "fix: " + finding.fix.strip().splitlines()[0] if finding.fix.strip() else ""
    text = f"[{finding.rule}] {finding.message}" + (f"\n    {advice}" if advice else "")
    if logger.hasHandlers() and logging.getLogger().handlers:
        logger.log(level, text)  # the user configured logging: go through it
        return
    from rich.console import Console
    from rich.markup import escape

    style = {"error": "bold red", "warning": "yellow"}.get(finding.severity, "cyan")
    Console(stderr=True).print(
        f"[{style}]trainwise {finding.severity}[/{style}] step {iteration}: {escape(text)}",
        highlight=False,
        markup=True,
    )
