"""Gradient norms per parameter, measured when backward ends (before any clipping) and again
when the optimizer steps (what it applies), plus the bookkeeping that tells a missing
`zero_grad()` from intended gradient accumulation.
"""

from __future__ import annotations

import torch

from trainwise.probes.pending import Pending


def grad_norms(grads: list[torch.Tensor], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N,) L2 norms in one batched call, accumulated in `dtype` (float32: fp16 grads cannot
    overflow the norm; float64: loss-scaled grads cannot either)."""
    try:
        return torch.stack(torch._foreach_norm(grads, 2, dtype=dtype))
    except (RuntimeError, TypeError):  # mixed devices/dtypes or sparse grads: one by one
        return torch.stack([torch.linalg.vector_norm(g, dtype=dtype) for g in grads])


class GradientProbe:
    """Per-parameter gradient norms, one batched reduction per backward and one per step."""

    def __init__(self, params: list[torch.Tensor], scaler=None, n_reference: int = 4) -> None:
        self.params = params
        # A GradScaler multiplies the loss (so every grad) by its scale until unscale_: with it,
        # the norms at backward end are divided by the scale that backward used.
        self.scaler = scaler
        self._handles = []
        self._queued = False
        self.backward_passes = 0  # since the last optimizer step
        self._raw: torch.Tensor | None = None  # (N,) norms at the end of the last backward
        self._raw_mask: list[bool] = []  # which params had a grad then
        self._raw_versions: list[tuple[int, int]] = []
        self.applied_is_raw = False  # the step applied the grads of backward end, untouched
        self._applied: torch.Tensor | None = None
        self._applied_mask: list[bool] = []
        # missing-zero-grad: the grad versions seen right after the last optimizer step.
        self._reference = [p for p in params if p.requires_grad][:n_reference]
        self._versions: list[int | None] | None = None
        self._awaiting_first_backward = False
        self.kept_across_steps: int | None = None  # 1: this step's backward added to old grads

    def attach(self) -> None:
        for p in self.params:
            if p.requires_grad:
                self._handles.append(p.register_post_accumulate_grad_hook(self._on_accumulated))
        for i, p in enumerate(self._reference):
            self._handles.append(p.register_hook(self._make_first_grad_hook(i)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    # -- backward --------------------------------------------------------------------------
    def _on_accumulated(self, _param: torch.Tensor) -> None:
        if not self._queued:
            self._queued = True
            # Runs once when this backward finishes, after every grad is accumulated.
            torch.autograd.Variable._execution_engine.queue_callback(self._backward_done)

    def _backward_done(self) -> None:
        self._queued = False
        self.backward_passes += 1
        with torch.no_grad():
            mask = [p.grad is not None and not p.grad.is_sparse for p in self.params]
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

    def _make_first_grad_hook(self, i: int):
        def hook(_grad: torch.Tensor) -> None:
            # Called with the incoming gradient, before it is added to p.grad.
            if not self._awaiting_first_backward or self._versions is None:
                return
            p, version = self._reference[i], self._versions[i]
            if version is None:  # this parameter had no grad at the step: cannot tell
                return
            self._awaiting_first_backward = False
            reset = p.grad is None or p.grad._version != version
            self.kept_across_steps = 0 if reset else 1

        return hook

    # -- optimizer step --------------------------------------------------------------------
    def before_step(self) -> None:
        with torch.no_grad():
            mask = [p.grad is not None and not p.grad.is_sparse for p in self.params]
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
        self._versions = [None if p.grad is None else p.grad._version for p in self._reference]
        self._awaiting_first_backward = True

    # -- read-out --------------------------------------------------------------------------
    def collect(self, pending: Pending) -> None:
        if self._raw is not None:
            pending.add("grad_raw", self._raw)
        if self._applied is not None:
            pending.add("grad_applied", self._applied)
        self._raw = self._applied = None

    def masks(self) -> tuple[list[bool], list[bool]]:
        return self._raw_mask, self._applied_mask
