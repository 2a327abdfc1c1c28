"""Weight norms and update norms per parameter, on sampled steps.

The update is measured, not inferred: the parameters are copied before the optimizer step and
subtracted after it, so momentum, Adam's scaling and weight decay are all included.
"""

from __future__ import annotations

import torch

from trainwise.probes.gradients import grad_norms
from trainwise.probes.pending import Pending


class UpdateProbe:
    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params
        self._before: list[torch.Tensor] | None = None

    def before_step(self) -> None:
        with torch.no_grad():
            self._before = [p.detach().clone() for p in self.params]

    def after_step(self, pending: Pending) -> None:
        if self._before is None:
            return
        with torch.no_grad():
            deltas = torch._foreach_sub([p.detach() for p in self.params], self._before)
            pending.add("update_norm", grad_norms(deltas))
            pending.add("weight_norm", grad_norms([p.detach() for p in self.params]))
        self._before = None  # the copies live for one step only

    def discard(self) -> None:
        self._before = None
