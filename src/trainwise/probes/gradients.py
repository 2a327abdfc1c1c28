"""Gradient norms per parameter, measured when backward ends (before any clipping) and again
when the optimizer steps (what it applies), plus the bookkeeping that tells a missing
`zero_grad()` from intended gradient accumulation.

Writes: GRAD_NORM, GRAD_NORM_LAYER, GRAD_NORM_APPLIED, CLIPPED, SKIPPED_NONFINITE,
BACKWARD_PASSES, GRADS_KEPT, and the events NONFINITE_GRAD and GRAD_PARAMS.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from trainwise.probes.pending import Pending
from trainwise.signals import (
    BACKWARD_PASSES,
    CLIPPED,
    GRAD_NORM,
    GRAD_NORM_APPLIED,
    GRAD_NORM_LAYER,
    GRAD_PARAMS,
    GRADS_KEPT,
    NONFINITE_GRAD,
    SKIPPED_NONFINITE,
    NonfiniteGrad,
    Signals,
)


def grad_norms(grads: list[torch.Tensor], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N,) L2 norms in one batched call, accumulated in `dtype` (float32: fp16 grads cannot
    overflow the norm; float64: loss-scaled grads cannot either). Tensors wider than `dtype`
    (float64, complex) are reduced in their own precision and the norm is cast: torch refuses
    to narrow a reduction's input."""
    if any(g.is_sparse for g in grads):  # nn.Embedding(sparse=True): no batched kernel
        return torch.stack([tensor_norm(g, dtype) for g in grads])
    try:
        if all(g.dtype == dtype for g in grads):  # no cast asked: the faster kernel, same bits
            return torch.stack(torch._foreach_norm(grads, 2))
        return torch.stack(torch._foreach_norm(grads, 2, dtype=dtype))
    except (RuntimeError, TypeError):  # mixed devices/dtypes, wider or sparse grads: one by one
        return torch.stack([tensor_norm(g, dtype) for g in grads])


