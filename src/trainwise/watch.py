"""`trainwise.watch`: in-flight diagnosis attached to any training loop.

    watch = tw.watch(model, optimizer)
    for x, y in loader:
        ...
        optimizer.step()
        watch.log(loss=loss)

Probes (trainwise.probes) measure through PyTorch's hooks: optimizer step pre/post hooks mark
the steps (so gradient accumulation and GradScaler-skipped steps are handled), module forward
hooks see the outputs, parameter hooks see the end of each backward. A step's measurements stay
on the device until the step ends, then come back in one transfer (the step's only sync) as
plain numbers in `watch.signals`. Detectors (trainwise.rules.inflight) read those numbers and
yield Findings. Any probe or detector that raises is switched off with one warning; training
goes on.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainwise.errors import SetupError
from trainwise.findings import Finding, dedupe
from trainwise.probes import (
    ActivationProbe,
    GradientProbe,
    Pending,
    Signals,
    StepTimer,
    UpdateProbe,
    optimizer_params,
)
from trainwise.probes import distributed as dist_probe
from trainwise.probes.activations import STATS

logger = logging.getLogger("trainwise.watch")

MODE_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


@dataclass(frozen=True)
class Preset:
    """How much the watch measures. `every`: period (in steps) of the sampled probes."""

    every: int
    check_finite: bool  # sum of every module output each step, to name the first non-finite one


PRESETS = {
    # every step: loss, grad norms (global, per layer), LR, timing, non-finite grads
    "cheap": Preset(every=100, check_finite=False),
    # + every module output checked for NaN/Inf each step; weights/updates/activations every 20
    "standard": Preset(every=20, check_finite=True),
    # everything every step
    "full": Preset(every=1, check_finite=True),
}
MAX_PRINTED = 20  # findings printed while training runs; all are kept in watch.findings
JUDGE_EVERY = 10  # window detectors run every this many steps (and at close)


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
    ) -> None:
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
        self.model, self.optimizer, self.preset = model, optimizer, PRESETS[preset]
        self.preset_name = preset
        self.every = every or self.preset.every
        self.log_dir, self.name = log_dir, name  # log_dir: the runs folder of the record
        self.verbose = verbose and dist_probe.rank() == 0
        self.scaler, self.total_steps = scaler, total_steps

        pairs = optimizer_params(model, optimizer)
        self.params = [p for p, _ in pairs]
        self.param_info = [info for _, info in pairs]
        trainable = [i for i, p in enumerate(self.params) if p.requires_grad]
        self._trainable = trainable
        self._names = [info.name for info in self.param_info]
        self._grad_keys = [f"grad_norm/{n}" for n in self._names]
        self._last_mask: list[bool] | None = None
        self.signals = Signals()
        self.facts: dict[str, Any] = {}  # non-numeric observations (names, kinds) for detectors
        self.iteration = 0  # training iterations seen (one per step, skipped steps included)
        self.step = 0  # optimizer steps taken

        self._grads = GradientProbe(self.params, scaler)
        self._updates = UpdateProbe([self.params[i] for i in trainable])
        self._acts = ActivationProbe(model)
        self._acts.check_finite = self.preset.check_finite
        self._timer = StepTimer()
        self._pending = Pending()
        self._mode_layers = [m for m in model.modules() if isinstance(m, MODE_LAYERS)]

        self._findings: list[Finding] = []
        self._keys: set[tuple[str, Any]] = set()
        self._printed = 0
        self._disabled: set[str] = set()
        self._in_iteration = False
        self._stepped = False
        self._sampled = False
        self._logged_values: dict[str, float] = {}
        self._eval_layers_seen = 0
        self._val_forwards_train_mode = 0
        self._closed = False

        from trainwise.rules.inflight import make_detectors  # registers the in-flight rules

        self._detectors = make_detectors()
        self._handles = [
            optimizer.register_step_pre_hook(self._pre_step),
            optimizer.register_step_post_hook(self._post_step),
            model.register_forward_pre_hook(self._forward_pre),
        ]
        self._safely("gradient probe", self._grads.attach)
        self._safely("activation probe", self._acts.attach)

        self._record_writer = None
        if record:
            from trainwise.runs.watch_record import WatchRecord

            self._record_writer = WatchRecord.open(
                model, optimizer, name=name, root=log_dir, preset=preset, every=self.every
            )
        if self._record_writer is not None:
            self._acts.keep_samples = True  # histograms of the sampled rows, on sampled steps
            self._record_writer.finalizer(self)

    # -- public API ------------------------------------------------------------------------
    def log(self, loss: Any = None, **metrics: Any) -> None:
        """Once per training step, after `optimizer.step()`: the loss and any extra metrics."""
        if self._closed:
            return
        values = {"loss": loss, **metrics} if loss is not None else metrics
        for key, value in values.items():
            self._add_metric(key, value)
        self._safely("step read-out", self._flush)

    def log_val(self, **metrics: Any) -> None:
        """Whenever validation runs: validation loss and metrics (numbers or scalar tensors)."""
        if self._closed:
            return
        values = {f"val/{key}": _as_float(key, value) for key, value in metrics.items()}
        for key, value in values.items():
            self.signals.add(key, self.iteration, value)
        if self._record_writer is not None:
            self._record_writer.metrics(self.iteration, values)
        if self._val_forwards_train_mode:
            self.facts["val_forwards_train_mode"] = self._val_forwards_train_mode
        self._val_forwards_train_mode = 0
        self._judge(("val",))

    def log_latest(self, **metrics: Any) -> None:
        """Adds training metrics to the last closed step, for frameworks that report the loss
        after the step (the Hugging Face Trainer reports an average every `logging_steps`)."""
        if self._closed or self.iteration == 0:
            return
        values = {f"train/{key}": _as_float(key, value) for key, value in metrics.items()}
        for key, value in values.items():
            self.signals.add(key, self.iteration - 1, value)
        if self._record_writer is not None:
            self._record_writer.metrics(self.iteration - 1, values)
        self._judge(("window",))

    @property
    def record_path(self):
        """The folder of this watch's run record (None with record=False or when it could not
        be opened)."""
        return self._record_writer.path if self._record_writer is not None else None

    @property
    def findings(self) -> list[Finding]:
        """Every finding so far, one per (rule, where), in the order they fired."""
        return list(self._findings)

    def close(self) -> list[Finding]:
        """Reads out the last step, runs the final checks, removes every hook, prints a summary,
        and finishes the run record."""
        return self._close("finished")

    def _close(self, status: str, error: str | None = None) -> list[Finding]:
        if self._closed:
            return self.findings
        if self._in_iteration or self._pending or self._stepped:
            self._safely("step read-out", self._flush)
        if self._val_forwards_train_mode:
            self.facts["val_forwards_train_mode"] = self._val_forwards_train_mode
        self._judge(("step", "window", "val", "close"))
        for h in self._handles:
            h.remove()
        self._safely("gradient probe", self._grads.detach)
        self._safely("activation probe", self._acts.detach)
        self._updates.discard()
        self._closed = True
        if self._record_writer is not None:
            self._record_writer.findings(self._findings)
            self._record_writer.finish(status, error)
        if self.verbose:
            self._print_summary()
        return self.findings

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self._close("finished")
        elif issubclass(exc_type, KeyboardInterrupt):
            self._close("interrupted", "KeyboardInterrupt")
        else:
            self._close("failed", f"{exc_type.__name__}: {exc}")

    # -- hooks -----------------------------------------------------------------------------
    def _forward_pre(self, module: nn.Module, args: Any) -> None:
        if self._closed:
            return
        if not torch.is_grad_enabled():
            # A no-grad forward (validation): BN/dropout should be in eval mode there.
            if self._mode_layers and any(m.training for m in self._mode_layers):
                self._val_forwards_train_mode += 1
            return
        if self._stepped:  # the previous step was never logged: close its record now
            self._safely("step read-out", self._flush)
        if not self._in_iteration:
            self._in_iteration = True
            self._timer.forward_started()
            self._sampled = self.iteration % self.every == 0
            self._acts.begin_step(self._sampled)
            self._eval_layers_seen = sum(not m.training for m in self._mode_layers)

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        if not self._in_iteration:
            # The step starts before any forward: a closure (LBFGS, Lightning) runs forward and
            # backward inside step(). Decide sampling here so before/after measure the same.
            self._sampled = self.iteration % self.every == 0
        self._safely("gradient probe", self._grads.before_step)
        if self._sampled:
            self._safely("update probe", self._updates.before_step)

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._closed:
            return
        self.step += 1
        self._stepped = True
        self._timer.optimizer_stepped()
        self._safely("gradient probe", self._grads.after_step)
        if self._sampled:
            self._safely("update probe", self._updates.after_step, self._pending)
            if dist_probe.active():
                spread = self._safely("replica probe", dist_probe.replica_spread, self.params)
                if spread is not None:
                    self.facts["replica_spread"] = (self.iteration, spread)
        self._lrs = [float(g["lr"]) for g in optimizer.param_groups]

    # -- the end of a step -----------------------------------------------------------------
    def _add_metric(self, key: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise SetupError(
                    f"watch.log({key}=...): expected a scalar, got a tensor of shape {tuple(value.shape)}"
                )
            self._pending.add(f"train/{key}", value.detach())
        else:
            self._logged_values[key] = _as_float(key, value)

    def _flush(self) -> None:
        """Closes the current iteration: one read-out, the numbers recorded, the detectors run."""
        t = self.iteration
        sum_names = self._safely("activation probe", self._acts.collect, self._pending) or []
        raw_mask, applied_mask = self._grads.masks()
        self._safely("gradient probe", self._grads.collect, self._pending)
        values = self._pending.read()  # the step's one device sync
        self._record(t, values, sum_names, raw_mask, applied_mask)
        if self._record_writer is not None:
            samples, self._acts.samples = self._acts.samples, []
            self._record_writer.step(self.signals, t, self._sampled, samples)
        self._in_iteration = self._stepped = False
        self.iteration += 1
        self._judge(("step",) if self.iteration % JUDGE_EVERY else ("step", "window"))

    def _record(self, t, values, sum_names, raw_mask, applied_mask) -> None:
        add = self.signals.add
        for key, vals in values.items():
            if key.startswith("train/"):
                add(key, t, vals[0])
        for key, value in self._logged_values.items():
            add(f"train/{key}", t, value)
        self._logged_values = {}
        stepped = self._stepped
        add("stepped", t, 1.0 if stepped else 0.0)
        add("backward_passes", t, float(self._grads.backward_passes))
        self._grads.backward_passes = 0
        if self._grads.kept_across_steps is not None:
            add("grads_kept", t, float(self._grads.kept_across_steps))
            self._grads.kept_across_steps = None
        if self._mode_layers:
            add("eval_mode_layers", t, float(self._eval_layers_seen))
        timing = self._timer.step_ended()
        if timing is not None:
            add("data_wait_s", t, timing[0])
            add("compute_s", t, timing[1])
        if stepped:
            for g, lr in enumerate(getattr(self, "_lrs", [])):
                add(f"lr/group{g}", t, lr)
        self._safely("gradient read-out", self._record_grads, t, values, raw_mask, applied_mask)
        if "update_norm" in values:
            infos = [self.param_info[i] for i in self._trainable]
            for info, u, w in zip(infos, values["update_norm"], values["weight_norm"], strict=True):
                add(f"weight_norm/{info.name}", t, w)
                add(
                    f"update_ratio/{info.name}",
                    t,
                    u / w if w > 0 else (0.0 if u == 0 else math.inf),
                )
        for key, vals in values.items():
            if key.startswith("act/"):
                layer = key[4:]
                for stat, v in zip(STATS, vals, strict=True):
                    add(f"act_{stat}/{layer}", t, v)
        sums = values.get("output_sums", [])
        bad = next((i for i, v in enumerate(sums) if not math.isfinite(v)), None)
        if bad is not None and "nonfinite_output" not in self.facts:
            name = sum_names[bad]
            self.facts["nonfinite_output"] = (t, name, self._acts.kinds.get(name, "?"), sums[bad])
        if "replica_spread" in self.facts and self.facts["replica_spread"][0] == t:
            spread = self.facts["replica_spread"][1]
            add("replica_spread", t, max(spread, default=0.0))

    def _record_grads(self, t, values, raw_mask, applied_mask) -> None:
        names, keys = self._names, self._grad_keys
        raw = values.get("grad_raw")
        applied = values.get("grad_applied")
        if applied is None and self._stepped and self._grads.applied_is_raw:
            applied = raw  # nothing touched the grads between backward and step
        if raw is not None:
            raw_keys = [k for k, m in zip(keys, raw_mask, strict=True) if m]
            scale = 1.0  # the probe already unscaled when it was given the scaler
            if self.scaler is None and applied is not None:
                scale = _unscale_factor(raw, applied)
            raw_total = math.sqrt(sum(v * v for v in raw)) / scale
            add = self.signals.add
            add("grad_norm", t, raw_total)
            for k, v in zip(raw_keys, raw, strict=True):
                add(k, t, v / scale)
            if not self._stepped and not math.isfinite(raw_total):
                add("skipped_nonfinite", t, 1.0)  # e.g. GradScaler skipped this step
        if applied is not None:
            applied_names = [n for n, m in zip(names, applied_mask, strict=True) if m]
            total = math.sqrt(sum(v * v for v in applied))
            self.signals.add("grad_norm_applied", t, total)
            if applied is not raw and raw is not None and total < (1 - 1e-3) * raw_total:
                self.signals.add("clipped", t, 1.0)  # the loop clips: the step used less
            if not math.isfinite(total):
                bad = [
                    n for n, v in zip(applied_names, applied, strict=True) if not math.isfinite(v)
                ]
                self.facts.setdefault("nonfinite_grad", (t, bad, total))
        mask = raw_mask or applied_mask
        if mask and mask is not self._last_mask:  # a new mask list comes with each backward
            self._last_mask = mask
            self.facts["grad_params"] = [n for n, m in zip(names, mask, strict=True) if m]

    # -- judging ---------------------------------------------------------------------------
    def _judge(self, phases: tuple[str, ...]) -> None:
        for detector in self._detectors:
            if detector.when not in phases:
                continue
            found = self._safely(f"detector {detector.slug}", detector.check, self)
            for finding in found or ():
                self._emit(finding)

    def _emit(self, finding: Finding) -> None:
        key = (finding.rule, finding.where)
        if key in self._keys:
            return
        self._keys.add(key)
        self._findings.append(finding)
        if self._record_writer is not None:
            self._record_writer.findings([finding])  # findings.json as they fire (crash-safe)
        if self.verbose and self._printed < MAX_PRINTED:
            self._printed += 1
            _show(finding, self.iteration)

    def _safely(self, piece: str, fn, *args):
        """Runs one probe or detector; on an exception switches it off with one warning."""
        if piece in self._disabled:
            return None
        try:
            return fn(*args)
        except SetupError:
            raise
        except Exception as exc:  # noqa: BLE001 - trainwise must never stop the user's training
            self._disabled.add(piece)
            warnings.warn(
                f"trainwise.watch: the {piece} raised {type(exc).__name__}: {exc}. "
                "It is switched off; training goes on.",
                RuntimeWarning,
                stacklevel=3,
            )
            return None

    def _print_summary(self) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = Console(stderr=True)
        findings = dedupe(self._findings)
        title = f"trainwise.watch{f' [{self.name}]' if self.name else ''}: {self.iteration} steps"
        if not findings:
            console.print(f"[green]{escape(title)}, no findings[/green]")
            return
        table = Table(title=escape(title), show_lines=False)
        for col in ("severity", "rule", "where", "message"):
            table.add_column(col)
        for f in findings:
            table.add_row(f.severity, f.rule, escape(str(f.where or "")), escape(f.message))
        console.print(table)


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
    """
    return Watch(
        model, optimizer, preset, every, log_dir, name, verbose, scaler, total_steps, record
    )


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


def _unscale_factor(raw: list[float], applied: list[float]) -> float:
    """The GradScaler factor between the norms at backward end and at the step, else 1.

    `unscale_` divides every grad by the loss scale, a power of two; clipping multiplies them
    by an arbitrary coefficient. A uniform ratio that is an exact power of two >= 2 is the scale.
    """
    raw_total = math.sqrt(sum(v * v for v in raw))
    applied_total = math.sqrt(sum(v * v for v in applied))
    if not (math.isfinite(raw_total) and math.isfinite(applied_total)) or applied_total <= 0:
        return 1.0
    ratio = raw_total / applied_total
    exponent = math.log2(ratio) if ratio > 0 else 0.0
    if exponent >= 1 - 1e-6 and abs(exponent - round(exponent)) < 1e-4:
        return 2.0 ** round(exponent)
    return 1.0


def _show(finding: Finding, iteration: int) -> None:
    level = {"error": logging.ERROR, "warning": logging.WARNING}.get(finding.severity, logging.INFO)
    text = f"[{finding.rule}] {finding.message}"
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
