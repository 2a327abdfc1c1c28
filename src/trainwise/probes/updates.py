"""Weight norms and update norms per parameter, on sampled steps.

The update is measured, not inferred: the parameters are copied before the optimizer step and
subtracted after it, so momentum, Adam's scaling and weight decay are all included.

Writes: WEIGHT_NORM and UPDATE_RATIO per parameter the optimizer holds (frozen ones included:
their ratio must stay 0).
"""

from __future__ import annotations

import math

import torch

from trainwise.probes.gradients import grad_norms
from trainwise.probes.pending import Pending
from trainwise.signals import UPDATE_RATIO, WEIGHT_NORM, Signals


class UpdateProbe:
    def __init__(self, params: list[torch.Tensor], names: list[str]) -> None:
        self.params = params
        self._keys = [(WEIGHT_NORM.at(n), UPDATE_RATIO.at(n)) for n in names]  # built once
        self._before: list[torch.Tensor] | None = None
        self._slots: tuple[int, int] | None = None

    def before_step(self) -> None:
        if not self.params:
            return
        with torch.no_grad():
            self._before = [p.detach().clone() for p in self.params]

    def after_step(self, pending: Pending) -> None:
        if self._before is None:
            return
        with torch.no_grad():
            deltas = torch._foreach_sub([p.detach() for p in self.params], self._before)
            update = pending.add(grad_norms(deltas))  # (N,)
            weight = pending.add(grad_norms([p.detach() for p in self.params]))  # (N,)
            self._slots = (update, weight)
        self._before = None  # the copies live for one step only

    def write(self, values: list[list[float]], t: int, signals: Signals) -> None:
        if self._slots is None:
            return
        updates, weights = (values[i] for i in self._slots)
        self._slots = None
        add = signals.add
        for (weight_key, ratio_key), u, w in zip(self._keys, updates, weights, strict=True):
            add(weight_key, t, w)
            add(ratio_key, t, u / w if w > 0 else (0.0 if u == 0 else math.inf))

    def discard(self) -> None:
        self._before = None
        self._slots = None