def tensor_norm(g: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One tensor's L2 norm as a real 0-d tensor of `dtype`."""
    if g.is_sparse:  # duplicate indices add up: the norm is that of the coalesced values
        g = g.coalesce().values()
    if g.is_complex() or (g.is_floating_point() and g.dtype.itemsize > dtype.itemsize):
        return torch.linalg.vector_norm(g).to(dtype)  # (complex -> real norm)
    return torch.linalg.vector_norm(g, dtype=dtype)


PIECE = "gradient probe"  # the name under which the watch's guard switches it off
USED, ADDED_TO, RESET = "used by the last step", "added to since", "reset since"


class GradientProbe:
    """Per-parameter gradient norms, one batched reduction per backward and one per step."""

    def __init__(
        self,
        params: list[torch.Tensor],
        names: list[str],
        scaler=None,
        n_reference: int = 4,
        guard: Callable[..., Any] | None = None,
    ) -> None:
        self.params = params
        self.names = names
        # The hooks and the end-of-backward callback run inside the user's backward(), outside
        # any caller's try: each runs through `guard(piece, fn, *args)`, which switches the probe
        # off on an exception instead of letting it out of backward().
        self._guard = guard or (lambda _piece, fn, *args: fn(*args))
        self._layer_keys = [GRAD_NORM_LAYER.at(n) for n in names]  # built once, not per step
        self._layer_series: dict[str, object] = {}
        self._slots: tuple[int, int] = (-1, -1)
        self._last_mask: list[bool] | None = None
        # A GradScaler multiplies the loss (so every grad) by its scale until unscale_: with it,
        # the norms at backward end are divided by the scale that backward used.
        self.scaler = scaler
        # Hooks are Python calls from autograd on every backward: they are attached only while
        # the watch measures (set_measuring), so the steps between cost nothing here.
        self.attached = False  # the watch attached the probe (and has not detached it)
        self.measuring = True  # the watch's step is a measured one
        self._handles = []  # end-of-backward hooks, while measuring
        self._hooked: set[int] = set()  # ids of the tensors with an end-of-backward hook
        self._reference_handles = []  # missing-zero-grad hooks, from after_step while measuring
        self._queued = False
        self.backward_passes = 0  # since the last optimizer step
        self._raw: torch.Tensor | None = None  # (N,) norms at the end of the last backward
        self._raw_mask: list[bool] = []  # which params had a grad then
        self._raw_versions: list[tuple[int, int]] = []
        self.applied_is_raw = False  # the step applied the grads of backward end, untouched
        self._applied: torch.Tensor | None = None
        self._applied_mask: list[bool] = []
        # missing-zero-grad: for a few reference tensors, what happened to the grads the last
        # step used, judged when the next step starts (see _before_accumulation).
        self._reference = [p for p in params if p.requires_grad][:n_reference]
        self._grad_state: list[str] = []  # per reference: USED, ADDED_TO or RESET
        self._expected: list[tuple[int, int] | None] = []  # (id, version) of its grad, as left
        self.kept_across_steps: int | None = None  # 1: this step's grads include the last one's

    def attach(self) -> None:
        self.attached = True
        self.attach_unfrozen()

    def attach_unfrozen(self) -> None:
        """Hooks the end of backward on every tensor that requires grad and has no hook yet (a
        hook cannot sit on a frozen tensor: those unfrozen later get theirs now)."""
        if not (self.attached and self.measuring):
            return
        for p in self.params:
            if p.requires_grad and id(p) not in self._hooked:
                self._hooked.add(id(p))
                self._handles.append(
                    p.register_post_accumulate_grad_hook(self._guarded_accumulated)
                )

    def set_measuring(self, measuring: bool) -> None:
        """The watch's next step is measured (hooks on) or one between measured steps (off)."""
        if measuring == self.measuring:
            return
        self.measuring = measuring
        if measuring:
            self.attach_unfrozen()
        else:
            self._remove_hooks()
            # a backward that ran before the step was known to be quiet (a loop without a
            # forward in it) measured nothing the watch will read
            self._raw, self.backward_passes = None, 0

    def _attach_reference(self) -> None:
        """The missing-zero-grad hooks, for the next backward (after_step armed them)."""
        if self._reference_handles or not self.attached:
            return
        for i, p in enumerate(self._reference):
            if not p.requires_grad:  # frozen since the watch started: no hook can sit on it
                continue
            self._reference_handles.append(
                p.register_hook(self._armed(self._before_accumulation(i)))
            )
            self._reference_handles.append(
                p.register_post_accumulate_grad_hook(self._armed(self._after_accumulation(i)))
            )

    def _remove_hooks(self) -> None:
        for h in self._handles + self._reference_handles:
            h.remove()
        self._handles.clear()
        self._reference_handles.clear()
        self._hooked.clear()

    def detach(self) -> None:
        self.attached = False
        self._remove_hooks()

    # -- backward --------------------------------------------------------------------------
    def _guarded(self, fn: Callable[..., Any]) -> Callable[..., None]:
        def run(*args: Any) -> None:  # None: a tensor hook returning a value would replace it
            self._guard(PIECE, fn, *args)

        return run

    def _armed(self, fn: Callable[..., Any]) -> Callable[..., None]:
        """A missing-zero-grad hook: it has something to follow only after `after_step` (the
        watch calls it before a measured step); otherwise it costs one attribute read."""

        def run(*args: Any) -> None:
            if self._grad_state:
                self._guard(PIECE, fn, *args)

        return run

    def _guarded_accumulated(self, param: torch.Tensor) -> None:
        self._guard(PIECE, self._on_accumulated, param)

    def _on_accumulated(self, _param: torch.Tensor) -> None:
        if not self._queued:
            self._queued = True
            # Runs once when this backward finishes, after every grad is accumulated.
            torch.autograd.Variable._execution_engine.queue_callback(
                self._guarded(self._backward_done)
            )

    def _backward_done(self) -> None:
        self._queued = False
        self.backward_passes += 1
        with torch.no_grad():
            mask = [p.grad is not None for p in self.params]
            grads = [p.grad for p, m in zip(self.params, mask, strict=True) if m]
            self._raw = self._unscaled(grads) if grads else None
            self._raw_mask = mask
            # Version counters say whether anything (clip_grad_norm_, GradScaler.unscale_)
            # rewrites the grads before the step; if nothing does, the step applies exactly
            # these grads and their norms need no second pass.
            self._raw_versions = [(id(g), g._version) for g in grads]

    def _unscaled(self, grads: list[torch.Tensor]) -> torch.Tensor:
        scale = getattr(self.scaler, "_scale", None)
        if not isinstance(scale, torch.Tensor):
            return grad_norms(grads)
        return (grad_norms(grads, torch.float64) / scale.double()).float()

    # missing-zero-grad: a reference tensor's grad after a step is USED; the next backward
    # either finds it reset (None, or changed by zero_grad since we last saw it: RESET) or adds
    # to it untouched (ADDED_TO). A reset later in the same gap clears ADDED_TO: in a GAN the
    # generator's backward passes through the discriminator after D's step, and D's zero_grad()
    # before its next backward discards that. What counts is the state when the next step runs.
    def _before_accumulation(self, i: int):
        def hook(_grad: torch.Tensor) -> None:
            # Called with the incoming gradient, before it is added to p.grad.
            if i >= len(self._grad_state) or self._grad_state[i] == RESET:
                return
            g = self._reference[i].grad
            untouched = g is not None and (id(g), g._version) == self._expected[i]
            self._grad_state[i] = ADDED_TO if untouched else RESET

        return hook

    def _after_accumulation(self, i: int):
        def hook(param: torch.Tensor) -> None:
            if i < len(self._grad_state) and self._grad_state[i] == ADDED_TO:
                self._expected[i] = (id(param.grad), param.grad._version)  # as this backward left it

        return hook

    # -- optimizer step --------------------------------------------------------------------
    def before_step(self) -> None:
        states = self._grad_state
        if states and any(state != USED for state in states):  # some backward ran since
            self.kept_across_steps = 1 if ADDED_TO in states else 0
        self._grad_state = []
        with torch.no_grad():
            mask = [p.grad is not None for p in self.params]
            grads = [p.grad for p, m in zip(self.params, mask, strict=True) if m]
            self._applied_mask = mask
            self.applied_is_raw = (
                self._raw is not None
                and mask == self._raw_mask
                and [(id(g), g._version) for g in grads] == self._raw_versions
            )
            self._applied = None if self.applied_is_raw or not grads else grad_norms(grads)

    def after_step(self) -> None:
        # The grads as the step left them; any reset (zero_grad, set to None) changes this.
        self._expected = [None if p.grad is None else (id(p.grad), p.grad._version)
                          for p in self._reference]  # fmt: skip
        self._grad_state = [USED if e is not None else RESET for e in self._expected]
        self._attach_reference()

    # -- read-out --------------------------------------------------------------------------
    def collect(self, pending: Pending) -> None:
        """Queues the step's norms (N,) for the read-out."""
        raw = pending.add(self._raw) if self._raw is not None else -1
        applied = pending.add(self._applied) if self._applied is not None else -1
        self._slots = (raw, applied)
        self._raw = self._applied = None

    def write_counts(self, t: int, signals: Signals) -> None:
        """Backward passes of the step, and whether its first backward added to old grads."""
        signals.add(BACKWARD_PASSES.key, t, float(self.backward_passes))
        self.backward_passes = 0
        if self.kept_across_steps is not None:
            signals.add(GRADS_KEPT.key, t, float(self.kept_across_steps))
            self.kept_across_steps = None

    def write(self, values: list[list[float]], t: int, signals: Signals, stepped: bool) -> None:
        """The step's gradient norms into the history. `stepped`: the optimizer stepped."""
        add = signals.add
        raw_slot, applied_slot = self._slots
        self._slots = (-1, -1)
        raw_mask, applied_mask = self._raw_mask, self._applied_mask
        raw = values[raw_slot] if raw_slot >= 0 else None
        applied = values[applied_slot] if applied_slot >= 0 else None
        if applied is None and stepped and self.applied_is_raw:
            applied = raw  # nothing touched the grads between backward and step
        raw_total = math.nan
        if raw is not None:
            scale = 1.0  # the probe already unscaled when it was given the scaler
            if self.scaler is None and applied is not None:
                scale = _unscale_factor(raw, applied)
            raw_total = math.sqrt(sum(v * v for v in raw)) / scale
            add(GRAD_NORM.key, t, raw_total)
            layer_series = self._layer_series
            keys = self._layer_keys
            it = iter(raw)
            for i, m in enumerate(raw_mask):
                if m:
                    series = layer_series.get(i)
                    if series is None:
                        series = layer_series[i] = signals.series_of(keys[i])
                    series.append(t, next(it) / scale)
            if not stepped and not math.isfinite(raw_total):
                add(SKIPPED_NONFINITE.key, t, 1.0)  # e.g. GradScaler skipped this step
        if applied is not None:
            total = math.sqrt(sum(v * v for v in applied))
            add(GRAD_NORM_APPLIED.key, t, total)
            if applied is not raw and raw is not None and total < (1 - 1e-3) * raw_total:
                add(CLIPPED.key, t, 1.0)  # the loop clips: the step used less
            if not math.isfinite(total) and NONFINITE_GRAD not in signals.events:
                names = [n for n, m in zip(self.names, applied_mask, strict=True) if m]
                bad = tuple(n for n, v in zip(names, applied, strict=True) if not math.isfinite(v))
                signals.events[NONFINITE_GRAD] = NonfiniteGrad(t, bad, total)
        mask = raw_mask or applied_mask
        if mask and mask is not self._last_mask:  # a new mask list comes with each backward
            self._last_mask = mask
            signals.events[GRAD_PARAMS] = tuple(
                n for n, m in zip(self.names, mask, strict=True) if m
            )


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
