"""Who writes the weights: a fingerprint (the L2 norm) of every parameter when each optimizer
step starts and when it ends.

- A tensor whose fingerprint differs between one step's end and the next step's start was
  written by something other than the optimizer (a state_dict loaded, an EMA swapped in for
  validation and never swapped out, a hand-written clamp).
- A tensor the optimizer holds with requires_grad=False whose fingerprint differs across the
  step was moved by the optimizer although it is "frozen" (a zero gradient rather than None:
  momentum and weight decay still apply).

A norm is not a hash, but every real write (a copy, an average, a decay, a clamp that bites)
changes it; recomputing it over unchanged values gives the same bits. Cost: one batched
reduction (`torch._foreach_norm`) when each step ends, and one when the next starts only where
there is something to compare: after a validation (a no-grad forward or watch.log_val ran in the
gap, where swapped-in weights are left behind) and on sampled steps (which also compare the
step's own start and end, for frozen tensors). The comparisons stay on the device and come back
with the step's one read-out.

Writes: WRITTEN_OUTSIDE and FROZEN_MOVED (counts per step), and the events
WRITTEN_OUTSIDE_NAMES and FROZEN_MOVED_NAMES (the tensors, at the latest step they moved).
"""

from __future__ import annotations

import torch

from trainwise.probes.gradients import grad_norms
from trainwise.probes.pending import Pending
from trainwise.signals import (
    FROZEN_MOVED,
    FROZEN_MOVED_NAMES,
    WRITTEN_OUTSIDE,
    WRITTEN_OUTSIDE_NAMES,
    FrozenMoved,
    Signals,
    WrittenOutside,
)

PIECE = "weight-write probe"


class WriteProbe:
    def __init__(self) -> None:
        self.params: list[torch.Tensor] = []
        self.names: list[str] = []
        self._frozen_held: torch.Tensor | None = None  # (N,) bool: held with requires_grad=False
        self._at_start: torch.Tensor | None = None  # (N,) fingerprints when the step started
        self._at_end: torch.Tensor | None = None  # (N,) fingerprints when the last step ended
        self._slots: tuple[int, int] = (-1, -1)
        self._eval_in_gap = False  # a no-grad forward or log_val since the last step ended
        self._gap_had_eval = False  # ... in the gap just compared

    def track(self, params: list[torch.Tensor], names: list[str]) -> None:
        """The tensors to fingerprint: the optimizer's first, then the model's others. Called
        again when that set changes; the next step then starts a fresh comparison."""
        self.params, self.names = params, names
        self._at_start = self._at_end = None

    def set_frozen(self, frozen_held: list[bool]) -> None:
        """Which of the optimizer's tensors (the first len(frozen_held)) have requires_grad=False
        now: those must not move when it steps."""
        mask = frozen_held + [False] * (len(self.params) - len(frozen_held))
        self._frozen_held = torch.tensor(mask, dtype=torch.bool) if any(mask) else None

    def saw_eval(self) -> None:
        """A validation ran (a no-grad forward or watch.log_val) since the last step."""
        self._eval_in_gap = True

    @property
    def saw_eval_in_gap(self) -> bool:
        """The next step's start is compared with the last step's end (the watch measures it)."""
        return self._eval_in_gap

    def _fingerprints(self) -> torch.Tensor | None:
        if not self.params:
            return None
        with torch.no_grad():
            return grad_norms(self.params)  # (N,) float32 (no graph: under no_grad)

    def before_step(self, pending: Pending, sampled: bool) -> None:
        if not (sampled or self._eval_in_gap):
            self._at_start = self._at_end = None  # nothing to compare this time: no reduction
            return
        now = self._fingerprints()
        if now is not None and self._at_end is not None and now.shape == self._at_end.shape:
            self._slots = (pending.add(_differ(now, self._at_end).float()), self._slots[1])
            self._gap_had_eval = self._eval_in_gap
        self._eval_in_gap = False
        self._at_start, self._at_end = now, None

    def after_step(self, pending: Pending) -> None:
        now = self._fingerprints()
        start, frozen = self._at_start, self._frozen_held
        if now is not None and start is not None and frozen is not None:
            if frozen.device != now.device:  # moved once (a host->device copy per step would
                frozen = self._frozen_held = frozen.to(now.device)  # wait on the device)
            moved = _differ(now, start) & frozen  # (N,): only frozen held tensors can be set
            self._slots = (self._slots[0], pending.add(moved))  # (a mask, not an index: no sync)
        self._at_end, self._at_start = now, None

    def take(self) -> tuple[tuple[int, int], bool]:
        """This step's pending comparisons, handed to the watch to write later (a step between
        measured ones, compared because a validation came before it)."""
        taken = (self._slots, self._gap_had_eval)
        self._slots = (-1, -1)
        return taken

    def write(self, values: list[list[float]], t: int, signals: Signals,
              taken: tuple[tuple[int, int], bool] | None = None) -> None:  # fmt: skip
        """Step t's comparisons into the history: this step's, or those `take` handed out."""
        (outside_slot, frozen_slot), gap_had_eval = taken or self.take()
        if outside_slot >= 0:
            changed = values[outside_slot]
            written = tuple(n for n, c in zip(self.names, changed, strict=True) if c)
            signals.add(WRITTEN_OUTSIDE.key, t, float(len(written)))
            if written:
                signals.events[WRITTEN_OUTSIDE_NAMES] = WrittenOutside(t, written, gap_had_eval)
        if frozen_slot >= 0:
            moved = values[frozen_slot]
            names = tuple(n for n, m in zip(self.names, moved, strict=True) if m)
            signals.add(FROZEN_MOVED.key, t, float(len(names)))
            if names:
                signals.events[FROZEN_MOVED_NAMES] = FrozenMoved(t, names)

    def discard(self) -> None:
        self._at_start = self._at_end = None
        self._slots = (-1, -1)


def _differ(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the fingerprints differ (NaN equals NaN: weights already non-finite do not
    change by staying so)."""
    return (a != b) & ~(a.isnan() & b.isnan())
